import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launch } from '../../src/sandbox/launch.js';
import { VenvPool, resolveBasePython } from '../../src/worker/venv-pool.js';
import { createWorkspace, removeWorkspace } from '../../src/worker/workspace.js';
import { eventually } from '../helpers/processes.js';
import { buildWheel } from '../helpers/wheels.js';

let base: string;
beforeAll(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'codegen-pool-'));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

const run = (command: string, args: string[], cwd: string) =>
  launch({ command, args, cwd, env: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', HOME: cwd }, timeoutMs: 60_000, maxOutputBytes: 1 << 20 });

describe('VenvPool', () => {
  it('fills up in the background, and take() moves a working venv whose sys.prefix is the target', async () => {
    const pool = new VenvPool({ root: path.join(base, '.pool'), size: 2, layout: 'venv' });
    pool.start();
    try {
      expect(await eventually(() => pool.ready === 2, 20_000)).toBe(true);
      const target = path.join(base, 'ws-1', '.venv');
      const started = Date.now();
      await pool.take(target);
      expect(Date.now() - started).toBeLessThan(2000);
      expect(pool.ready).toBeLessThan(2);

      const py = await run(path.join(target, 'bin', 'python'), ['-c', 'import sys; print(sys.prefix); print(sys.prefix != sys.base_prefix)'], base);
      expect(py.stdout).toBe(`${target}\nTrue\n`);
      expect(readFileSync(path.join(target, 'bin', 'activate'), 'utf8')).toContain(`VIRTUAL_ENV="${target}"`);
      expect(readFileSync(path.join(target, 'bin', 'activate'), 'utf8')).not.toContain('.pool');

      // The pool refills what was taken.
      expect(await eventually(() => pool.ready === 2, 20_000)).toBe(true);
    } finally {
      await pool.stop();
    }
    expect(pool.ready).toBe(0);
    expect(readdirSync(path.join(base, '.pool'))).toEqual([]);
  });

  it('makes a venv on the spot when the pool is empty', async () => {
    const pool = new VenvPool({ root: path.join(base, '.pool-empty'), size: 0, layout: 'venv' });
    pool.start();
    const target = path.join(base, 'ws-2', '.venv');
    await pool.take(target);
    const py = await run(path.join(target, 'bin', 'python'), ['-c', 'import sys; print(sys.prefix)'], base);
    expect(py.stdout.trim()).toBe(target);
    await pool.stop();
  });

  it('gives the venv a pip shim that works: list and install', async () => {
    const pool = new VenvPool({ root: path.join(base, '.pool-pip'), size: 1 });
    pool.start();
    const target = path.join(base, 'ws-3', '.venv');
    await pool.take(target);
    await pool.stop();
    const shim = readFileSync(path.join(target, 'bin', 'pip'), 'utf8');
    expect(shim).toContain(await resolveBasePython());
    expect(existsSync(path.join(target, 'bin', 'pip3'))).toBe(true);

    const wheels = path.join(base, 'wheels');
    buildWheel(wheels, 'cgpool_pkg', '0.3');
    const install = await run(path.join(target, 'bin', 'pip'), ['install', '--no-index', '--find-links', wheels, 'cgpool_pkg'], path.dirname(target));
    expect(install.exitCode).toBe(0);
    // Invoked by a relative path, as a user would from the workspace.
    const list = await run('.venv/bin/pip', ['list', '--format', 'freeze'], path.dirname(target));
    expect(list.exitCode).toBe(0);
    expect(list.stdout).toContain('cgpool_pkg==0.3');
  });

  it('refuses a target that already exists, without spending a ready venv', async () => {
    const pool = new VenvPool({ root: path.join(base, '.pool-busy'), size: 1, layout: 'venv' });
    pool.start();
    try {
      expect(await eventually(() => pool.ready === 1, 20_000)).toBe(true);
      const target = path.join(base, 'ws-busy', '.venv');
      mkdirSync(target, { recursive: true });
      await expect(pool.take(target)).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
      expect(pool.ready).toBe(1);
    } finally {
      await pool.stop();
    }
  });

  it('clears what an earlier run left in the pool folder', async () => {
    const root = path.join(base, '.pool-stale');
    mkdirSync(path.join(root, 'venv-half-made'), { recursive: true });
    const pool = new VenvPool({ root, size: 1, layout: 'venv' });
    pool.start();
    expect(await eventually(() => pool.ready === 1, 20_000)).toBe(true);
    expect(readdirSync(root).includes('venv-half-made')).toBe(false);
    await pool.stop();
  });
});

describe('a venv written in its layout (the default)', () => {
  it('works like one python -m venv made: sys.prefix, site-packages, activate, pip shim; no pool is kept', async () => {
    const pool = new VenvPool({ root: path.join(base, '.pool-direct'), size: 2 });
    pool.start();
    try {
      expect(await pool.mode()).toBe('direct');
      const target = path.join(base, 'ws-direct', '.venv');
      await pool.take(target);
      expect(pool.ready).toBe(0);
      const py = await run(path.join(target, 'bin', 'python'), ['-c', "import sys, sysconfig; print(sys.prefix); print(sys.prefix != sys.base_prefix); print(sysconfig.get_path('purelib'))"], base);
      const short = (await run(await resolveBasePython(), ['-c', "import sys; print('%d.%d' % sys.version_info[:2])"], base)).stdout.trim();
      expect(py.stdout).toBe(`${target}\nTrue\n${target}/lib/python${short}/site-packages\n`);
      expect(readFileSync(path.join(target, 'bin', 'activate'), 'utf8')).toContain(`VIRTUAL_ENV="${target}"`);
      expect(readFileSync(path.join(target, 'pyvenv.cfg'), 'utf8')).toContain('include-system-site-packages = false');
      // The same entries as python -m venv --without-pip makes, with the same link targets.
      const made = path.join(base, 'made-by-venv');
      expect((await run(await resolveBasePython(), ['-m', 'venv', '--without-pip', made], base)).exitCode).toBe(0);
      const entries = (dir: string) => readdirSync(dir, { recursive: true }).map(String).filter((e) => !e.startsWith('bin/pip')).sort();
      expect(entries(target)).toEqual(entries(made));
      const wheels = path.join(base, 'wheels-direct');
      buildWheel(wheels, 'cgdirect_pkg', '0.5');
      expect((await run(path.join(target, 'bin', 'pip'), ['install', '--no-index', '--find-links', wheels, 'cgdirect_pkg'], path.dirname(target))).exitCode).toBe(0);
      expect((await run(path.join(target, 'bin', 'python'), ['-c', 'import cgdirect_pkg; print(cgdirect_pkg.VERSION)'], base)).stdout).toBe('0.5\n');
      expect(readdirSync(path.join(base, '.pool-direct'))).toEqual([]);
    } finally {
      await pool.stop();
    }
  });
});

describe('workspaces', () => {
  it('createWorkspace makes the folder, artifacts/ and a venv; removeWorkspace removes it', async () => {
    const wsBase = path.join(base, 'workspaces');
    const pool = new VenvPool({ root: path.join(wsBase, '.pool'), size: 1 });
    pool.start();
    try {
      const dir = await createWorkspace(wsBase, 'sess-abc', pool);
      expect(dir).toBe(path.join(wsBase, 'sess-abc'));
      expect(existsSync(path.join(dir, 'artifacts'))).toBe(true);
      expect(existsSync(path.join(dir, '.venv', 'bin', 'python'))).toBe(true);
      // Again (a restarted session): files and venv are kept.
      writeFileSync(path.join(dir, 'keep.txt'), 'x');
      await createWorkspace(wsBase, 'sess-abc', pool);
      expect(existsSync(path.join(dir, 'keep.txt'))).toBe(true);

      // A link inside is removed as a link, not followed.
      const outside = path.join(base, 'outside-target');
      mkdirSync(outside, { recursive: true });
      writeFileSync(path.join(outside, 'precious.txt'), 'keep me');
      symlinkSync(outside, path.join(dir, 'link-out'));
      await removeWorkspace(wsBase, 'sess-abc');
      expect(existsSync(dir)).toBe(false);
      expect(readFileSync(path.join(outside, 'precious.txt'), 'utf8')).toBe('keep me');
    } finally {
      await pool.stop();
    }
  });

  it('refuses session ids that are not a single safe folder name', async () => {
    const wsBase = path.join(base, 'workspaces');
    for (const bad of ['..', '../x', 'a/b', '', '.pool', '/abs']) {
      await expect(removeWorkspace(wsBase, bad), bad).rejects.toMatchObject({ code: expect.stringMatching(/INVALID_ARGUMENT|PATH_VIOLATION/) });
    }
    expect(existsSync(base)).toBe(true);
  });
});
