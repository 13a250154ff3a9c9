import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { CodegenError } from '../domain/errors.js';
import {
  closeFd,
  countersAfter,
  limitExceededOf,
  mergeRlimits,
  prepareSessionLaunch,
  seccompFd,
  type LimitExceeded,
  type SessionLaunch,
  type SessionLimits,
} from './enforcement.js';
import { isExecutable } from './mounts.js';
import { bwrapArgs, probeBwrap, type Isolation, type SandboxView } from './isolation.js';
import { killGroup, killPids, killProcessTree } from './kill-group.js';
import { hasLimits, limitPrefix, type ResourceLimits } from './limits.js';
import { countKills } from './kill-counts.js';
import { OutputCollector } from './output.js';

/**
 * The one place that starts processes for user work (Python programs, pip, venv
 * creation). Every program runs detached in its own process group, with exactly
 * the environment it is given, and is killed as a whole on timeout or cancel.
 */

export type { Isolation } from './isolation.js';

export interface LaunchSpec {
  command: string;
  args: string[];
  cwd: string;
  /** The COMPLETE environment: nothing of process.env leaks in. */
  env: Record<string, string>;
  /** 0 = none. */
  timeoutMs: number;
  /** Per stream kept in memory (0 = no cap); beyond it the text is cut and a marker line says how many bytes were dropped. */
  maxOutputBytes: number;
  /** Abort = cancel: kill the whole group. */
  signal?: AbortSignal;
  stdin?: string;
  /** Called per line while running (streamed). */
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
  sandbox?: {
    workspace: string;
    hide: string[];
    /** Extra host paths made visible read-only inside bwrap (added after `hide`). */
    readOnly?: string[];
    allowNetwork: boolean;
    /** RLIMIT_AS of the program, per task (constraints.max_memory_bytes); the session's memory limit is `limits.memoryBytes`. */
    memoryBytes?: number;
    maxProcesses?: number;
    maxFileBytes?: number;
    cpuSeconds?: number;
    /**
     * The session this program belongs to: it runs in the session's cgroup (made on first use,
     * removed by releaseSessionLimits) with the session's limits, defaults filled in
     * (DEFAULT_SESSION_LIMITS). Without it (venv creation, tools of no session) no session limit applies.
     */
    sessionId?: string;
    limits?: Partial<SessionLimits>;
  };
}

export interface LaunchResult {
  exitCode: number;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  cancelled: boolean;
  truncated: boolean;
  durationMs: number;
  /** Set when a limit ended the program (memory, processes, CPU time, file size), naming it and its value. */
  limitExceeded?: LimitExceeded;
}

/** Time between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 1000;
/** After the program exited, how long to wait for its pipes to close (a setsid()'d grandchild may hold them). */
export const CLOSE_GRACE_MS = 2000;

let isolation: Isolation | undefined;
let probe: ReturnType<typeof probeBwrap> | undefined;

/** What launch() uses for specs with `sandbox`. Until set, the first sandboxed launch detects it ('auto'). */
export function setIsolation(iso: Isolation): void {
  isolation = iso;
}

/** The isolation in force (undefined until set or detected). */
export function currentIsolation(): Isolation | undefined {
  return isolation;
}

/**
 * Probe bwrap once (cached) and say which isolation `mode` gives:
 * 'none' → 'process'; 'auto' → 'bwrap' when it works, else 'process';
 * 'bwrap' → 'bwrap', or a clear Error when it does not work here.
 */
export async function detectIsolation(mode: 'auto' | 'bwrap' | 'none'): Promise<Isolation> {
  if (mode === 'none') return 'process';
  probe ??= probeBwrap();
  const result = await probe;
  if (result.ok) return 'bwrap';
  if (mode === 'bwrap') {
    throw new Error(
      `isolation 'bwrap' was requested but bwrap does not work here: ${result.reason}. ` +
        'Install the bubblewrap package; in a container run with seccomp=unconfined, apparmor=unconfined and SYS_ADMIN, ' +
        "or choose isolation 'auto' or 'none'.",
    );
  }
  return 'process';
}

/** The absolute path of `command`: relative to cwd when it has a slash, else looked up on the spec's PATH. */
function resolveCommand(command: string, cwd: string, envPath: string | undefined): string | null {
  if (command.includes('/')) {
    const abs = path.resolve(cwd, command);
    return isExecutable(abs) ? abs : null;
  }
  for (const dir of (envPath ?? '').split(':')) {
    if (!dir) continue;
    const candidate = path.resolve(cwd, dir, command);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

export const signalNumber = (name: string): number => (os.constants.signals as Record<string, number | undefined>)[name] ?? 0;
export const signalName = (n: number): string | null => Object.entries(os.constants.signals).find(([, v]) => v === n)?.[0] ?? null;

/** The result of a program cancelled before it started. */
export function cancelledBeforeStart(): LaunchResult {
  return { exitCode: -1, signal: null, stdout: '', stderr: '', timedOut: false, cancelled: true, truncated: false, durationMs: 0 };
}

/** The isolation sandboxed launches use: the one set, else detected now ('auto') and kept. */
export async function isolationInForce(): Promise<Isolation> {
  return isolation ?? (isolation = await detectIsolation('auto'));
}

export interface SandboxPrefixOptions {
  /** The command the sandbox runs (a command outside every mounted folder brings its installation folder). */
  command?: string;
  /** The fd number the child gets the seccomp program on (default 3); the caller places `seccomp` there. */
  seccompChildFd?: number;
}

/**
 * The isolation in force (detected on first use) and the argv prefix that confines a command to
 * `view` with working directory `cwd`: `[bwrap ... --]`, or nothing with 'process' isolation.
 * With bwrap and a seccomp filter, `seccomp` is a freshly opened fd of the filter: the caller
 * places it at index `seccompChildFd` of spawn's stdio array and closes it after spawn (closeFd).
 */
export async function sandboxPrefix(view: SandboxView, cwd: string, opts: SandboxPrefixOptions = {}): Promise<{ isolation: Isolation; prefix: string[]; seccomp: number | null }> {
  const iso = await isolationInForce();
  if (iso !== 'bwrap') return { isolation: iso, prefix: [], seccomp: null };
  const result = await (probe ??= probeBwrap());
  if (!result.ok || result.path === null) throw new CodegenError('INTERNAL', `bwrap isolation is set but bwrap does not work: ${result.reason}`);
  const seccomp = seccompFd();
  const childFd = opts.seccompChildFd ?? 3;
  return {
    isolation: iso,
    prefix: [result.path, ...bwrapArgs(view, cwd, { command: opts.command, ...(seccomp !== null ? { seccompFd: childFd } : {}) })],
    seccomp,
  };
}

/** The session part of a sandboxed launch: its cgroup and limits (null without a session). */
export function sessionLaunchOf(box: { sessionId?: string; limits?: Partial<SessionLimits> } | undefined): SessionLaunch | null {
  if (!box?.sessionId) return null;
  try {
    return prepareSessionLaunch(box.sessionId, box.limits);
  } catch (err) {
    throw new CodegenError('INTERNAL', `cannot apply the session's limits: ${(err as Error).message}`, { cause: err });
  }
}

interface Built {
  argv: string[];
  seccomp: number | null;
  session: SessionLaunch | null;
  rlimits: ResourceLimits;
}

/** Build the argv: [cgroup join] [bwrap ... --] [prlimit ... --] command args. */
async function buildArgv(spec: LaunchSpec, command: string): Promise<Built> {
  const argv: string[] = [];
  const box = spec.sandbox;
  let seccomp: number | null = null;
  let session: SessionLaunch | null = null;
  let rlimits: ResourceLimits = {};
  if (box) {
    session = sessionLaunchOf(box);
    if (session) argv.push(...session.prefix);
    const sandbox = await sandboxPrefix(box, spec.cwd, { command });
    seccomp = sandbox.seccomp;
    argv.push(...sandbox.prefix);
    rlimits = mergeRlimits({ memoryBytes: box.memoryBytes, maxProcesses: box.maxProcesses, maxFileBytes: box.maxFileBytes, cpuSeconds: box.cpuSeconds }, session?.rlimits ?? {});
    if (hasLimits(rlimits)) {
      try {
        argv.push(...limitPrefix(rlimits));
      } catch (err) {
        closeFd(seccomp);
        throw new CodegenError('INTERNAL', (err as Error).message, { cause: err });
      }
    }
  }
  argv.push(command, ...spec.args);
  return { argv, seccomp, session, rlimits };
}

/**
 * Run a program to its end. Never throws for a program that fails (non-zero
 * exit, killed, timed out, cancelled); rejects with CodegenError('INTERNAL')
 * only when the command cannot start at all.
 */
export async function launch(spec: LaunchSpec): Promise<LaunchResult> {
  for (const [key, value] of Object.entries(spec.env)) {
    if (key.includes('=') || key.includes('\0') || value.includes('\0')) {
      throw new CodegenError('INTERNAL', `cannot start ${spec.command}: bad environment variable ${JSON.stringify(key)}`);
    }
  }
  const command = resolveCommand(spec.command, spec.cwd, spec.env.PATH);
  if (command === null) {
    throw new CodegenError('INTERNAL', `cannot start ${spec.command}: no such executable (ENOENT)`);
  }
  if (spec.signal?.aborted) return cancelledBeforeStart();
  const built = await buildArgv(spec, command);
  const { argv } = built;
  if (spec.signal?.aborted) {
    closeFd(built.seccomp);
    return cancelledBeforeStart();
  }

  return new Promise<LaunchResult>((resolve, reject) => {
    const started = performance.now();
    const stdout = new OutputCollector(spec.maxOutputBytes, spec.onLine ? (line) => spec.onLine!('stdout', line) : undefined);
    const stderr = new OutputCollector(spec.maxOutputBytes, spec.onLine ? (line) => spec.onLine!('stderr', line) : undefined);

    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), {
        cwd: spec.cwd,
        env: spec.env,
        detached: true,
        stdio: [spec.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe', ...(built.seccomp !== null ? [built.seccomp] : [])],
      });
    } catch (err) {
      closeFd(built.seccomp);
      reject(new CodegenError('INTERNAL', `cannot start ${spec.command}: ${(err as Error).message}`, { cause: err }));
      return;
    }

    closeFd(built.seccomp); // the child has its own copy

    let timedOut = false;
    let cancelled = false;
    let terminating = false;
    let exited = false;
    let settled = false;
    let exitCode: number | null = null;
    let exitSignal: NodeJS.Signals | null = null;
    let knownPids: number[] = [];
    let killTimer: NodeJS.Timeout | undefined;
    let closeTimer: NodeJS.Timeout | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;

    const pid = child.pid;

    const terminate = (reason: 'timeout' | 'cancel'): void => {
      if (terminating || exited || pid === undefined) return;
      terminating = true; // the first reason wins
      if (reason === 'timeout') timedOut = true;
      else cancelled = true;
      knownPids = killProcessTree(pid, 'SIGTERM');
      killTimer = setTimeout(() => {
        knownPids = killProcessTree(pid, 'SIGKILL', knownPids);
      }, KILL_GRACE_MS);
    };

    const onAbort = (): void => terminate('cancel');

    const cleanup = (): void => {
      clearTimeout(timeoutTimer);
      clearTimeout(closeTimer);
      spec.signal?.removeEventListener('abort', onAbort);
    };

    const finish = (): void => {
      if (settled) return;
      settled = true;
      cleanup();
      // Whatever is left goes now (processes that ignored SIGTERM, background children). The leader
      // is reaped by now, so no new /proc walk from its pid: only the group and the pids found before.
      if (pid !== undefined) {
        killGroup(pid, 'SIGKILL');
        killPids(knownPids, 'SIGKILL');
        clearTimeout(killTimer);
      }
      stdout.end();
      stderr.end();
      const signalName = exitSignal;
      const result: LaunchResult = {
        exitCode: exitCode ?? (signalName ? 128 + signalNumber(signalName) : -1),
        signal: signalName,
        stdout: stdout.text(),
        stderr: stderr.text(),
        timedOut,
        cancelled,
        truncated: stdout.truncated || stderr.truncated,
        durationMs: Math.round(performance.now() - started),
      };
      const session = built.session;
      const exceeded = spec.sandbox
        ? limitExceededOf({ ...result, rlimits: built.rlimits }, session?.before ?? null, session ? countersAfter(spec.sandbox.sessionId!) : null, session?.limits ?? null)
        : undefined;
      if (exceeded) result.limitExceeded = exceeded;
      countKills(result);
      resolve(result);
    };

    child.on('error', (err: NodeJS.ErrnoException) => {
      if (pid === undefined && !settled) {
        settled = true;
        cleanup();
        reject(new CodegenError('INTERNAL', `cannot start ${spec.command}: ${err.code ?? err.message}`, { cause: err }));
      }
      // Errors after a successful spawn (a failed kill, EPIPE on stdin) change nothing: 'exit' still comes.
    });

    if (pid === undefined) return; // 'error' follows

    child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
    if (child.stdin) {
      child.stdin.on('error', () => {
        // the program closed its stdin early: not our failure
      });
      child.stdin.end(spec.stdin ?? '');
    }

    child.on('exit', (code, signal) => {
      exited = true;
      exitCode = code;
      exitSignal = signal;
      // Background children of a finished program would hold its pipes open: end the group now.
      killGroup(pid, 'SIGKILL');
      closeTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish();
      }, CLOSE_GRACE_MS);
    });
    child.on('close', () => finish());

    if (spec.timeoutMs > 0) timeoutTimer = setTimeout(() => terminate('timeout'), spec.timeoutMs);
    if (spec.signal) {
      if (spec.signal.aborted) terminate('cancel');
      else spec.signal.addEventListener('abort', onAbort, { once: true });
    }
  });
}
