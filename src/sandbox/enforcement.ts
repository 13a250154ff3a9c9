import { closeSync } from 'node:fs';
import {
  cgroupSessions,
  cgroupUsage,
  detectCgroups,
  ensureSessionCgroup,
  joinPrefix,
  releaseAllSessionCgroups,
  releaseSessionCgroup,
  sessionCounters,
  setCgroupInstance,
  type CgroupCounters,
} from './cgroups.js';
import { findPrlimit, type ResourceLimits } from './limits.js';
import { describeMounts, setSandboxPythons } from './mounts.js';
import { openSeccompFd, prepareSeccomp } from './seccomp.js';

/**
 * Limits on every session, on by default, and how this host enforces them.
 *
 * - memory (per session, all its processes together): the session's cgroup (memory.max /
 *   memory.limit_in_bytes, with swap closed: memory.swap.max=0, or memsw = the same limit and
 *   swappiness 0). The kernel's OOM killer ends the biggest process of the session when it is
 *   exceeded. Without a memory cgroup: RLIMIT_AS of each process (a MemoryError rather than a
 *   kill, and per process, not per session).
 * - processes (per session): pids.max of the session's cgroup (fork fails with EAGAIN). Without
 *   it: RLIMIT_NPROC, which the kernel counts per user over the whole host and never enforces
 *   for root.
 * - CPU time (per task): RLIMIT_CPU of every process the task starts (SIGXCPU at the limit,
 *   SIGKILL one second later). Default 600 s: ten minutes of one core is more than any sensible
 *   agent task needs (the default task timeout is 300 s of wall time, the longest 3600 s), yet a
 *   runaway spin is ended well before it costs an hour of a core.
 * - CPU share (per session, millicores; 0 = none): the cpu controller's quota (cpu.max /
 *   cpu.cfs_quota_us over a 100 ms period).
 */

export interface SessionLimits {
  /** Memory of all the session's processes together, in bytes; 0 = none. */
  memoryBytes: number;
  /** Processes (and threads) of the session at once; 0 = none. */
  maxProcesses: number;
  /** CPU time of each process of a task, in seconds; 0 = none. */
  cpuSecondsPerTask: number;
  /** CPU share of the session in millicores (1000 = one core); 0 = none. */
  cpuMillicores: number;
}

export const GiB = 1024 * 1024 * 1024;

export const DEFAULT_SESSION_LIMITS: Readonly<SessionLimits> = Object.freeze({
  memoryBytes: GiB,
  maxProcesses: 256,
  cpuSecondsPerTask: 600,
  cpuMillicores: 0,
});

/** The session limits with defaults filled in for what is missing (undefined); 0 stays "none". */
export function sessionLimitsOf(partial: Partial<SessionLimits> | undefined): SessionLimits {
  const pick = (k: keyof SessionLimits): number => {
    const v = partial?.[k];
    return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : DEFAULT_SESSION_LIMITS[k];
  };
  return { memoryBytes: pick('memoryBytes'), maxProcesses: pick('maxProcesses'), cpuSecondsPerTask: pick('cpuSecondsPerTask'), cpuMillicores: pick('cpuMillicores') };
}

export type EnforcementMode = 'cgroup-v2' | 'cgroup-v1' | 'rlimit' | 'none';
export interface LimitEnforcement {
  mode: EnforcementMode;
  reason: string;
}

export interface Enforcement {
  memory: LimitEnforcement;
  processes: LimitEnforcement;
  cpuTime: LimitEnforcement;
  cpuShare: LimitEnforcement;
  seccomp: { available: boolean; reason: string; arch?: string; blocked: string[] };
  /** What every sandbox mounts (one line). */
  mounts: string;
  /** Lines for the worker's start-up log. */
  describe(): string;
}

export interface EnforcementOptions {
  /** This worker's cgroup folder name (a worker id); default `w<pid>`. */
  instance?: string;
  /** Interpreters whose prefixes sandboxes mount besides `python3` on PATH (the worker's base interpreter). */
  pythons?: string[];
}

let enforcement: Enforcement | undefined;

const isRoot = (): boolean => process.getuid?.() === 0;

/**
 * How each limit is enforced here, whether the seccomp filter could be made, and what sandboxes
 * mount. Detected once (the options apply on the first call, or pass them again to redo it).
 * Never throws.
 */
export function detectEnforcement(opts: EnforcementOptions = {}): Enforcement {
  if (opts.instance !== undefined) setCgroupInstance(opts.instance);
  if (opts.pythons !== undefined) setSandboxPythons(opts.pythons);
  if (enforcement && opts.instance === undefined && opts.pythons === undefined) return enforcement;
  const cg = detectCgroups();
  const prlimit = findPrlimit() !== null;
  const viaCgroup = (c: 'memory' | 'pids' | 'cpu', fallback: LimitEnforcement): LimitEnforcement => {
    const place = cg.places[c];
    if (place) return { mode: place.kind, reason: cg.reasons[c] + (c === 'memory' ? (place.kind === 'cgroup-v2' ? ', swap closed (memory.swap.max=0)' : cg.memsw ? ', swap included (memsw)' : ', swappiness 0') : '') };
    return { ...fallback, reason: `${fallback.reason} (${cg.reasons[c]})` };
  };
  const memory = viaCgroup('memory', prlimit ? { mode: 'rlimit', reason: 'RLIMIT_AS per process, not per session' } : { mode: 'none', reason: 'no cgroup and no prlimit' });
  const processes = viaCgroup(
    'pids',
    !prlimit
      ? { mode: 'none', reason: 'no cgroup and no prlimit' }
      : isRoot()
        ? { mode: 'none', reason: 'RLIMIT_NPROC is never enforced for root, and the worker runs as root' }
        : { mode: 'rlimit', reason: 'RLIMIT_NPROC, counted per user over the whole host' },
  );
  const cpuShare = viaCgroup('cpu', { mode: 'none', reason: 'no cpu controller' });
  const cpuTime: LimitEnforcement = prlimit
    ? { mode: 'rlimit', reason: 'RLIMIT_CPU of every process of a task (SIGXCPU, SIGKILL 1 s later)' }
    : { mode: 'none', reason: 'prlimit (util-linux) is not installed' };
  const sc = prepareSeccomp();
  const seccomp = sc.available
    ? { available: true, reason: `libseccomp via ${sc.python}`, arch: sc.arch, blocked: sc.blocked }
    : { available: false, reason: sc.reason, blocked: [] };
  const mounts = describeMounts();
  const line = (name: string, e: LimitEnforcement) => `${name}: ${e.mode} (${e.reason})`;
  enforcement = {
    memory,
    processes,
    cpuTime,
    cpuShare,
    seccomp,
    mounts,
    describe: () =>
      [
        `limits (defaults: memory ${formatBytes(DEFAULT_SESSION_LIMITS.memoryBytes)} and ${DEFAULT_SESSION_LIMITS.maxProcesses} processes per session, ${DEFAULT_SESSION_LIMITS.cpuSecondsPerTask} s of CPU per task)`,
        line('  memory', memory),
        line('  processes', processes),
        line('  cpu time', cpuTime),
        line('  cpu share', cpuShare),
        seccomp.available
          ? `seccomp: on (${seccomp.arch}; ${seccomp.reason}); refused with EPERM: ${seccomp.blocked.filter((n) => !['clone', 'clone3', 'personality'].includes(n)).join(' ')}; clone with CLONE_NEW* refused, clone3 answers ENOSYS, personality only 0/8/0x20000/0x20008/query`
          : `seccomp: unavailable (${seccomp.reason})`,
        `sandbox mounts: ${mounts}`,
      ].join('\n'),
  };
  return enforcement;
}

export function formatBytes(n: number): string {
  const units: [number, string][] = [
    [GiB, 'GiB'],
    [1024 * 1024, 'MiB'],
    [1024, 'KiB'],
  ];
  for (const [size, unit] of units) if (n >= size && n % (size / 16) === 0) return `${+(n / size).toFixed(2)} ${unit}`;
  return `${n} bytes`;
}

/** Why a task ended because of a limit. */
export interface LimitExceeded {
  limit: 'memory' | 'processes' | 'cpu_time' | 'file_size';
  message: string;
}

export interface SessionUsage {
  /** Memory of the session's processes now (page cache of its files included), bytes; null = unknown. */
  memoryBytes: number | null;
  /** The most it used since its cgroup was made. */
  memoryPeakBytes: number | null;
  /** Processes (v1: tasks) in the session now. */
  processes: number | null;
  /** CPU time the session used since its cgroup was made, ms. */
  cpuTimeMs: number | null;
}

/** The session's usage now; null when no program of it ran under a cgroup yet (or none is available). */
export function sessionUsage(sessionId: string): SessionUsage | null {
  return cgroupUsage(sessionId);
}

/** Kill what is left of the session and remove its cgroup (call when the session is released or destroyed, after its warm interpreter stopped). */
export async function releaseSessionLimits(sessionId: string): Promise<void> {
  await releaseSessionCgroup(sessionId);
}

/** Every session cgroup of this process (worker stop). */
export async function releaseAllSessionLimits(): Promise<void> {
  await releaseAllSessionCgroups();
}

/** Sessions with a cgroup now (for tests and status). */
export const sessionsWithLimits = (): string[] => cgroupSessions();

/** How one sandboxed program gets its session's limits. */
export interface SessionLaunch {
  /** argv prefix that joins the session's cgroup (empty without one). */
  prefix: string[];
  /** rlimits for the program (CPU time; fallbacks for what no cgroup enforces). */
  rlimits: ResourceLimits;
  /** Counters before the start. */
  before: CgroupCounters | null;
  limits: SessionLimits;
}

/** Make (or reuse) the session's cgroup and say how a program joins it. Throws when the cgroup cannot be made. */
export function prepareSessionLaunch(sessionId: string, partial: Partial<SessionLimits> | undefined): SessionLaunch {
  const limits = sessionLimitsOf(partial);
  const cg = detectCgroups();
  const files = ensureSessionCgroup(sessionId, { memoryBytes: limits.memoryBytes, maxProcesses: limits.maxProcesses, cpuMillicores: limits.cpuMillicores });
  const rlimits: ResourceLimits = {};
  if (limits.cpuSecondsPerTask > 0) rlimits.cpuSeconds = limits.cpuSecondsPerTask;
  if (!cg.places.memory && limits.memoryBytes > 0) rlimits.memoryBytes = limits.memoryBytes;
  if (!cg.places.pids && limits.maxProcesses > 0 && !isRoot()) rlimits.maxProcesses = limits.maxProcesses;
  return { prefix: joinPrefix(files), rlimits, before: sessionCounters(sessionId), limits };
}

/** rlimits merged: the smaller of two values of the same limit wins. */
export function mergeRlimits(a: ResourceLimits, b: ResourceLimits): ResourceLimits {
  const out: ResourceLimits = { ...a };
  for (const k of ['memoryBytes', 'maxProcesses', 'maxFileBytes', 'cpuSeconds'] as const) {
    const x = a[k];
    const y = b[k];
    if (y !== undefined && y > 0 && (x === undefined || !(x > 0) || y < x)) out[k] = y;
  }
  return out;
}

const SIG = { SIGKILL: 9, SIGXCPU: 24, SIGXFSZ: 25 } as const;

export interface ExitFacts {
  exitCode: number;
  signal: string | null;
  timedOut: boolean;
  cancelled: boolean;
  stderr: string;
  durationMs: number;
  /** The rlimits the program ran with. */
  rlimits: ResourceLimits;
}

/**
 * Why a program ended, when a limit ended it: a SIGKILL with the session's OOM-kill counter moved
 * (memory), fork refused by pids.max (processes: even when the program went on and timed out),
 * SIGXCPU or a SIGKILL after its CPU time reached RLIMIT_CPU (cpu_time), SIGXFSZ or Python's
 * EFBIG error with a file-size limit set (file_size). A run that exited 0 had no limit end it.
 */
export function limitExceededOf(facts: ExitFacts, before: CgroupCounters | null, after: CgroupCounters | null, limits: SessionLimits | null): LimitExceeded | undefined {
  if (facts.exitCode === 0 && facts.signal === null && !facts.timedOut) return undefined;
  const sig = facts.signal !== null ? (SIG as Record<string, number>)[facts.signal] ?? -1 : facts.exitCode > 128 && facts.exitCode < 160 ? facts.exitCode - 128 : -1;
  const memLimit = limits?.memoryBytes ?? facts.rlimits.memoryBytes ?? 0;
  if (before && after && after.oomKills > before.oomKills && !facts.cancelled) {
    return { limit: 'memory', message: `memory limit of ${formatBytes(memLimit)} per session exceeded (the kernel killed the program)` };
  }
  if (before && after && after.pidsMaxHits > before.pidsMaxHits && !facts.cancelled) {
    return { limit: 'processes', message: `process limit of ${limits?.maxProcesses ?? '?'} per session reached (the program could not start more processes)` };
  }
  const cpu = facts.rlimits.cpuSeconds;
  if (cpu !== undefined && cpu > 0 && !facts.cancelled) {
    const used = before?.cpuUsageNs != null && after?.cpuUsageNs != null ? (after.cpuUsageNs - before.cpuUsageNs) / 1e9 : null;
    if (sig === SIG.SIGXCPU || (sig === SIG.SIGKILL && !facts.timedOut && (used !== null ? used >= cpu * 0.95 : facts.durationMs >= cpu * 1000))) {
      return { limit: 'cpu_time', message: `CPU time limit of ${cpu} s per task exceeded (the program was killed)` };
    }
  }
  const fsize = facts.rlimits.maxFileBytes;
  if (fsize !== undefined && fsize > 0 && (sig === SIG.SIGXFSZ || /\[Errno 27\] File too large/.test(facts.stderr))) {
    return { limit: 'file_size', message: `file size limit of ${formatBytes(fsize)} exceeded` };
  }
  return undefined;
}

/** Counters after a run (null without a cgroup). */
export const countersAfter = (sessionId: string): CgroupCounters | null => sessionCounters(sessionId);

/** A seccomp fd for one bwrap (null without a filter); `closeFd` after spawn. */
export const seccompFd = (): number | null => openSeccompFd();
export const closeFd = (fd: number | null): void => {
  if (fd === null) return;
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
};
