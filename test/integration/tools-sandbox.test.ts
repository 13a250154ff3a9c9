import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodegenError } from '../../src/domain/errors.js';
import { detectIsolation, launch, setIsolation, type Isolation, type LaunchSpec } from '../../src/sandbox/launch.js';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';

const hasBwrap = (await detectIsolation('auto')) === 'bwrap';
if (!hasBwrap) console.warn('bwrap does not work here (apt-get install bubblewrap): bwrap tests are skipped');
const isolations: Isolation[] = hasBwrap ? ['bwrap', 'process'] : ['process'];

let base: string;
let workspace: string;
let sibling: string;

beforeAll(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'codegen-sandbox-'));
  workspace = path.join(base, 'ws-a');
  sibling = path.join(base, 'ws-b');
  mkdirSync(workspace);
  mkdirSync(sibling);
  writeFileSync(path.join(sibling, 'secret.txt'), 'sibling secret');
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

const spec = (over: Partial<LaunchSpec>): LaunchSpec => ({
  command: '/bin/sh',
  args: [],
  cwd: workspace,
  env: { PATH: '/usr/bin:/bin' },
  timeoutMs: 20_000,
  maxOutputBytes: 1024 * 1024,
  ...over,
});

describe('launch without a sandbox', () => {
  it('gives the program exactly the environment it is given', async () => {
    process.env.CODEGEN_TEST_WORKER_SECRET = 'do-not-leak';
    try {
      const r = await launch(spec({ command: 'env', env: { PATH: '/usr/bin:/bin', ONLY_THIS: '1' } }));
      expect(r.exitCode).toBe(0);
      expect(r.stdout.trim().split('\n').sort()).toEqual(['ONLY_THIS=1', 'PATH=/usr/bin:/bin']);
    } finally {
      delete process.env.CODEGEN_TEST_WORKER_SECRET;
    }
  });

  it('rejects with INTERNAL only when the command cannot start', async () => {
    const err = await launch(spec({ command: 'no-such-program-here' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CodegenError);
    expect((err as CodegenError).code).toBe('INTERNAL');
    const failed = await launch(spec({ args: ['-c', 'echo out; echo err >&2; exit 7'] }));
    expect(failed).toMatchObject({ exitCode: 7, stdout: 'out\n', stderr: 'err\n', timedOut: false, cancelled: false });
  });

  it('passes stdin and reports a death by signal as 128 + n', async () => {
    const r = await launch(spec({ command: 'cat', stdin: 'hello\n' }));
    expect(r.stdout).toBe('hello\n');
    const killed = await launch(spec({ args: ['-c', 'kill -9 $$'] }));
    expect(killed.exitCode).toBe(137);
  });

  it('cuts each stream at the cap and says how much was dropped', async () => {
    const lines: string[] = [];
    const r = await launch(
      spec({ args: ['-c', 'head -c 100000 /dev/zero | tr "\\0" "a"; echo; echo small >&2'], maxOutputBytes: 1000, onLine: (_s, l) => lines.push(l) }),
    );
    expect(r.truncated).toBe(true);
    expect(r.stdout.startsWith('a'.repeat(1000))).toBe(true);
    expect(r.stdout).toContain('[output truncated: 99001 bytes dropped]');
    expect(r.stderr).toBe('small\n');
    expect(lines.join('\n').length).toBeLessThan(3000);
  });

  it('cancels before the start without running anything', async () => {
    const ac = new AbortController();
    ac.abort();
    const r = await launch(spec({ args: ['-c', 'sleep 5'], signal: ac.signal }));
    expect(r.cancelled).toBe(true);
  });
});

describe('isolation detection', () => {
  it("'none' means process isolation and 'bwrap' fails loudly only when bwrap does not work", async () => {
    expect(await detectIsolation('none')).toBe('process');
    if (hasBwrap) expect(await detectIsolation('bwrap')).toBe('bwrap');
    else await expect(detectIsolation('bwrap')).rejects.toThrow(/bwrap/);
  });
});

describe.each(isolations)('a sandboxed launch (%s)', (iso) => {
  beforeAll(() => setIsolation(iso));
  const box = (over: Partial<NonNullable<LaunchSpec['sandbox']>> = {}): NonNullable<LaunchSpec['sandbox']> => ({
    workspace,
    hide: [base],
    allowNetwork: false,
    ...over,
  });

  it('kills the whole group on timeout, grandchildren included', async () => {
    const token = uniqueToken('sandbox-timeout');
    // Both shells ignore SIGTERM and carry the token in their command lines ($0 of the inner one).
    const script = path.join(workspace, 'stubborn.sh');
    writeFileSync(script, `trap "" TERM\nsh -c 'trap "" TERM; while :; do sleep 0.1; done' "$1" &\nwhile :; do sleep 0.1; done\n`);
    const r = await launch(spec({ args: [script, token], timeoutMs: 500, sandbox: box() }));
    expect(r.timedOut).toBe(true);
    expect(r.durationMs).toBeLessThan(5000);
    expect(await eventually(() => pidsWithToken(token).length === 0)).toBe(true);
  });

  it('also kills a descendant that left the group with setsid while its parent runs', async () => {
    const token = uniqueToken('sandbox-setsid');
    const script = path.join(workspace, 'escaper.sh');
    writeFileSync(script, `setsid sh -c 'trap "" TERM; while :; do sleep 0.1; done' "$1" &\nwhile :; do sleep 0.1; done\n`);
    const r = await launch(spec({ args: [script, token], timeoutMs: 700, sandbox: box() }));
    expect(r.timedOut).toBe(true);
    expect(await eventually(() => pidsWithToken(token).length === 0)).toBe(true);
  });

  it('applies an address-space limit', async () => {
    const r = await launch(
      spec({
        command: 'python3',
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: workspace, ...(process.env.PYENV_ROOT ? { PYENV_ROOT: process.env.PYENV_ROOT } : {}) },
        args: ['-c', 'import resource\ntry:\n  b = bytearray(1 << 30)\n  print("allocated")\nexcept MemoryError:\n  print("refused")'],
        sandbox: box({ memoryBytes: 256 * 1024 * 1024 }),
      }),
    );
    expect(r.stdout.trim()).toBe('refused');
  });

  it.runIf(iso === 'bwrap')('shows a read-only system, a writable workspace and no other session', async () => {
    const r = await launch(
      spec({
        args: ['-c', `echo ok > ${workspace}/made-inside; ls ${sibling} 2>&1; cat ${sibling}/secret.txt 2>&1; touch /usr/evil 2>&1; echo done`],
        sandbox: box(),
      }),
    );
    expect(r.stdout).not.toContain('sibling secret');
    expect(r.stdout).toMatch(/Read-only file system/);
    expect(r.stdout).toContain('done');
    const check = await launch(spec({ command: 'cat', args: [path.join(workspace, 'made-inside')] }));
    expect(check.stdout).toBe('ok\n');
  });

  it.runIf(iso === 'bwrap')("shows nothing of the worker user's home (credentials or plain files) nor the shadow file", async () => {
    // Outside /tmp, which the sandbox replaces anyway: the sandbox mounts only what Python needs, so the home is not there at all.
    const home = mkdtempSync(path.join('/var/tmp', 'codegen-home-'));
    mkdirSync(path.join(home, '.ssh'));
    writeFileSync(path.join(home, '.ssh', 'id_ed25519'), 'PRIVATE KEY');
    writeFileSync(path.join(home, '.netrc'), 'machine example password hunter2');
    writeFileSync(path.join(home, 'notes.txt'), 'plain file');
    const saved = process.env.HOME;
    process.env.HOME = home;
    try {
      const r = await launch(
        spec({ args: ['-c', `cat ${home}/notes.txt; cat ${home}/.ssh/id_ed25519 ${home}/.netrc /etc/shadow 2>&1; ls -A ${home}/.ssh; echo done`], sandbox: box() }),
      );
      expect(r.stdout).not.toContain('plain file');
      expect(r.stdout).toMatch(/\.netrc: No such file or directory/);
      expect(r.stdout).not.toContain('PRIVATE KEY');
      expect(r.stdout).not.toContain('hunter2');
      expect(r.stdout).not.toMatch(/^root:/m);
      expect(r.stdout).toContain('done');
    } finally {
      process.env.HOME = saved;
      rmSync(home, { recursive: true, force: true });
    }
  });

  it.runIf(iso === 'bwrap')('has no network unless allowed', async () => {
    const server = net.createServer((s) => s.end('hi'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const probe = `import socket\ntry:\n  socket.create_connection(("127.0.0.1", ${port}), timeout=3).recv(2)\n  print("connected")\nexcept OSError as e:\n  print("refused")`;
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: workspace, ...(process.env.PYENV_ROOT ? { PYENV_ROOT: process.env.PYENV_ROOT } : {}) };
      const closed = await launch(spec({ command: 'python3', args: ['-c', probe], env, sandbox: box() }));
      expect(closed.stdout.trim()).toBe('refused');
      const open = await launch(spec({ command: 'python3', args: ['-c', probe], env, sandbox: box({ allowNetwork: true }) }));
      expect(open.stdout.trim()).toBe('connected');
    } finally {
      server.close();
    }
  });
});
