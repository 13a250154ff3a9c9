import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { closeFd, countersAfter, limitExceededOf, mergeRlimits, type LimitExceeded, type SessionLaunch, type SessionLimits } from '../enforcement.js';
import type { SandboxView } from '../isolation.js';
import { killChildTree, waitForExit } from '../kill-group.js';
import { countKills } from '../kill-counts.js';
import { CLOSE_GRACE_MS, sandboxPrefix, sessionLaunchOf, signalName } from '../launch.js';
import type { ResourceLimits } from '../limits.js';
import { OutputCollector } from '../output.js';
import { jsonLineReader } from '../control-lines.js';
import { bootstrapCode } from '../warm/server.js';

/**
 * One stateful interpreter: kernel.py running with a session's venv python inside one long-lived
 * sandbox, in the session's cgroup (its memory counts against the session's limit). Calls run one
 * at a time in the same namespace; see kernel.py for the protocol on fd 3.
 */

export interface InterpreterSpec {
  /** The session's interpreter (<workspace>/.venv/bin/python). */
  python: string;
  workspace: string;
  view: SandboxView;
  /** The complete environment of the interpreter (the session's). */
  env: Record<string, string>;
  /** Per-process limits (RLIMIT_AS, processes, file size); CPU time is per call, so none applies here. */
  rlimits: ResourceLimits;
  sessionId?: string;
  limits?: Partial<SessionLimits>;
}

export interface ExecRequest {
  code: string;
  timeoutMs: number;
  maxOutputBytes: number;
  signal?: AbortSignal;
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
}

export interface ExecReply {
  result: string;
  outputs: Array<{ mime_type: string; data: Buffer }>;
  errorName: string;
  errorValue: string;
  traceback: string;
  executionCount: number;
}

export interface ExecOutcome {
  stdout: string;
  stderr: string;
  truncated: boolean;
  durationMs: number;
  /** null when the interpreter ended before it answered. */
  reply: ExecReply | null;
  timedOut: boolean;
  cancelled: boolean;
  /** Set when the interpreter ended during the call (a crash, a limit, or killed when an interrupt did not stop the code): why. */
  died?: string;
  limitExceeded?: LimitExceeded;
}

/** How long the interpreter may take to say it is ready. */
const START_TIMEOUT_MS = 15_000;
/** After a timeout or cancel interrupted the code, how long it has to stop before the interpreter is killed. */
export const INTERRUPT_GRACE_MS = 2_000;
/**
 * A control line longer than this means a broken interpreter. A reply's parts are bounded in
 * kernel.py (rich outputs 8 MiB before base64, the result and error texts 1 MiB each).
 */
const MAX_CONTROL_LINE = 24 * 1024 * 1024;

let source: string | undefined;
function kernelSource(): string {
  source ??= readFileSync(fileURLToPath(new URL('./kernel.py', import.meta.url)), 'utf8');
  return source;
}

interface KernelEvent {
  ev: 'ready' | 'done';
  id?: number;
  subreaper?: unknown;
  result?: unknown;
  outputs?: unknown;
  error_name?: unknown;
  error_value?: unknown;
  traceback?: unknown;
  execution_count?: unknown;
}

/**
 * Splits one output stream at a call's end mark: what comes before it is the call's, what comes
 * after it (a thread still printing) belongs to no call and is dropped. Bytes that could be the
 * start of the mark are held back until the next chunk says. A call ended without its mark (its
 * reply came, its mark lagged) leaves that mark stale: the output up to it is dropped when it
 * arrives, never given to the next call. The kernel writes a call's marks before its reply, so a
 * stale mark always arrives.
 */
class MarkSplitter {
  private held = Buffer.alloc(0);
  private mark: Buffer | null = null;
  private sink: ((chunk: Buffer) => void) | null = null;
  private onMark: (() => void) | null = null;
  private readonly stale: Buffer[] = [];

  /** Route what arrives to `sink` until `mark`; then call onMark. */
  expect(mark: Buffer, sink: (chunk: Buffer) => void, onMark: () => void): void {
    this.mark = mark;
    this.sink = sink;
    this.onMark = onMark;
  }

  push(chunk: Buffer): void {
    let buf = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk;
    this.held = Buffer.alloc(0);
    while (this.stale.length > 0) {
      const at = buf.indexOf(this.stale[0]!);
      if (at === -1) {
        this.held = Buffer.from(buf.subarray(buf.length - partialMark(buf, this.stale[0]!)));
        return;
      }
      buf = buf.subarray(at + this.stale[0]!.length);
      this.stale.shift();
    }
    if (!this.mark || !this.sink) return;
    const at = buf.indexOf(this.mark);
    if (at !== -1) {
      if (at > 0) this.sink(buf.subarray(0, at));
      const done = this.onMark;
      this.mark = null;
      this.sink = null;
      this.onMark = null;
      done?.();
      return;
    }
    const keep = partialMark(buf, this.mark);
    if (buf.length - keep > 0) this.sink(buf.subarray(0, buf.length - keep));
    this.held = Buffer.from(buf.subarray(buf.length - keep));
  }

  /**
   * The call ended without its mark: what was held back is the call's. `coming`: the mark is on
   * its way (the reply came), so it is skipped when it arrives.
   */
  flush(coming: boolean): void {
    if (coming && this.mark && this.stale.length < 8) {
      // What is held back may be the mark's first bytes: it stays, to be matched when the rest comes.
      this.stale.push(this.mark);
    } else {
      if (this.sink && this.held.length > 0) this.sink(this.held);
      this.held = Buffer.alloc(0);
    }
    this.mark = null;
    this.sink = null;
    this.onMark = null;
  }
}

/** The longest tail of buf that is a start of mark. */
function partialMark(buf: Buffer, mark: Buffer): number {
  for (let k = Math.min(mark.length - 1, buf.length); k > 0; k--) {
    if (buf.subarray(buf.length - k).equals(mark.subarray(0, k))) return k;
  }
  return 0;
}

export class InterpreterProcess {
  private child: ChildProcess | undefined;
  private ctl: Writable | undefined;
  private state: 'new' | 'starting' | 'ready' | 'busy' | 'dead' = 'new';
  private session: SessionLaunch | null = null;
  private nextId = 1;
  /** Unguessable by the code (its output cannot end a call early), made once: each call's mark adds its id. */
  private readonly markPrefix = randomBytes(12).toString('hex');
  private readonly streams = { stdout: new MarkSplitter(), stderr: new MarkSplitter() };
  private onReply: ((e: KernelEvent) => void) | null = null;
  private onDeath: (() => void) | null = null;
  private readonly exited: Promise<void>;
  private markExited!: () => void;
  /** The interpreter's pid as the worker sees it (bwrap's, under bwrap). */
  pid: number | undefined;
  /** Why the interpreter ended, once it did. */
  endReason: string | undefined;
  /** It got as far as ready (a process that never did had no state to lose). */
  readyOnce = false;

  constructor(
    readonly spec: InterpreterSpec,
    /** Told once when the interpreter has ended; duringCall: a call was running (its outcome says so). */
    private readonly onEnd?: (reason: string, duringCall: boolean) => void,
  ) {
    this.exited = new Promise((resolve) => (this.markExited = resolve));
  }

  get alive(): boolean {
    return this.state === 'ready' || this.state === 'busy';
  }

  get busy(): boolean {
    return this.state === 'busy';
  }

  /** Start the interpreter and wait until it is ready; rejects (and cleans up) when it cannot start. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('an interpreter starts once');
    this.state = 'starting';
    try {
      this.session = sessionLaunchOf(this.spec);
      // CPU time is a per-call budget (the timeout covers a runaway call): none on a process that lives for many calls.
      const { cpuSeconds: _perCall, ...sessionRlimits } = this.session?.rlimits ?? {};
      const limits = mergeRlimits(this.spec.rlimits, sessionRlimits);
      const { prefix, seccomp } = await sandboxPrefix(this.spec.view, this.spec.workspace, { seccompChildFd: 4 });
      if (this.endReason !== undefined) {
        // Killed (its session released) while the sandbox was prepared: never spawn.
        closeFd(seccomp);
        throw new Error(this.endReason);
      }
      const argv = [
        ...(this.session?.prefix ?? []),
        ...prefix,
        this.spec.python,
        '-u',
        '-c',
        bootstrapCode('codegen-interpreter'),
        JSON.stringify({ as: limits.memoryBytes, nproc: limits.maxProcesses, fsize: limits.maxFileBytes }),
      ];
      await new Promise<void>((resolve, reject) => {
        let child: ChildProcess;
        try {
          child = spawn(argv[0]!, argv.slice(1), {
            cwd: this.spec.workspace,
            env: this.spec.env,
            detached: true,
            stdio: ['ignore', 'pipe', 'pipe', 'pipe', ...(seccomp !== null ? [seccomp] : [])],
          });
        } finally {
          closeFd(seccomp);
        }
        this.child = child;
        this.pid = child.pid;
        let stderrTail = '';
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
          const reason = `the interpreter ${exitWords(code, signal)}`;
          this.died(reason);
          fail(new Error(`${reason}${stderrTail ? `: ${stderrTail.trim().slice(-500)}` : ''}`));
        });
        if (child.pid === undefined) return;
        (child.stdout as Readable).on('data', (chunk: Buffer) => this.streams.stdout.push(chunk));
        (child.stderr as Readable).on('data', (chunk: Buffer) => {
          if (this.state === 'starting') stderrTail = (stderrTail + chunk.toString('utf8')).slice(-4096);
          this.streams.stderr.push(chunk);
        });
        const ctl = child.stdio[3] as unknown as Readable & Writable;
        this.ctl = ctl;
        ctl.on('error', () => {
          // the interpreter died: 'exit' tells
        });
        ctl.on(
          'data',
          jsonLineReader(
            (value) => {
              const event = value as unknown as KernelEvent;
              if (event.ev === 'ready') {
                clearTimeout(timer);
                // Without it, a process a call started in a session of its own could outlive the call.
                if (event.subreaper !== true) {
                  this.kill('the interpreter could not become a subreaper');
                  reject(new Error(this.endReason));
                  return;
                }
                if (this.state === 'starting') this.state = 'ready';
                this.readyOnce = true;
                resolve();
              } else if (event.ev === 'done') this.onReply?.(event);
            },
            (why) => this.kill(why === 'long' ? 'the interpreter sent an over-long control line' : 'the interpreter sent a bad control line'),
            MAX_CONTROL_LINE,
          ),
        );
        ctl.write(`${kernelSource()}\0`);
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
    const onDeath = this.onDeath;
    this.onDeath = null;
    onDeath?.();
    this.onEnd?.(this.endReason, onDeath !== null);
  }

  /** Kill the interpreter and everything in its sandbox now. */
  kill(reason: string): void {
    this.endReason ??= reason;
    killChildTree(this.child);
  }

  /** Kill the interpreter and wait (bounded) until it is gone. */
  async stop(): Promise<void> {
    this.kill(this.endReason ?? 'stopped');
    if (this.child?.pid !== undefined) await waitForExit(this.exited);
  }

  private send(msg: Record<string, unknown>): void {
    try {
      this.ctl?.write(`${JSON.stringify(msg)}\n`);
    } catch {
      // a dead interpreter: 'exit' tells
    }
  }

  /** Run one call. The interpreter must be ready and idle. */
  exec(req: ExecRequest): Promise<ExecOutcome> {
    if (this.state !== 'ready') return Promise.reject(new Error(`the interpreter is ${this.state}`));
    this.state = 'busy';
    const id = this.nextId++;
    const mark = Buffer.from(`\x1e\x1bcodegen-end-${this.markPrefix}-${id}\x1e`);
    const sessionId = this.spec.sessionId;
    const before = sessionId && this.session ? countersAfter(sessionId) : null;
    const began = performance.now();

    return new Promise<ExecOutcome>((resolve) => {
      const stdout = new OutputCollector(req.maxOutputBytes, req.onLine ? (line) => req.onLine!('stdout', line) : undefined);
      const stderr = new OutputCollector(req.maxOutputBytes, req.onLine ? (line) => req.onLine!('stderr', line) : undefined);
      let marks = 0;
      let reply: ExecReply | null = null;
      let timedOut = false;
      let cancelled = false;
      let died: string | undefined;
      let settled = false;
      let interruptTimer: NodeJS.Timeout | undefined;
      let timeoutTimer: NodeJS.Timeout | undefined;
      let closeTimer: NodeJS.Timeout | undefined;

      const finish = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(interruptTimer);
        clearTimeout(timeoutTimer);
        clearTimeout(closeTimer);
        req.signal?.removeEventListener('abort', onAbort);
        this.onReply = null;
        this.onDeath = null;
        this.streams.stdout.flush(reply !== null);
        this.streams.stderr.flush(reply !== null);
        stdout.end();
        stderr.end();
        if (this.state === 'busy') this.state = 'ready';
        const outcome: ExecOutcome = {
          stdout: stdout.text(),
          stderr: stderr.text(),
          truncated: stdout.truncated || stderr.truncated,
          durationMs: Math.round(performance.now() - began),
          reply,
          timedOut,
          cancelled,
        };
        if (died !== undefined) {
          outcome.died = died;
          const after = sessionId && this.session ? countersAfter(sessionId) : null;
          const exceeded = limitExceededOf(
            { exitCode: this.child?.exitCode ?? -1, signal: this.child?.signalCode ?? null, timedOut, cancelled, stderr: outcome.stderr, durationMs: outcome.durationMs, rlimits: this.spec.rlimits },
            before,
            after,
            this.session?.limits ?? null,
          );
          if (exceeded) outcome.limitExceeded = exceeded;
        }
        countKills(outcome);
        resolve(outcome);
      };

      const maybeFinish = (): void => {
        if (reply !== null && marks === 2) finish();
      };
      this.streams.stdout.expect(mark, (c) => stdout.push(c), () => {
        marks += 1;
        maybeFinish();
      });
      this.streams.stderr.expect(mark, (c) => stderr.push(c), () => {
        marks += 1;
        maybeFinish();
      });

      this.onReply = (e) => {
        if (e.id !== id) return;
        reply = replyOf(e);
        clearTimeout(interruptTimer);
        // The marks were written before the reply; this only bounds a stream that lags.
        closeTimer = setTimeout(finish, CLOSE_GRACE_MS);
        maybeFinish();
      };
      this.onDeath = () => {
        died = this.endReason ?? 'the interpreter ended';
        finish();
      };

      const interrupt = (why: 'timeout' | 'cancel'): void => {
        // A call that has answered is over: its marks are only on their way.
        if (settled || timedOut || cancelled || reply !== null || marks > 0) return;
        if (why === 'timeout') timedOut = true;
        else cancelled = true;
        this.send({ op: 'interrupt', id });
        interruptTimer = setTimeout(() => {
          this.kill(`the code did not stop within ${INTERRUPT_GRACE_MS / 1000} s of KeyboardInterrupt after the ${why === 'timeout' ? 'timeout' : 'cancel'}, so the interpreter was killed`);
        }, INTERRUPT_GRACE_MS);
      };
      const onAbort = (): void => interrupt('cancel');

      if (req.signal?.aborted) {
        // Cancelled before it was sent: nothing ran, the state is as it was.
        cancelled = true;
        finish();
        return;
      }
      this.send({ op: 'exec', id, code: req.code, mark: mark.toString('latin1') });
      if (req.timeoutMs > 0) timeoutTimer = setTimeout(() => interrupt('timeout'), req.timeoutMs);
      if (req.signal) {
        if (req.signal.aborted) interrupt('cancel');
        else req.signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }
}

/** How the process ended, in words; bwrap passes on a killed child's end as exit code 128 + signal. */
function exitWords(code: number | null, signal: NodeJS.Signals | null): string {
  const sig = signal ?? (code !== null && code > 128 && code < 160 ? signalName(code - 128) : null);
  return sig ? `was killed by ${sig}` : `exited with code ${code}`;
}

const text = (v: unknown): string => (typeof v === 'string' ? v : '');

/** The kernel's reply, read defensively: user code runs in that process and may have sent anything. */
function replyOf(e: KernelEvent): ExecReply {
  const outputs = Array.isArray(e.outputs)
    ? e.outputs.flatMap((o: unknown) => {
        const item = o as { mime?: unknown; b64?: unknown } | null;
        return item && typeof item.mime === 'string' && typeof item.b64 === 'string' ? [{ mime_type: item.mime, data: Buffer.from(item.b64, 'base64') }] : [];
      })
    : [];
  const count = Number(e.execution_count);
  return {
    result: text(e.result),
    outputs,
    errorName: text(e.error_name),
    errorValue: text(e.error_value),
    traceback: text(e.traceback),
    executionCount: Number.isInteger(count) && count > 0 ? count : 0,
  };
}
