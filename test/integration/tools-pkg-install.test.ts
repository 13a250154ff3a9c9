import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PkgInstallOutput, RunPythonOutput } from '../../src/domain/tools.js';
import { detectIsolation, setIsolation } from '../../src/sandbox/launch.js';
import type { ToolExecution } from '../../src/worker/tools/types.js';
import { buildWheel } from '../helpers/wheels.js';
import { makeBase, python, type TestBase, type TestSession } from '../fixtures/sessions.js';

const installed = (e: ToolExecution): PkgInstallOutput => {
  if (e.reply.tool !== 'pkg_install') throw new Error(e.reply.tool);
  return e.reply.output;
};
const ran = (e: ToolExecution): RunPythonOutput => {
  if (e.reply.tool !== 'run_python') throw new Error(e.reply.tool);
  return e.reply.output;
};
const install = (packages: string[], extra: Partial<{ upgrade: boolean; no_deps: boolean; index_url: string }> = {}) =>
  ({ tool: 'pkg_install', input: { packages, upgrade: extra.upgrade ?? false, no_deps: extra.no_deps ?? false, index_url: extra.index_url ?? '' } }) as const;

let tb: TestBase;
let wheels: string;
let a: TestSession;
let b: TestSession;
/** pip's configuration as the worker's environment would carry it (passed as ctx.pipEnv). */
let pipEnv: Record<string, string>;

beforeAll(async () => {
  setIsolation(await detectIsolation('auto'));
  wheels = mkdtempSync(path.join(os.tmpdir(), 'codegen-wheels-'));
  buildWheel(wheels, 'cgtiny_one', '1.0', 'one!');
  buildWheel(wheels, 'cgtiny_two', '1.0', 'two!');
  buildWheel(wheels, 'cgtiny_two', '2.0', 'two, version 2');
  pipEnv = { PIP_FIND_LINKS: wheels, PIP_NO_INDEX: '1' };
  tb = makeBase(2);
  a = await tb.session();
  b = await tb.session();
});
afterAll(async () => {
  await tb.cleanup();
  rmSync(wheels, { recursive: true, force: true });
});

describe('pkg_install', () => {
  it('installs into each session its own packages, offline from find-links, reporting real versions', async () => {
    const ia = await a.run(install(['cgtiny_one>=0.5']), { pipEnv });
    expect(ia.status).toBe('SUCCESS');
    const outA = installed(ia);
    expect(outA.exit_code).toBe(0);
    expect(outA.failed).toEqual([]);
    expect(outA.installed).toEqual([{ name: 'cgtiny_one', version: '1.0', location: expect.stringMatching(/\/\.venv\/lib\/python3\.\d+\/site-packages$/) }]);
    expect(outA.installed[0]!.location.startsWith(`${a.workspace}/.venv/`)).toBe(true);
    expect(outA.output).toContain('Successfully installed cgtiny_one-1.0');
    expect(a.logs.some((l) => l.line.includes('Successfully installed'))).toBe(true);

    const ib = await b.run(install(['cgtiny-two==1.0']), { pipEnv });
    expect(installed(ib).installed).toMatchObject([{ name: 'cgtiny_two', version: '1.0' }]);

    const probe = 'import importlib.util as u\nprint(u.find_spec("cgtiny_one") is not None, u.find_spec("cgtiny_two") is not None)';
    expect(ran(await a.run(python(`${probe}\nimport cgtiny_one; print(cgtiny_one.value)`))).stdout).toBe('True False\none!\n');
    expect(ran(await b.run(python(`${probe}\nimport cgtiny_two; print(cgtiny_two.value)`))).stdout).toBe('False True\ntwo!\n');
  });

  it('upgrades and reports the version that is really there', async () => {
    const up = installed(await b.run(install(['cgtiny_two'], { upgrade: true }), { pipEnv }));
    expect(up.installed).toMatchObject([{ name: 'cgtiny_two', version: '2.0' }]);
  });

  it('reads pip configuration from the worker environment when the context gives none', async () => {
    const saved = { ...process.env };
    process.env.PIP_FIND_LINKS = wheels;
    process.env.PIP_NO_INDEX = '1';
    process.env.WORKER_TOKEN = 'not-for-pip';
    try {
      const e = await a.run(install(['cgtiny_two<2']));
      expect(installed(e).installed).toMatchObject([{ name: 'cgtiny_two', version: '1.0' }]);
    } finally {
      process.env = saved;
    }
  });

  it('reports what did not install as failed, with status FAILURE', async () => {
    const e = await a.run(install(['cgtiny_missing_pkg']), { pipEnv });
    expect(e.status).toBe('FAILURE');
    const out = installed(e);
    expect(out.exit_code).not.toBe(0);
    expect(out.failed).toEqual(['cgtiny_missing_pkg']);
    expect(out.installed).toEqual([]);
    expect(out.output).toMatch(/No matching distribution|Could not find/);
  });

  it('refuses specs that would inject pip options, and empty lists', async () => {
    await expect(a.run(install(['cgtiny_one', '--index-url=http://evil']), { pipEnv })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('packages[1]'),
    });
    await expect(a.run(install(['-rrequirements.txt']), { pipEnv })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(a.run(install(['two words']), { pipEnv })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(a.run(install([]), { pipEnv })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('packages') });
    await expect(a.run(install(['x'], { index_url: 'not a url' }), { pipEnv })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('lets user code install with the venv pip shim, from a wheel in the workspace', async () => {
    const wheel = buildWheel(path.join(wheels, 'extra'), 'cgtiny_three', '3.1');
    await b.run({
      tool: 'fs_write',
      input: { path: `dl/${path.basename(wheel)}`, contents: readFileSync(wheel).toString('base64'), create_dirs: true, encoding: 'base64' },
    });
    const e = await b.run(
      python(
        'import subprocess\nr = subprocess.run([".venv/bin/pip", "install", "--no-index", "--find-links", "dl", "cgtiny_three"], capture_output=True, text=True)\nprint(r.returncode, r.stderr[-300:])\nimport cgtiny_three\nprint(cgtiny_three.VERSION)',
      ),
    );
    expect(ran(e).stdout).toMatch(/^0 .*\n3\.1\n$/s);
  });
});
