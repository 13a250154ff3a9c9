import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { CodegenError } from '../domain/errors.js';
import { isSafeId } from '../domain/ids.js';

/**
 * The proof that a session's owner is alive: an exclusive flock(2) on BASE_WORKSPACE/.sessions/<id>.lock,
 * held by a small helper child (lock-helper.py) that exits — releasing every lock — when this
 * process dies, SIGKILL included, because its stdin (a pipe from us) closes. A stalled worker
 * (SIGSTOP, docker pause) keeps its locks, so no other worker takes its sessions. flock works
 * across containers on one host sharing the volume (one kernel, one inode).
 *
 * Intended use (scaled replicas sharing one BASE_WORKSPACE):
 *   create:  tryLock(id) before the description is written (SessionStore.write).
 *   adopt:   list(); for each session tryLock(id); if true, read(id) again (its owner may have
 *            removed it meanwhile): none → unlock(id, { removeFile: true }).
 *   destroy: remove the workspace and the description, then unlock(id, { removeFile: true }).
 *   onLost:  the helper died, so the locks are gone: stop serving the sessions (another worker
 *            may adopt them now).
 */

export interface SessionLocksOptions {
  /** BASE_WORKSPACE/.sessions (sessionsDirOf); created if missing. */
  dir: string;
  /** Python interpreter that runs the helper (the worker's PYTHON). */
  python: string;
  /** Called once per helper when it dies on its own: every lock it held is gone. */
  onLost?: (reason: string) => void;
  /** How long start() waits for the helper's first line; default 10 s. */
  startTimeoutMs?: number;
  /** How long stop() waits for the helper to exit before SIGKILL; default 5 s. */
  stopTimeoutMs?: number;
}

/** lock-helper.py next to this module: src/ under vitest, dist/src/ after `npm run build` (scripts/postbuild.mjs copies it). */
export const lockHelperPath = (): string => fileURLToPath(new URL('./lock-helper.py', import.meta.url));

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped' | 'lost';

interface Pending {
  op: 'lock' | 'unlock' | 'remove';
  id: string;
  settle: (status: string, message: string) => void;
  reject: (err: Error) => void;
}

const STDERR_KEEP = 4096;

export class SessionLocks {
  private state: State = 'new';
  private child: ChildProcessWithoutNullStreams | undefined;
  private readonly pending: Pending[] = [];
  private readonly holding = new Set<string>();
  private lostReason = '';
  private failReason = '';
  private stdoutBuffer = '';
  private stderrTail = '';
  private onReady: ((line: string) => void) | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(private readonly opts: SessionLocksOptions) {}

  /** The helper's pid while it runs. */
  get pid(): number | undefined {
    return this.state === 'running' || this.state === 'stopping' ? this.child?.pid : undefined;
  }

  /** Ids whose lock we hold now (empty once the helper is gone). */
  held(): string[] {
    return [...this.holding].sort();
  }

  /** Start the helper; resolves when it is ready to take requests. Again after stop() or a loss: a new helper. */
  async start(): Promise<void> {
    if (this.state === 'starting' || this.state === 'running' || this.state === 'stopping') {
      throw new CodegenError('FAILED_PRECONDITION', `session locks on ${this.opts.dir} are already ${this.state}`);
    }
    const script = lockHelperPath();
    if (!existsSync(script)) throw new CodegenError('INTERNAL', `lock helper ${script} is missing (a build without scripts/postbuild.mjs?)`);
    await mkdir(this.opts.dir, { recursive: true, mode: 0o700 });

    this.state = 'starting';
    this.lostReason = this.failReason = this.stdoutBuffer = this.stderrTail = '';
    this.holding.clear();
    // The folder is its working directory, not an argument: process listings then show no session paths.
    const child = spawn(this.opts.python, ['-I', '-S', script, '.'], { cwd: this.opts.dir, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    let spawnError: Error | undefined;
    this.exited = new Promise<void>((resolve) => {
      child.on('error', (err) => {
        spawnError ??= err; // ENOENT for a wrong interpreter; 'close' follows
      });
      child.on('close', (code, signal) => {
        this.onClose(code, signal, spawnError);
        resolve();
      });
    });
    child.stdin.on('error', () => undefined); // EPIPE when the helper died: 'close' reports it
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => this.onStdout(chunk));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_KEEP);
    });

    const timeoutMs = this.opts.startTimeoutMs ?? 10_000;
    const ready = await new Promise<string | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.failReason = `did not say ready within ${timeoutMs} ms`;
        child.kill('SIGKILL');
      }, timeoutMs);
      this.onReady = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
      void this.exited.then(() => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
    this.onReady = undefined;
    if (ready?.startsWith('ready ') && this.state === 'starting') {
      this.state = 'running';
      return;
    }
    if (ready !== undefined) {
      // `fatal <message>` (the helper exits) or something unexpected.
      this.failReason ||= ready.startsWith('fatal ') ? ready.slice(6) : `said ${JSON.stringify(ready.slice(0, 200))} instead of ready`;
      child.kill('SIGKILL');
    }
    await this.exited;
    throw new CodegenError('INTERNAL', `lock helper (${this.opts.python} ${script}) did not start: ${this.lostReason || this.failReason || 'it exited'}`);
  }

  /** Take the session's lock without waiting: true when we hold it now (also if we already did), false when another process does. */
  async tryLock(sessionId: string): Promise<boolean> {
    const [status, message] = await this.request('lock', sessionId);
    if (status === 'ok') return true;
    if (status === 'busy') return false;
    throw new CodegenError('INTERNAL', `lock ${sessionId}: ${message}`);
  }

  /**
   * Release the session's lock (idempotent). `removeFile` also unlinks the lock file, which is
   * safe only while holding the lock (the helper re-checks the path after each flock): when we
   * do not hold it, the file is left alone.
   */
  async unlock(sessionId: string, opts: { removeFile?: boolean } = {}): Promise<void> {
    const [status, message] = await this.request(opts.removeFile ? 'remove' : 'unlock', sessionId);
    if (status !== 'ok') throw new CodegenError('INTERNAL', `unlock ${sessionId}: ${message}`);
  }

  /** Close the helper's stdin (releasing every lock) and wait for it to exit, SIGKILL after stopTimeoutMs. Requests already sent are answered first. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || this.state === 'new' || this.state === 'stopped' || this.state === 'lost') return;
    if (this.state === 'starting') {
      this.failReason = 'stopped while starting';
      child.kill('SIGKILL');
      await this.exited;
      return;
    }
    if (this.state === 'running') {
      this.state = 'stopping';
      child.stdin.end();
    }
    const timeoutMs = this.opts.stopTimeoutMs ?? 5000;
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  private request(op: Pending['op'], sessionId: string): Promise<[string, string]> {
    if (typeof sessionId !== 'string' || !isSafeId(sessionId)) {
      return Promise.reject(new CodegenError('INVALID_ARGUMENT', `session_id ${JSON.stringify(sessionId)} is not a valid session id`));
    }
    if (this.state === 'lost') return Promise.reject(this.lostError());
    if (this.state !== 'running') {
      return Promise.reject(new CodegenError('FAILED_PRECONDITION', `session locks on ${this.opts.dir} are ${this.state === 'new' ? 'not started' : this.state}`));
    }
    return new Promise((resolve, reject) => {
      this.pending.push({
        op,
        id: sessionId,
        reject,
        settle: (status, message) => {
          if (status === 'ok') {
            if (op === 'lock') this.holding.add(sessionId);
            else this.holding.delete(sessionId);
          }
          resolve([status, message]);
        },
      });
      this.child!.stdin.write(`${op} ${sessionId}\n`);
    });
  }

  private onStdout(chunk: string): void {
    this.stdoutBuffer += chunk;
    for (let nl = this.stdoutBuffer.indexOf('\n'); nl >= 0; nl = this.stdoutBuffer.indexOf('\n')) {
      const line = this.stdoutBuffer.slice(0, nl);
      this.stdoutBuffer = this.stdoutBuffer.slice(nl + 1);
      this.onLine(line);
    }
  }

  private onLine(line: string): void {
    if (this.onReady) return this.onReady(line);
    const [status = '', id = '', ...rest] = line.split(' ');
    const head = this.pending[0];
    if (!head || id !== head.id || !['ok', 'busy', 'err'].includes(status)) {
      return this.fail(`answered ${JSON.stringify(line.slice(0, 200))} ${head ? `to "${head.op} ${head.id}"` : 'to no request'}`);
    }
    this.pending.shift();
    head.settle(status, rest.join(' '));
  }

  /** A protocol error: the helper can no longer be trusted with our locks. */
  private fail(reason: string): void {
    this.failReason ||= reason;
    this.child?.kill('SIGKILL');
  }

  private onClose(code: number | null, signal: NodeJS.Signals | null, spawnError: Error | undefined): void {
    const was = this.state;
    const how = spawnError ? `could not be run: ${spawnError.message}` : signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const stderr = this.stderrTail.trim();
    const reason = `lock helper (pid ${this.child?.pid ?? '?'}) ${this.failReason ? this.failReason + '; it then ' : ''}${how}${stderr ? `; stderr: ${stderr.slice(-1000)}` : ''}`;
    this.holding.clear();
    if (was === 'stopping') {
      this.state = 'stopped';
      this.rejectPending(new CodegenError('INTERNAL', `session locks on ${this.opts.dir} stopped before answering: ${reason}`));
      return;
    }
    this.state = 'lost';
    this.lostReason = reason;
    this.rejectPending(this.lostError());
    if (was === 'running') {
      try {
        this.opts.onLost?.(reason);
      } catch {
        // the callback's own failure must not hide the loss
      }
    }
  }

  private lostError(): CodegenError {
    return new CodegenError('INTERNAL', `session locks on ${this.opts.dir} are lost: ${this.lostReason}`);
  }

  private rejectPending(err: Error): void {
    for (const p of this.pending.splice(0)) p.reject(err);
  }
}
