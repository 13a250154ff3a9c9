import { describe, expect, it } from 'vitest';
import type { CgroupCounters } from '../../src/sandbox/cgroups.js';
import { safeName } from '../../src/sandbox/cgroups.js';
import { DEFAULT_SESSION_LIMITS, GiB, formatBytes, limitExceededOf, mergeRlimits, sessionLimitsOf, type ExitFacts } from '../../src/sandbox/enforcement.js';
import { bwrapArgs } from '../../src/sandbox/isolation.js';
import { commandRoot, isUnder } from '../../src/sandbox/mounts.js';

const counters = (over: Partial<CgroupCounters> = {}): CgroupCounters => ({ oomKills: 0, pidsMaxHits: 0, memoryFailures: 0, cpuUsageNs: 0, ...over });
const facts = (over: Partial<ExitFacts> = {}): ExitFacts => ({ exitCode: 1, signal: null, timedOut: false, cancelled: false, stderr: '', durationMs: 100, rlimits: {}, ...over });
const limits = sessionLimitsOf(undefined);

describe('session limits', () => {
  it('default to 1 GiB, 256 processes and 600 s of CPU per task, with no CPU share cap', () => {
    expect(DEFAULT_SESSION_LIMITS).toEqual({ memoryBytes: GiB, maxProcesses: 256, cpuSecondsPerTask: 600, cpuMillicores: 0 });
    expect(sessionLimitsOf({ memoryBytes: 512 * 1024 * 1024 })).toEqual({ ...DEFAULT_SESSION_LIMITS, memoryBytes: 512 * 1024 * 1024 });
  });

  it('keep 0 as "no limit" and ignore values that are not numbers of zero or more', () => {
    expect(sessionLimitsOf({ maxProcesses: 0, cpuSecondsPerTask: -5, memoryBytes: Number.NaN })).toEqual({ ...DEFAULT_SESSION_LIMITS, maxProcesses: 0 });
  });

  it('merge rlimits so that the smaller of two set values wins', () => {
    expect(mergeRlimits({ cpuSeconds: 30, memoryBytes: 100 }, { cpuSeconds: 600, maxProcesses: 5 })).toEqual({ cpuSeconds: 30, memoryBytes: 100, maxProcesses: 5 });
    expect(mergeRlimits({ cpuSeconds: undefined }, { cpuSeconds: 600 })).toEqual({ cpuSeconds: 600 });
  });

  it('name sizes as people read them', () => {
    expect(formatBytes(GiB)).toBe('1 GiB');
    expect(formatBytes(512 * 1024 * 1024)).toBe('512 MiB');
    expect(formatBytes(1536 * 1024 * 1024)).toBe('1.5 GiB');
    expect(formatBytes(1000)).toBe('1000 bytes');
  });
});

describe('why a program ended', () => {
  it('is the memory limit when the session cgroup counted an OOM kill', () => {
    expect(limitExceededOf(facts({ exitCode: 137 }), counters(), counters({ oomKills: 1 }), limits)).toEqual({
      limit: 'memory',
      message: 'memory limit of 1 GiB per session exceeded (the kernel killed the program)',
    });
  });

  it('is the process limit when pids.max refused a fork, even when the run then timed out', () => {
    const r = limitExceededOf(facts({ exitCode: 143, timedOut: true }), counters({ pidsMaxHits: 3 }), counters({ pidsMaxHits: 90 }), limits);
    expect(r?.limit).toBe('processes');
    expect(r?.message).toContain('256 per session');
  });

  it('is the CPU time on SIGXCPU (as bwrap reports it: 128 + 24) or as a signal', () => {
    const rl = { cpuSeconds: 2 };
    expect(limitExceededOf(facts({ exitCode: 152, rlimits: rl }), counters(), counters(), limits)?.limit).toBe('cpu_time');
    expect(limitExceededOf(facts({ exitCode: 152, signal: 'SIGXCPU', rlimits: rl }), null, null, null)?.message).toBe('CPU time limit of 2 s per task exceeded (the program was killed)');
  });

  it('is the CPU time on a SIGKILL only when the task used its CPU seconds', () => {
    const rl = { cpuSeconds: 2 };
    expect(limitExceededOf(facts({ exitCode: 137, rlimits: rl }), counters({ cpuUsageNs: 0 }), counters({ cpuUsageNs: 2.1e9 }), limits)?.limit).toBe('cpu_time');
    expect(limitExceededOf(facts({ exitCode: 137, rlimits: rl }), counters({ cpuUsageNs: 0 }), counters({ cpuUsageNs: 0.2e9 }), limits)).toBeUndefined();
  });

  it('is the file size on SIGXFSZ, or on Python\'s EFBIG error, with a file-size limit set', () => {
    const rl = { maxFileBytes: 1024 * 1024 };
    expect(limitExceededOf(facts({ exitCode: 153, rlimits: rl }), null, null, null)).toEqual({ limit: 'file_size', message: 'file size limit of 1 MiB exceeded' });
    expect(limitExceededOf(facts({ stderr: 'OSError: [Errno 27] File too large', rlimits: rl }), null, null, null)?.limit).toBe('file_size');
    expect(limitExceededOf(facts({ stderr: 'OSError: [Errno 27] File too large' }), null, null, null)).toBeUndefined();
  });

  it('is no limit for a program that exited 0, that was cancelled, or that failed on its own', () => {
    expect(limitExceededOf(facts({ exitCode: 0 }), counters(), counters({ oomKills: 1 }), limits)).toBeUndefined();
    expect(limitExceededOf(facts({ exitCode: 137, cancelled: true }), counters(), counters({ oomKills: 1 }), limits)).toBeUndefined();
    expect(limitExceededOf(facts({ exitCode: 1 }), counters(), counters(), limits)).toBeUndefined();
  });
});

describe('the sandbox view', () => {
  const view = { workspace: '/tmp', hide: ['/work', '/root'], allowNetwork: false };

  it('mounts /usr and a minimal /etc, never the whole root, and makes the root read-only last', () => {
    const args = bwrapArgs(view, '/tmp');
    const pairs = args.map((a, i) => `${a} ${args[i + 1]} ${args[i + 2]}`);
    expect(pairs).not.toContain('--ro-bind / /');
    expect(pairs).toContain('--ro-bind /usr /usr');
    expect(args.filter((a) => a === '--ro-bind' || a === '--ro-bind-try' || a === '--bind').length).toBeGreaterThan(3);
    expect(args.slice(-5)).toEqual(['--remount-ro', '/', '--chdir', '/tmp', '--']);
    const remount = args.indexOf('--remount-ro');
    expect(remount).toBeGreaterThan(args.lastIndexOf('--bind'));
    expect(args.at(-1)).toBe('--');
    for (const top of ['/root', '/home', '/work', '/var', '/srv', '/opt']) {
      expect(args.filter((a, i) => (args[i - 1] === '--ro-bind' || args[i - 1] === '--bind' || args[i - 1] === '--ro-bind-try') && a === top)).toEqual([]);
    }
  });

  it('covers a hidden folder only when a mounted folder holds it (the others are absent anyway)', () => {
    const args = bwrapArgs({ ...view, hide: ['/usr/share/doc', '/work'] }, '/tmp');
    expect(args.join(' ')).toContain('--tmpfs /usr/share/doc');
    expect(args.join(' ')).not.toContain('--tmpfs /work');
  });

  it('gives bwrap the seccomp fd it is told, before the command', () => {
    const args = bwrapArgs(view, '/tmp', { seccompFd: 4 });
    const at = args.indexOf('--seccomp');
    expect(args[at + 1]).toBe('4');
    expect(at).toBeLessThan(args.indexOf('--'));
    expect(bwrapArgs(view, '/tmp')).not.toContain('--seccomp');
  });

  it('gives resolv.conf only to a sandbox with the network', () => {
    const has = (a: string[]) => a.includes('/etc/resolv.conf');
    expect(has(bwrapArgs(view, '/tmp'))).toBe(false);
    expect(has(bwrapArgs({ ...view, allowNetwork: true }, '/tmp'))).toBe(true);
  });
});

describe('a command outside the mounted folders', () => {
  it('brings the folder above its bin/ or shims/ folder, but never a top-level host folder', () => {
    expect(commandRoot('/usr/bin/env', '/tmp/ws', ['/usr'])).toBeNull();
    expect(commandRoot('/tmp/ws/.venv/bin/python', '/tmp/ws', ['/usr'])).toBeNull();
    expect(isUnder('/root/.pyenv/versions', '/root/.pyenv')).toBe(true);
    expect(isUnder('/root/.pyenvX', '/root/.pyenv')).toBe(false);
  });

  it('gets a safe cgroup folder name from any session id', () => {
    expect(safeName('sess-1')).toBe('sess-1');
    expect(safeName('../x')).toMatch(/^h-[0-9a-f]{32}$/);
    expect(safeName('a/b')).not.toContain('/');
  });
});
