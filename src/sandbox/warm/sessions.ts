import { rmSync } from 'node:fs';
import path from 'node:path';
import { cancelledBeforeStart, isolationInForce, type LaunchResult } from '../launch.js';
import { WarmServer, type WarmServerSpec, type WarmTask } from './server.js';

export type { WarmServerSpec, WarmTask } from './server.js';

/** Where a warm interpreter reports what went wrong (the worker logs it; the task falls back to the cold path). */
export type WarmLog = (message: string, details: Record<string, unknown>) => void;

/** Servers one session may hold at once (e.g. with and without network). */
const MAX_SERVERS = 2;

/**
 * Whether a task with environment `env` may run in an interpreter started with `serverEnv`:
 * no variable that changes interpreter start-up (PYTHON* but PYTHONIOENCODING, which the fork
 * applies, and PYTHONUNBUFFERED, which must be on as the server's is), and the same locale.
 */
export function warmCompatible(env: Record<string, string>, serverEnv: Record<string, string>): boolean {
  for (const name of Object.keys(env)) {
    if (!name.startsWith('PYTHON') || name === 'PYTHONIOENCODING' || name === 'PYTHONUNBUFFERED') continue;
    return false;
  }
  if (Boolean(env.PYTHONUNBUFFERED) !== Boolean(serverEnv.PYTHONUNBUFFERED)) return false;
  for (const name of ['LANG', 'LC_ALL', 'LC_CTYPE']) if (env[name] !== serverEnv[name]) return false;
  return true;
}

/**
 * A session's warm interpreters: started lazily (one per sandbox view), reused by its tasks, one
 * task at a time. `run` resolves null when the task should take the cold path.
 */
export class WarmPython {
  private readonly servers = new Map<string, WarmServer>();
  private busy = false;
  private closed = false;
  /** Why a server could not start: this handle then runs nothing warm; its actor is restarted with a fresh one. */
  private brokenReason: string | undefined;
  private brokenListeners: Array<(reason: string) => void> = [];
  private counter = 0;
  private started = 0;

  constructor(
    readonly sessionId: string,
    /** This session's control folder root (one sub-folder per server). */
    private readonly dir: string,
    private readonly log?: WarmLog,
  ) {}

  /** Run `task` in a warm interpreter for `spec`; null when it did not start (the caller runs it cold). */
  async run(spec: WarmServerSpec, task: WarmTask): Promise<LaunchResult | null> {
    if (this.closed || this.busy || this.brokenReason !== undefined) return null;
    if (!warmCompatible(task.env, spec.env)) return null;
    if (task.signal?.aborted) return cancelledBeforeStart();
    this.busy = true;
    try {
      const key = JSON.stringify([await isolationInForce(), spec.python, spec.workspace, spec.view, spec.env, spec.sessionId ?? null, spec.limits ?? null]);
      // A server that died or went stale before the task started ran nothing: one more try on a fresh one.
      for (let attempt = 0; attempt < 2; attempt++) {
        const server = await this.serverFor(key, spec);
        if (server === null) return null;
        const result = await server.run(task);
        if (result !== null || server.alive) return result;
      }
      return null;
    } finally {
      this.busy = false;
    }
  }

  private async serverFor(key: string, spec: WarmServerSpec): Promise<WarmServer | null> {
    const existing = this.servers.get(key);
    if (existing?.alive) return existing;
    if (existing) {
      this.servers.delete(key);
      await existing.stop();
    }
    while (this.servers.size >= MAX_SERVERS) {
      const [oldestKey, oldest] = this.servers.entries().next().value as [string, WarmServer];
      this.servers.delete(oldestKey);
      await oldest.stop();
    }
    if (this.closed) return null;
    const server = new WarmServer(spec, path.join(this.dir, String(++this.counter)), (s, reason) => {
      if (reason !== 'stopped') this.log?.('warm python server ended', { sessionId: this.sessionId, reason });
    });
    this.servers.set(key, server);
    try {
      await server.start();
    } catch (err) {
      if (this.servers.get(key) === server) this.servers.delete(key);
      this.log?.('warm python server cannot start; tasks run cold until it is restarted', { sessionId: this.sessionId, err: (err as Error).message });
      this.brokenReason = `the warm interpreter could not start: ${(err as Error).message}`;
      for (const l of this.brokenListeners.splice(0)) l(this.brokenReason);
      return null;
    }
    this.started += 1;
    if (this.closed) {
      await server.stop();
      return null;
    }
    return server;
  }

  /** Resolves with the reason when a server of this handle could not start (its supervisor then restarts it). */
  broken(): Promise<string> {
    if (this.brokenReason !== undefined) return Promise.resolve(this.brokenReason);
    return new Promise((resolve) => this.brokenListeners.push(resolve));
  }

  /** For tests and logs: servers started so far, and the pid (as the worker sees it) of a live one. */
  stats(): { starts: number; pid: number | undefined; live: number } {
    const live = [...this.servers.values()].filter((s) => s.alive);
    return { starts: this.started, pid: live[0]?.pid, live: live.length };
  }

  /** Stop every server of the session (a running task ends as killed); later runs return null. */
  async stop(): Promise<void> {
    this.closed = true;
    const all = [...this.servers.values()];
    this.servers.clear();
    await Promise.all(all.map((s) => s.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A worker's warm interpreters, per session, under `root` (cleared at construction). */
export class WarmPythonRegistry {
  private readonly sessions = new Map<string, WarmPython>();

  constructor(private readonly opts: { root: string; log?: WarmLog }) {
    rmSync(opts.root, { recursive: true, force: true });
  }

  /** The session's handle, made when missing (the session's warm-interpreter actor opens it). */
  forSession(sessionId: string): WarmPython {
    let warm = this.sessions.get(sessionId);
    if (!warm) {
      warm = new WarmPython(sessionId, path.join(this.opts.root, sessionId), this.opts.log);
      this.sessions.set(sessionId, warm);
    }
    return warm;
  }

  /** The session's handle when its actor runs one now; undefined: run cold. */
  current(sessionId: string): WarmPython | undefined {
    return this.sessions.get(sessionId);
  }

  /** Stop a session's servers (its workspace is released). */
  async release(sessionId: string): Promise<void> {
    const warm = this.sessions.get(sessionId);
    if (!warm) return;
    this.sessions.delete(sessionId);
    await warm.stop();
  }

  async stopAll(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((w) => w.stop()));
    rmSync(this.opts.root, { recursive: true, force: true });
  }
}
