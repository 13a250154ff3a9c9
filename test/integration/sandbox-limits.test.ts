import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sessionCgroupDirs, sessionPids } from '../../src/sandbox/cgroups.js';
import { descendantsOf } from '../../src/sandbox/kill-group.js';
import { GiB, detectEnforcement, releaseSessionLimits, sessionUsage, sessionsWithLimits, type SessionLimits } from '../../src/sandbox/enforcement.js';
import { detectIsolation, launch, setIsolation, type LaunchResult, type LaunchSpec } from '../../src/sandbox/launch.js';
import { WarmPythonRegistry } from '../../src/sandbox/warm/sessions.js';
import { resolveBasePython } from '../../src/worker/venv-pool.js';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';

/**
 * Limits on every session, with real processes in real cgroups: a 4 GB allocation, a fork bomb
 * and a CPU spin each end with limitExceeded naming the limit, the host keeps its memory, and the
 * same session runs the next program fine. Cold (a fresh sandbox per program) and warm (a fork of
 * the session's fork server, which lives in the session's cgroup too).
 */

const hasBwrap = (await detectIsolation('auto')) === 'bwrap';
const enforcement = detectEnforcement();
const cgroups = enforcement.memory.mode.startsWith('cgroup') && enforcement.processes.mode.startsWith('cgroup');
if (!hasBwrap) console.warn('sandbox-limits: bwrap does not work here (apt-get install bubblewrap): skipped');
if (!cgroups) console.warn(`sandbox-limits: no writable memory and pids cgroups here (${enforcement.memory.reason}; ${enforcement.processes.reason}): skipped`);

const python = await resolveBasePython();
let base: string;
let registry: WarmPythonRegistry;
const used: string[] = [];
let counter = 0;

beforeAll(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'codegen-limits-'));
  registry = new WarmPythonRegistry({ root: path.join(base, '.warm') });
  if (hasBwrap) setIsolation('bwrap');
});
afterAll(async () => {
  await registry.stopAll();
  for (const id of used) await releaseSessionLimits(id);
  rmSync(base, { recursive: true, force: true });
  expect(sessionsWithLimits()).toEqual([]);
});

function newSession(): { id: string; workspace: string } {
  const id = `limits-${process.pid}-${++counter}`;
  const workspace = path.join(base, id);
  mkdirSync(workspace);
  used.push(id);
  return { id, workspace };
}

const memAvailable = (): number => {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return Number(m![1]) * 1024;
};

/** Run `code` in the session, cold or warm; token is in the program's command line. */
async function run(mode: 'cold' | 'warm', s: { id: string; workspace: string }, code: string, token: string, limits: Partial<SessionLimits> = {}, timeoutMs = 15_000): Promise<LaunchResult> {
  const env = { PATH: '/usr/bin:/bin', HOME: s.workspace, LANG: 'C.UTF-8', PYTHONUNBUFFERED: '1' };
  const sandbox: NonNullable<LaunchSpec['sandbox']> = { workspace: s.workspace, hide: [base], allowNetwork: false, sessionId: s.id, limits };
  if (mode === 'cold') {
    return launch({ command: python, args: ['-c', code, token], cwd: s.workspace, env, timeoutMs, maxOutputBytes: 64 * 1024, sandbox });
  }
  const warm = registry.forSession(s.id);
  const result = await warm.run(
    { python, workspace: s.workspace, view: { workspace: s.workspace, hide: [base], allowNetwork: false }, env, sessionId: s.id, limits },
    { argv: ['-', token], code, env, cwd: s.workspace, limits: {}, timeoutMs, maxOutputBytes: 64 * 1024 },
  );
  expect(result, 'the warm interpreter ran the task').not.toBeNull();
  return result!;
}

async function stillUsable(mode: 'cold' | 'warm', s: { id: string; workspace: string }, limits: Partial<SessionLimits> = {}): Promise<void> {
  const after = await run(mode, s, 'print(1)', uniqueToken('after'), limits);
  expect(after).toMatchObject({ exitCode: 0, stdout: '1\n' });
  expect(after.limitExceeded).toBeUndefined();
}

afterEach(async () => {
  // Nothing a test started outlives it: each session's cgroup holds its warm interpreter's sandbox, no more.
  for (const id of sessionsWithLimits()) {
    const leftovers = (): number[] => {
      const warmPid = registry.current(id)?.stats().pid;
      const warmTree = warmPid === undefined ? [] : [warmPid, ...descendantsOf(warmPid)];
      return sessionPids(id).filter((p) => !warmTree.includes(p));
    };
    const describe = (): string =>
      leftovers()
        .map((p) => {
          try {
            return `${p} [${readFileSync(`/proc/${p}/stat`, 'utf8').split(' ').slice(2, 4).join(' ')}] ${readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 120)}`;
          } catch {
            return `${p} (gone)`;
          }
        })
        .join('; ');
    expect(await eventually(() => leftovers().length === 0, 5000), `processes left in ${id}: ${describe()}`).toBe(true);
  }
});

describe.runIf(hasBwrap && cgroups).each(['cold', 'warm'] as const)('session limits (%s)', (mode) => {
  it('ends a 4 GB allocation with the memory limit of 1 GiB, and the host keeps its memory', async () => {
    const s = newSession();
    const token = uniqueToken('oom');
    const before = memAvailable();
    let lowest = before;
    const poll = setInterval(() => (lowest = Math.min(lowest, memAvailable())), 20);
    let r: LaunchResult;
    try {
      r = await run(mode, s, 'b = bytearray(4 << 30)\nprint("allocated", len(b))', token);
    } finally {
      clearInterval(poll);
    }
    expect(r.stdout).not.toContain('allocated');
    expect(r.exitCode).not.toBe(0);
    expect(r.limitExceeded).toEqual({ limit: 'memory', message: 'memory limit of 1 GiB per session exceeded (the kernel killed the program)' });
    expect(before - lowest).toBeLessThan(1.2 * GiB);
    // The killed program's memory is back: the session's own count, not the host's, which other tests move.
    const usage = sessionUsage(s.id)!;
    expect(usage.memoryBytes ?? 0).toBeLessThan(64 * 1024 * 1024);
    expect(usage.memoryPeakBytes).toBeGreaterThan(0.9 * GiB);
    expect(usage.memoryPeakBytes).toBeLessThanOrEqual(GiB);
    expect(pidsWithToken(token)).toEqual([]);
    await stillUsable(mode, s);
  });

  it('holds a fork bomb at the process limit and says so', async () => {
    const s = newSession();
    const token = uniqueToken('forkbomb');
    const bomb = 'import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.05)';
    let most = 0;
    const poll = setInterval(() => (most = Math.max(most, sessionUsage(s.id)?.processes ?? 0)), 20);
    let r: LaunchResult;
    try {
      r = await run(mode, s, bomb, token, { maxProcesses: 64 }, 4000);
    } finally {
      clearInterval(poll);
    }
    expect(r.timedOut).toBe(true);
    expect(most).toBeGreaterThan(32); // it did fork...
    expect(most).toBeLessThanOrEqual(64); // ...up to the limit and no further
    expect(r.limitExceeded).toEqual({ limit: 'processes', message: 'process limit of 64 per session reached (the program could not start more processes)' });
    expect(await eventually(() => pidsWithToken(token).length === 0, 5000)).toBe(true);
    await stillUsable(mode, s, { maxProcesses: 64 });
  });

  it('ends a CPU spin at its CPU time per task', async () => {
    const s = newSession();
    const token = uniqueToken('spin');
    const r = await run(mode, s, 'while True:\n    pass', token, { cpuSecondsPerTask: 1 });
    expect(r.timedOut).toBe(false);
    expect(r.durationMs).toBeLessThan(10_000);
    expect(r.limitExceeded).toEqual({ limit: 'cpu_time', message: 'CPU time limit of 1 s per task exceeded (the program was killed)' });
    expect(sessionUsage(s.id)!.cpuTimeMs).toBeGreaterThanOrEqual(900);
    await stillUsable(mode, s, { cpuSecondsPerTask: 1 });
  });
});

describe.runIf(hasBwrap && cgroups)('a session cgroup', () => {
  it('holds every process of the session, reports its usage, and is removed with the session', async () => {
    const s = newSession();
    const r = await run('warm', s, 'import os\nprint(open("/proc/self/cgroup").read().count(":/"))', uniqueToken('usage'));
    expect(r.exitCode).toBe(0);
    const dirs = sessionCgroupDirs(s.id);
    expect(dirs.length).toBeGreaterThan(0);
    const warmPid = registry.current(s.id)!.stats().pid!;
    expect(sessionPids(s.id)).toContain(warmPid); // the warm interpreter is in it
    const usage = sessionUsage(s.id)!;
    expect(usage.memoryBytes).toBeGreaterThan(1024 * 1024);
    expect(usage.processes).toBeGreaterThanOrEqual(1);
    await registry.release(s.id);
    await releaseSessionLimits(s.id);
    expect(dirs.every((d) => !existsSync(d))).toBe(true);
    expect(sessionUsage(s.id)).toBeNull();
  });

  it('holds a fork bomb at the default 256 processes per session', async () => {
    const s = newSession();
    const token = uniqueToken('forkbomb-default');
    const bomb = 'import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.05)';
    let most = 0;
    const poll = setInterval(() => (most = Math.max(most, sessionUsage(s.id)?.processes ?? 0)), 20);
    let r: LaunchResult;
    try {
      r = await run('cold', s, bomb, token, {}, 5000);
    } finally {
      clearInterval(poll);
    }
    expect(most).toBeGreaterThan(128);
    expect(most).toBeLessThanOrEqual(256);
    expect(r.limitExceeded?.limit).toBe('processes');
    expect(r.limitExceeded?.message).toContain('256 per session');
    expect(await eventually(() => pidsWithToken(token).length === 0, 5000)).toBe(true);
    await stillUsable('cold', s);
  });

  it('holds the memory limit without bwrap too (process isolation)', async () => {
    const s = newSession();
    setIsolation('process');
    try {
      const r = await run('cold', s, 'b = bytearray(2 << 30)\nprint("allocated")', uniqueToken('oom-process'), { memoryBytes: 256 * 1024 * 1024 });
      expect(r.stdout).toBe('');
      expect(r.limitExceeded).toEqual({ limit: 'memory', message: 'memory limit of 256 MiB per session exceeded (the kernel killed the program)' });
      await stillUsable('cold', s, { memoryBytes: 256 * 1024 * 1024 });
    } finally {
      setIsolation('bwrap');
    }
  });

  it.runIf(enforcement.cpuShare.mode.startsWith('cgroup'))('holds a session to its CPU share in millicores', async () => {
    const s = newSession();
    const spin = 'import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.5:\n    pass\nprint(round(time.process_time(), 2))';
    const capped = await run('cold', s, spin, uniqueToken('share'), { cpuMillicores: 200 });
    expect(capped.exitCode).toBe(0);
    // 1.5 s of wall time at a fifth of a core: about 0.3 s of CPU (a whole core would give about 1.5 s).
    expect(Number(capped.stdout)).toBeLessThan(0.6);
    expect(Number(capped.stdout)).toBeGreaterThan(0.1);
  });

  it('applies no session limit to a launch that names no session', async () => {
    const s = newSession();
    const r = await launch({
      command: python,
      args: ['-c', 'b = bytearray(1200 << 20); print("allocated")'],
      cwd: s.workspace,
      env: { PATH: '/usr/bin:/bin' },
      timeoutMs: 15_000,
      maxOutputBytes: 4096,
      sandbox: { workspace: s.workspace, hide: [base], allowNetwork: false },
    });
    expect(r.stdout).toBe('allocated\n');
    expect(r.limitExceeded).toBeUndefined();
  });
});
