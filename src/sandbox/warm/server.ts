import { spawn, type ChildProcess } from 'node:child_process';
import { countKills } from '../kill-counts.js';
import { closeSync, constants as fsConstants, fstatSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { closeFd, countersAfter, limitExceededOf, mergeRlimits, type SessionLaunch, type SessionLimits } from '../enforcement.js';
import type { SandboxView } from '../isolation.js';
import { killChildTree, killProcessTree, waitForExit } from '../kill-group.js';
import { CLOSE_GRACE_MS, KILL_GRACE_MS, cancelledBeforeStart, sandboxPrefix, sessionLaunchOf, signalName, type Isolation, type LaunchResult } from '../launch.js';
import type { ResourceLimits } from '../limits.js';
import { OutputCollector } from '../output.js';
import { jsonLineReader } from '../control-lines.js';

/**
 * One warm interpreter: forkserver.py running with a session's venv python inside one long-lived
 * sandbox (the same bwrap view as a task, plus the server's control folder bound read-write at its
 * own path). Each task is a fork of it; see forkserver.py for the protocol on fd 3.
 */

/** What the server is started with; two tasks can share a server when these are equal. */
export interface WarmServerSpec {
  /** The session's interpreter (<workspace>/.venv/bin/python). */
  python: string;
  workspace: string;
  /** The sandbox view (limits are per task). */
  view: SandboxView;
  /** The scrubbed environment the interpreter starts with (a task's own environment replaces it after the fork). */
  env: Record<string, string>;
  /** The session: the server (and so every task forked from it) runs in the session's cgroup, with its limits (defaults filled in). */
  sessionId?: string;
  limits?: Partial<SessionLimits>;
}

export interface WarmTask {
  /** ['-', ...args] for code, [absolute path, ...args] for a file. */
  argv: string[];
  code?: string;
  /** The complete environment (as the cold path would give it). */
  env: Record<string, string>;
  cwd: string;
  limits: ResourceLimits;
  timeoutMs: number;
  maxOutputBytes: number;
  signal?: AbortSignal;
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
}

/** How long a server may take to say it is ready. */
const START_TIMEOUT_MS = 15_000;
/** After SIGKILL was asked for, how long the server may take to report the task's end before it is killed itself. */
const UNRESPONSIVE_MS = 3_000;

/** Bytes of argv area a task's command line (/proc/<pid>/cmdline) may use; longer ones are cut. */
const CMDLINE_ROOM = 4096;

/**
 * `python -c` code that reads a program's source from fd 3, up to a NUL byte, and runs it as
 * `name` (the warm fork server, the stateful interpreter): the source never touches the disk the
 * sandbox shows, and fd 3 stays open as the control channel.
 */
export const bootstrapCode = (name: string): string =>
  [
    'import os',
    "s = b''",
    "while s[-1:] != b'\\0':",
    '    c = os.read(3, 65536)',
    '    if not c: raise SystemExit(70)',
    '    s += c',
    `exec(compile(s[:-1], '<${name}>', 'exec'))`,
  ].join('\n');

const BOOTSTRAP = bootstrapCode('codegen-forkserver');

let source: string | undefined;

/** forkserver.py, next to this module (src/ under vitest; dist/ after `npm run build`, which copies it). */
export function forkServerSource(): string {
  source ??= readFileSync(fileURLToPath(new URL('./forkserver.py', import.meta.url)), 'utf8');
  return source;
}

type ServerEvent =
  | { ev: 'ready'; pid: number; next: number; subreaper: boolean; pidns: boolean }
  | { ev: 'started'; id: number; pid: number }
  | { ev: 'exit'; id: number; code?: number; signal?: number; next: number }
  | { ev: 'error'; id: number; message: string; next: number }
  | { ev: 'stale'; id: number };

interface Running {
  id: number;
  onEvent(e: ServerEvent): void;
  onDeath(): void;
}

export class WarmServer {
  private child: ChildProcess | undefined;
  private ctl: net.Socket | undefined;
  private state: 'new' | 'starting' | 'ready' | 'busy' | 'dead' = 'new';
  private nextId: number | undefined;
  private current: Running | undefined;
  private readonly exited: Promise<void>;
  private markExited!: () => void;
  private stderrTail = '';
  private isolation: Isolation | undefined;
  private session: SessionLaunch | null = null;
  /** The server's pid as the worker sees it (bwrap's, under bwrap). */
  pid: number | undefined;
  /** Why the server ended, when it did. */
  endReason: string | undefined;

  constructor(
    readonly spec: WarmServerSpec,
    /** A folder of its own for this server (FIFOs); created here, removed on stop. */
    readonly controlDir: string,
    private readonly onEnd?: (server: WarmServer, reason: string) => void,
  ) {
    this.exited = new Promise((resolve) => (this.markExited = resolve));
  }

  get alive(): boolean {
    return this.state === 'ready' || this.state === 'busy' || this.state === 'starting';
  }

  get idle(): boolean {
    return this.state === 'ready' && this.current === undefined;
  }

  /** Start the server and wait until it is ready; rejects (and cleans up) when it cannot start. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('a warm server starts once');
    this.state = 'starting';
    try {
      rmSync(this.controlDir, { recursive: true, force: true });
      mkdirSync(this.controlDir, { recursive: true, mode: 0o700 });
      const view: SandboxView = { ...this.spec.view, readWrite: [...(this.spec.view.readWrite ?? []), this.controlDir] };
      this.session = sessionLaunchOf(this.spec);
      // fd 3 is the control channel: the seccomp program goes on fd 4.
      const { isolation, prefix, seccomp } = await sandboxPrefix(view, this.spec.workspace, { seccompChildFd: 4 });
      this.isolation = isolation;
      // The last argument only makes room: each task writes its own command line over this argv area.
      const argv = [...(this.session?.prefix ?? []), ...prefix, this.spec.python, '-u', '-c', BOOTSTRAP, this.controlDir, isolation === 'bwrap' ? 'pidns' : 'process', ' '.repeat(CMDLINE_ROOM)];
      const text = forkServerSource();
      if (this.state !== 'starting') {
        closeFd(seccomp);
        throw new Error(this.endReason ?? 'stopped');
      }
      await new Promise<void>((resolve, reject) => {
        let child: ChildProcess;
        try {
          child = spawn(argv[0]!, argv.slice(1), {
            cwd: this.spec.workspace,
            env: this.spec.env,
            detached: true,
            stdio: ['ignore', 'ignore', 'pipe', 'pipe', ...(seccomp !== null ? [seccomp] : [])],
          });
        } finally {
          closeFd(seccomp); // the child has its own copy
        }
        this.child = child;
        this.pid = child.pid;
        const timer = setTimeout(() => fail(new Error(`not ready within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
        const fail = (err: Error): void => {
          clearTimeout(timer);
          reject(err);
        };
        child.on('error', (err) => {
          if (this.pid === undefined) this.markExited();
          fail(err);
        });
        child.on('exit', (code, signal) => {
          const reason = `the fork server exited (${code ?? signal})${this.stderrTail ? `: ${this.stderrTail.trim().slice(-500)}` : ''}`;
          this.died(reason);
          fail(new Error(reason));
        });
        child.stderr!.on('data', (chunk: Buffer) => {
          this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-4096);
        });
        if (child.pid === undefined) return;
        const ctl = child.stdio[3] as net.Socket;
        this.ctl = ctl;
        ctl.on('error', () => {
          // the server died: 'exit' tells
        });
        ctl.on(
          'data',
          jsonLineReader(
            (value) => {
              const event = value as unknown as ServerEvent;
              if (event.ev === 'ready') {
                clearTimeout(timer);
                if (!event.pidns && !event.subreaper) {
                  this.kill('the fork server can neither use a PID namespace nor become a subreaper');
                  reject(new Error(this.endReason));
                  return;
                }
                this.nextId = event.next;
                if (this.state === 'starting') this.state = 'ready';
                resolve();
              } else this.current?.onEvent(event);
            },
            () => this.kill('the fork server sent a bad line'),
          ),
        );
        ctl.write(`${text}\0`);
      });
    } catch (err) {
      this.kill(`cannot start: ${(err as Error).message}`);
      await this.stop();
      throw err;
    }
  }

  private died(reason: string): void {
    this.state = 'dead';
    this.endReason ??= reason;
    this.pid = undefined;
    this.markExited();
    this.ctl?.destroy();
    const running = this.current;
    this.current = undefined;
    running?.onDeath();
    this.onEnd?.(this, this.endReason);
  }

  /** Kill the server and everything in its sandbox now. */
  kill(reason: string): void {
    this.endReason ??= reason;
    if (this.state !== 'dead') this.state = 'dead';
    this.ctl?.destroy();
    killChildTree(this.child);
    const running = this.current;
    this.current = undefined;
    running?.onDeath();
  }

  /** Stop the server (any task still running ends as killed) and remove its control folder. */
  async stop(): Promise<void> {
    this.kill(this.endReason ?? 'stopped');
    if (this.child?.pid !== undefined) await waitForExit(this.exited);
    rmSync(this.controlDir, { recursive: true, force: true });
  }

  private send(msg: Record<string, unknown>): void {
    try {
      this.ctl?.write(`${JSON.stringify(msg)}\n`);
    } catch {
      // a dead server: 'exit' tells
    }
  }

  /**
   * Run one task. Resolves null when the task did not start (the server is busy, dead, or refused
   * it: the caller may use another server or the cold path), else the result as launch() gives it.
   */
  run(task: WarmTask): Promise<LaunchResult | null> {
    if (task.signal?.aborted) return Promise.resolve(cancelledBeforeStart());
    if (this.state !== 'ready' || this.current !== undefined || this.nextId === undefined) return Promise.resolve(null);
    const id = this.nextId;
    const fds: number[] = [];
    try {
      // The control folder is writable from inside the sandbox and the worker opens these paths on the
      // host: never through a symlink, and only a FIFO (else a task could have the worker read any file).
      for (const stream of ['out', 'err']) {
        const fd = openSync(path.join(this.controlDir, `${id}.${stream}`), fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW);
        fds.push(fd);
        if (!fstatSync(fd).isFIFO()) throw new Error(`${id}.${stream} is not a FIFO`);
      }
    } catch (err) {
      for (const fd of fds) closeSync(fd);
      this.kill(`cannot open the task's FIFOs: ${(err as Error).message}`);
      return Promise.resolve(null);
    }
    this.state = 'busy';
    // The session's CPU time per task (and fallbacks for what no cgroup enforces) with the task's own limits.
    const limits = mergeRlimits(task.limits, this.session?.rlimits ?? {});
    const sessionId = this.spec.sessionId;
    const before = sessionId && this.session ? countersAfter(sessionId) : null;

    return new Promise<LaunchResult | null>((resolve) => {
      const began = performance.now();
      const stdout = new OutputCollector(task.maxOutputBytes, task.onLine ? (line) => task.onLine!('stdout', line) : undefined);
      const stderr = new OutputCollector(task.maxOutputBytes, task.onLine ? (line) => task.onLine!('stderr', line) : undefined);
      const sockets = fds.map((fd) => new net.Socket({ fd, readable: true, writable: false }));
      let open = sockets.length;
      sockets.forEach((socket, i) => {
        const collector = i === 0 ? stdout : stderr;
        socket.on('data', (chunk: Buffer) => collector.push(chunk));
        socket.on('error', () => {
          // 'close' follows
        });
        socket.on('close', () => {
          open -= 1;
          maybeFinish();
        });
      });

      let started = false;
      let childPid: number | undefined;
      let exited = false;
      let exitCode = -1;
      let exitSignal: string | null = null;
      let timedOut = false;
      let cancelled = false;
      let terminating = false;
      let settled = false;
      let killTimer: NodeJS.Timeout | undefined;
      let hardTimer: NodeJS.Timeout | undefined;
      let closeTimer: NodeJS.Timeout | undefined;
      let timeoutTimer: NodeJS.Timeout | undefined;

      const clearTimers = (): void => {
        clearTimeout(killTimer);
        clearTimeout(hardTimer);
        clearTimeout(closeTimer);
        clearTimeout(timeoutTimer);
        task.signal?.removeEventListener('abort', onAbort);
      };

      const settle = (value: LaunchResult | null): void => {
        if (settled) return;
        settled = true;
        clearTimers();
        if (this.current === running) this.current = undefined;
        if (this.state === 'busy') this.state = 'ready';
        resolve(value);
      };

      const notStarted = (): void => {
        for (const s of sockets) s.destroy();
        settle(null);
      };

      const finish = (): void => {
        if (settled) return;
        for (const s of sockets) s.destroy();
        stdout.end();
        stderr.end();
        const result: LaunchResult = {
          exitCode,
          signal: exitSignal,
          stdout: stdout.text(),
          stderr: stderr.text(),
          timedOut,
          cancelled,
          truncated: stdout.truncated || stderr.truncated,
          durationMs: Math.round(performance.now() - began),
        };
        const after = sessionId && this.session ? countersAfter(sessionId) : null;
        const exceeded = limitExceededOf({ ...result, rlimits: limits }, before, after, this.session?.limits ?? null);
        if (exceeded) result.limitExceeded = exceeded;
        countKills(result);
        settle(result);
      };

      function maybeFinish(): void {
        if (exited && open === 0) finish();
      }

      const ended = (): void => {
        exited = true;
        clearTimeout(killTimer);
        clearTimeout(hardTimer);
        // Every process of the task is gone, so the FIFOs end at once; this only bounds a stuck reader.
        closeTimer = setTimeout(finish, CLOSE_GRACE_MS);
        maybeFinish();
      };

      const terminate = (reason: 'timeout' | 'cancel'): void => {
        if (terminating || exited || settled) return;
        terminating = true; // the first reason wins
        if (reason === 'timeout') timedOut = true;
        else cancelled = true;
        this.send({ op: 'signal', id, sig: os.constants.signals.SIGTERM });
        killTimer = setTimeout(() => {
          this.send({ op: 'signal', id, sig: os.constants.signals.SIGKILL });
          hardTimer = setTimeout(() => this.kill('the fork server did not end a killed task'), UNRESPONSIVE_MS);
        }, KILL_GRACE_MS);
      };
      const onAbort = (): void => terminate('cancel');

      const running: Running = {
        id,
        onEvent: (e) => {
          if (!('id' in e) || e.id !== id) return;
          switch (e.ev) {
            case 'started':
              started = true;
              childPid = e.pid;
              break;
            case 'exit':
              this.nextId = e.next;
              if (e.signal !== undefined) {
                exitCode = 128 + e.signal;
                exitSignal = signalName(e.signal);
              } else exitCode = e.code ?? -1;
              ended();
              break;
            case 'error':
              this.nextId = e.next;
              notStarted();
              break;
            case 'stale':
              // The server exits on its own; the caller starts a fresh one.
              this.kill('site-packages .pth files changed');
              break;
          }
        },
        onDeath: () => {
          if (!started) {
            notStarted();
            return;
          }
          if (exited) return;
          // Like a killed process. Under bwrap the PID namespace died with the server; without it,
          // the task (in a session of its own) and what it started are killed from here.
          if (this.isolation !== 'bwrap' && childPid !== undefined) killProcessTree(childPid, 'SIGKILL');
          exitCode = 128 + os.constants.signals.SIGKILL;
          exitSignal = 'SIGKILL';
          ended();
        },
      };
      this.current = running;

      const message: Record<string, unknown> = {
        op: 'run',
        id,
        argv: task.argv,
        env: task.env,
        cwd: task.cwd,
        limits: {
          as: limits.memoryBytes,
          nproc: limits.maxProcesses,
          fsize: limits.maxFileBytes,
          cpu: limits.cpuSeconds !== undefined ? Math.ceil(limits.cpuSeconds) : undefined,
        },
      };
      if (task.code !== undefined) message.code = task.code;
      this.send(message);

      if (task.timeoutMs > 0) timeoutTimer = setTimeout(() => terminate('timeout'), task.timeoutMs);
      if (task.signal) {
        if (task.signal.aborted) terminate('cancel');
        else task.signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }
}
