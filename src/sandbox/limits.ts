import { accessSync, constants } from 'node:fs';

/**
 * Resource limits applied with util-linux `prlimit`, which sets the limits on
 * itself and then execs the program, so they are inherited by everything the
 * program starts.
 *
 * Caveat: the kernel never enforces RLIMIT_NPROC for root (uid 0 in the initial
 * user namespace, which is what bwrap maps root to). When the worker runs as
 * root, `maxProcesses` is therefore advisory; the PID namespace still bounds the
 * damage and kills everything at the end.
 */
export interface ResourceLimits {
  /** Address space (RLIMIT_AS) in bytes. */
  memoryBytes?: number;
  /** Processes per user (RLIMIT_NPROC). */
  maxProcesses?: number;
  /** Largest file the program may write (RLIMIT_FSIZE), in bytes. */
  maxFileBytes?: number;
  /** CPU time (RLIMIT_CPU) in seconds: SIGXCPU, then SIGKILL one second later. */
  cpuSeconds?: number;
}

const positive = (n: number | undefined): n is number => typeof n === 'number' && Number.isFinite(n) && n > 0;

export function hasLimits(limits: ResourceLimits): boolean {
  return positive(limits.memoryBytes) || positive(limits.maxProcesses) || positive(limits.maxFileBytes) || positive(limits.cpuSeconds);
}

/** `prlimit` options for the given limits (empty when none is set). */
export function prlimitOptions(limits: ResourceLimits): string[] {
  const opts: string[] = [];
  if (positive(limits.memoryBytes)) opts.push(`--as=${Math.floor(limits.memoryBytes)}`);
  if (positive(limits.maxProcesses)) opts.push(`--nproc=${Math.floor(limits.maxProcesses)}`);
  if (positive(limits.maxFileBytes)) opts.push(`--fsize=${Math.floor(limits.maxFileBytes)}`);
  if (positive(limits.cpuSeconds)) {
    const soft = Math.ceil(limits.cpuSeconds);
    opts.push(`--cpu=${soft}:${soft + 1}`);
  }
  return opts;
}

const prlimitCandidates = ['/usr/bin/prlimit', '/bin/prlimit', '/usr/local/bin/prlimit'];
let prlimitPath: string | null | undefined;

/** Absolute path of `prlimit`, or null when util-linux's prlimit is not installed. */
export function findPrlimit(): string | null {
  if (prlimitPath !== undefined) return prlimitPath;
  prlimitPath = null;
  for (const candidate of prlimitCandidates) {
    try {
      accessSync(candidate, constants.X_OK);
      prlimitPath = candidate;
      break;
    } catch {
      // try the next one
    }
  }
  return prlimitPath;
}

/** The argv prefix that applies `limits` to the command that follows it. */
export function limitPrefix(limits: ResourceLimits): string[] {
  const opts = prlimitOptions(limits);
  if (opts.length === 0) return [];
  const prlimit = findPrlimit();
  if (prlimit === null) {
    throw new Error('resource limits were requested but prlimit (util-linux) is not installed');
  }
  return [prlimit, ...opts, '--'];
}
