import { mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { CodegenError } from '../../domain/errors.js';
import { isolationInForce } from '../launch.js';
import { InterpreterProcess, type ExecOutcome, type ExecRequest, type InterpreterSpec } from './process.js';

export type { ExecOutcome, ExecRequest, InterpreterSpec } from './process.js';

export interface ExecResult extends ExecOutcome {
  /** The interpreter's earlier state is gone (told once, on the call that first sees it). */
  stateLost: boolean;
  stateLostReason: string;
}

export type InterpreterLog = (message: string, details: Record<string, unknown>) => void;

/**
 * A session's stateful interpreter (python_exec): started on the first call, kept between calls,
 * started afresh after it ended. Whenever state was lost other than by python_reset (a crash, a
 * limit, a kill after an interrupt failed, a restore, a worker restart) the next result says so,
 * once. The session's interpreter actor owns it: it is made when the actor starts and closed when
 * the session is released.
 */
export class SessionInterpreter {
  private proc: InterpreterProcess | undefined;
  private procKey = '';
  /** A loss of state no call has reported yet. */
  private lost: string | undefined;
  private closed = false;
  /** Interpreters this handle ended on purpose (their end is not a crash). */
  private readonly ending = new WeakSet<InterpreterProcess>();
  private failureListeners: Array<(reason: string) => void> = [];
  private starting: Promise<InterpreterProcess> | null = null;
  private starts = 0;

  constructor(
    readonly sessionId: string,
    /** A file that exists while the session has had an interpreter: after a worker restart it says state was lost. */
    private readonly marker: string | undefined,
    private readonly log?: InterpreterLog,
  ) {
    if (marker && existsSync(marker)) this.lost = "the worker restarted, so the interpreter's variables and imports were lost (files and packages are kept)";
  }

  /** Run one call; throws CodegenError UNAVAILABLE when no interpreter can be started. */
  async exec(spec: InterpreterSpec, req: ExecRequest): Promise<ExecResult> {
    const proc = await this.ready(spec);
    const told = this.lost;
    this.lost = undefined;
    let outcome: ExecOutcome;
    try {
      outcome = await proc.exec(req);
    } catch (err) {
      this.lost ??= told; // not run: the loss is told by the next call
      throw new CodegenError('UNAVAILABLE', `the session's interpreter cannot take the call now (${(err as Error).message}); retry`, { cause: err });
    }
    if (outcome.died !== undefined) {
      this.ending.add(proc); // its end is told in this result, not as a crash between calls
      if (this.proc === proc) this.proc = undefined;
      const why = outcome.limitExceeded ? `${outcome.limitExceeded.message}; the interpreter was restarted` : outcome.died;
      return { ...outcome, stateLost: true, stateLostReason: `${why}: its variables and imports are lost` };
    }
    return { ...outcome, stateLost: told !== undefined, stateLostReason: told ?? '' };
  }

  /** python_reset: the next call starts a fresh interpreter. True when one with state was ended. */
  async reset(): Promise<boolean> {
    const had = this.proc?.alive === true;
    this.lost = undefined;
    await this.end();
    return had;
  }

  /**
   * The state went away for a reason the next call must hear (a restore replaced the files). Told
   * when there was state to lose, or always with `always` (a session made from a checkpoint on
   * another worker: whether it had state there is not known here).
   */
  async discard(reason: string, always = false): Promise<void> {
    if (always || this.proc?.alive || this.lost !== undefined || (this.marker && existsSync(this.marker))) this.lost = reason;
    await this.end();
  }

  /** Resolves with the reason when the interpreter ended between calls or could not start (its actor then fails, and is restarted). */
  failure(): Promise<string> {
    return new Promise((resolve) => this.failureListeners.push(resolve));
  }

  /** For tests and logs. */
  stats(): { starts: number; pid: number | undefined; alive: boolean } {
    return { starts: this.starts, pid: this.proc?.pid, alive: this.proc?.alive === true };
  }

  /** Stop the interpreter; later calls are refused. `forget` also removes the marker (the session is destroyed). */
  async close(forget: boolean): Promise<void> {
    this.closed = true;
    await this.end();
    if (forget && this.marker) rmSync(this.marker, { force: true });
  }

  private async end(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc) return;
    this.ending.add(proc);
    await proc.stop();
  }

  private fail(reason: string): void {
    for (const l of this.failureListeners.splice(0)) l(reason);
  }

  private async ready(spec: InterpreterSpec): Promise<InterpreterProcess> {
    if (this.closed) throw new CodegenError('UNAVAILABLE', `session ${this.sessionId} is shutting down; its interpreter is stopped`);
    const key = JSON.stringify([await isolationInForce(), spec]);
    if (this.proc?.alive && this.procKey !== key) {
      // The session's sandbox changed under it (its limits or environment): a fresh interpreter, and the caller is told.
      await this.end();
      this.lost = "the session's sandbox settings changed, so its interpreter was restarted: variables and imports are lost";
    }
    if (this.proc?.alive) return this.proc;
    // One start at a time: a second caller waits for the same interpreter.
    this.starting ??= this.start(spec, key).finally(() => (this.starting = null));
    return this.starting;
  }

  private async start(spec: InterpreterSpec, key: string): Promise<InterpreterProcess> {
    const proc = new InterpreterProcess(spec, (reason, duringCall) => {
      // A call that was running tells its own end; one that never got ready had no state to lose.
      if (duringCall || !proc.readyOnce || this.ending.has(proc)) return;
      if (this.proc === proc) this.proc = undefined;
      this.lost = `the interpreter ended between calls (${reason}), so its variables and imports were lost`;
      this.log?.('interpreter ended between calls', { sessionId: this.sessionId, reason });
      this.fail(reason);
    });
    this.proc = proc;
    this.procKey = key;
    try {
      await proc.start();
    } catch (err) {
      const onPurpose = this.ending.has(proc); // stopped while it started (a reset, a release)
      this.ending.add(proc);
      if (this.proc === proc) this.proc = undefined;
      const reason = `the session's interpreter could not start: ${(err as Error).message}`;
      if (!onPurpose) {
        this.log?.('interpreter cannot start', { sessionId: this.sessionId, err: (err as Error).message });
        this.fail(reason);
      }
      throw new CodegenError('UNAVAILABLE', `${reason}; retry, or use run_python`, { cause: err });
    }
    if (this.closed || this.proc !== proc) {
      // Closed (or reset) while it started: this one is nobody's.
      this.ending.add(proc);
      if (this.proc === proc) this.proc = undefined;
      await proc.stop();
      throw new CodegenError('UNAVAILABLE', `session ${this.sessionId} is shutting down; its interpreter is stopped`);
    }
    this.starts += 1;
    if (this.marker) {
      try {
        mkdirSync(path.dirname(this.marker), { recursive: true, mode: 0o700 });
        writeFileSync(this.marker, `${Date.now()}\n`);
      } catch (err) {
        this.log?.('interpreter marker cannot be written', { sessionId: this.sessionId, err: (err as Error).message });
      }
    }
    return proc;
  }
}

/** A worker's stateful interpreters, one handle per session. */
export class InterpreterRegistry {
  private readonly sessions = new Map<string, SessionInterpreter>();

  constructor(private readonly opts: { markerDir?: string; log?: InterpreterLog } = {}) {}

  /** The session's handle, made when missing (its actor opens it). */
  forSession(sessionId: string): SessionInterpreter {
    let h = this.sessions.get(sessionId);
    if (!h) {
      h = new SessionInterpreter(sessionId, this.opts.markerDir ? path.join(this.opts.markerDir, sessionId) : undefined, this.opts.log);
      this.sessions.set(sessionId, h);
    }
    return h;
  }

  current(sessionId: string): SessionInterpreter | undefined {
    return this.sessions.get(sessionId);
  }

  /** The session is released: its interpreter stops; `forget` (a destroy) removes its marker too. */
  async release(sessionId: string, forget: boolean): Promise<void> {
    const h = this.sessions.get(sessionId);
    this.sessions.delete(sessionId);
    if (h) await h.close(forget);
    else if (forget && this.opts.markerDir) rmSync(path.join(this.opts.markerDir, sessionId), { force: true });
  }

  async stopAll(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((h) => h.close(false)));
  }
}
