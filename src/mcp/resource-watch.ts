/**
 * Which session files changed, for the MCP connections that watch them (one watch per front-door
 * process, shared by its connections). It learns from the calls the connections make through
 * their ports (observe()), never from the outside:
 *
 * - a session made or destroyed through a port;
 * - a task of a tool that may change files (fs_write, run_python, python_exec, pkg_install) or an
 *   in-place restore, once it has ended (whatever its outcome: a failed run may have written);
 * - a full listing of a workspace (the one resources/list makes), whoever made it.
 *
 * A change is confirmed by a look: a full listing of the workspace (one fs_list task), at most one
 * at a time per session, `probeDelayMs` after the first change that asked for it (the changes
 * meanwhile share it). A look is compared with the one before: the set of listed files (what
 * resources/list shows) and, for the paths some connection subscribed to, size and mtime. fs_write
 * names the file it wrote, so that file counts as changed even when size and mtime look the same.
 * Only sessions some connection watches are looked at: one in the listed sessions of a connection
 * that has called resources/list, or one with a subscription. A session nobody watches is
 * forgotten at its next change, so a later first look is a fresh start, not a stale comparison.
 *
 * Tasks of one session run one at a time in the order they came, so a look submitted after a task
 * ended sees what that task did. When there is no earlier look to compare with, or a look fails,
 * the list is said to have changed (a list_changed too many is cheap; one missing is not).
 *
 * Tenants: a change carries a session id, and a connection hears of it only for a session it
 * already knows (one it made or used, which its own port let it see) or subscribed to after its
 * port said the session is visible. Looks run on the port that last touched the session.
 */
import { createHash } from 'node:crypto';
import { CodegenError } from '../domain/errors.js';
import type { Logger } from '../log/logger.js';
import type { TaskOutcome, TaskUpdate } from '../domain/tasks.js';
import type { FileInfo, ToolName } from '../domain/tools.js';
import type { CoordinatorPort, SubmitTaskInput, TaskHandle } from '../runtime/port.js';
import { FULL_LISTING, isFullListing, listedFiles, resourceFiles } from './file-listing.js';

/** What a connection is told: the session's resource list changed, and/or these files did. */
export interface FilesChange {
  listChanged: boolean;
  paths: string[];
}

/** A connection's side of the watch (resource-notifier.ts). */
export interface WatchListener {
  /** Whether this connection wants to hear about the files of the session. */
  watches(sessionId: string): boolean;
  /** The paths of the session this connection subscribed to. */
  subscribedPaths(sessionId: string): Iterable<string>;
  filesChanged(sessionId: string, change: FilesChange): void;
  sessionGone(sessionId: string): void;
}

export interface ResourceWatchOptions {
  logger: Logger;
  /** The wait between a change and the look that confirms it. Default 250 ms. */
  probeDelayMs?: number;
  /** The longest a look waits behind the session's other tasks before it is given up. Default 10 minutes. */
  probeWaitMs?: number;
  /** Sessions tracked at once; the least recently touched beyond it are forgotten. Default 1000. */
  maxTrackedSessions?: number;
}

export const defaultResourceWatchOptions = { probeDelayMs: 250, probeWaitMs: 600_000, maxTrackedSessions: 1_000 } as const;

/** Tools whose tasks may change the workspace's files. */
const MAY_CHANGE_FILES: ReadonlySet<ToolName> = new Set<ToolName>(['fs_write', 'run_python', 'python_exec', 'pkg_install']);

/** Task errors that mean the task never ran. */
const REFUSED: ReadonlySet<string> = new Set(['SESSION_NOT_FOUND', 'INVALID_ARGUMENT', 'PATH_VIOLATION', 'NOT_FOUND']);

/** A file's size and mtime as one comparable string; null: the file is not there. */
type Signature = string | null;

/** What one look saw, as far as the watchers need it. */
export interface Look {
  /** A digest of the listed paths (the set resources/list shows). */
  listed: string;
  /** Size and mtime of every resource file of the listing. */
  files: Map<string, string>;
  /** False when the listing was cut short (fs_list's own cap): an absent path is then unknown. */
  complete: boolean;
}

export function lookOf(files: FileInfo[], totalCount: number): Look {
  const listed = createHash('sha1');
  for (const f of listedFiles(files)) listed.update(f.path).update('\0');
  const sigs = new Map<string, string>();
  for (const f of resourceFiles(files)) sigs.set(f.path, `${f.size_bytes}:${f.modified_time_ms}`);
  return { listed: listed.digest('hex'), files: sigs, complete: totalCount <= files.length };
}

/**
 * Compares a look with what was known before it. With no earlier look (`before.listed`
 * undefined), the list and every subscribed path whose state was not known count as changed when
 * something may have changed meanwhile (`changedMeanwhile`). Otherwise a path is reported when
 * its signature was known and differs. Paths a tool is known to have written are always reported.
 */
export function compareLooks(
  before: { listed: string | undefined; sigs: ReadonlyMap<string, Signature> },
  after: Look,
  changedMeanwhile: boolean,
  written: Iterable<string>,
  subscribed: Iterable<string>,
): { listChanged: boolean; paths: Set<string> } {
  const noBaseline = before.listed === undefined;
  const listChanged = noBaseline ? changedMeanwhile : before.listed !== after.listed;
  const paths = new Set<string>(written);
  for (const [path, sig] of before.sigs) {
    const now = after.files.get(path) ?? (after.complete ? null : undefined);
    if (now !== undefined && now !== sig) paths.add(path);
  }
  if (noBaseline && changedMeanwhile) for (const p of subscribed) if (!before.sigs.has(p)) paths.add(p);
  return { listChanged, paths };
}

interface Tracked {
  /** The raw port that last touched the session: looks run on it. */
  port: CoordinatorPort;
  /** The digest of the last look's listed paths; undefined before the first look. */
  listed: string | undefined;
  /** Signatures of subscribed paths as of the last look. */
  sigs: Map<string, Signature>;
  /** A change since the last look was submitted (so the next look may see it). */
  dirty: boolean;
  /** Paths a tool wrote since the last look was submitted. */
  written: Set<string>;
  /** Looks are applied in the order they were submitted. */
  submittedLooks: number;
  appliedLook: number;
  timer: NodeJS.Timeout | undefined;
  probing: boolean;
  again: boolean;
  touchedAt: number;
}

/** The state a look takes at its submission: what it covers. */
interface LookTicket {
  sessionId: string;
  seq: number;
  dirty: boolean;
  written: Set<string>;
}

export class ResourceWatch {
  private readonly listeners = new Set<WatchListener>();
  private readonly tracked = new Map<string, Tracked>();
  private readonly probeDelayMs: number;
  private readonly probeWaitMs: number;
  private readonly maxTracked: number;
  private closed = false;

  constructor(private readonly opts: ResourceWatchOptions) {
    this.probeDelayMs = opts.probeDelayMs ?? defaultResourceWatchOptions.probeDelayMs;
    this.probeWaitMs = opts.probeWaitMs ?? defaultResourceWatchOptions.probeWaitMs;
    this.maxTracked = opts.maxTrackedSessions ?? defaultResourceWatchOptions.maxTrackedSessions;
  }

  attach(listener: WatchListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops every pending look; later changes are ignored. */
  close(): void {
    this.closed = true;
    for (const t of this.tracked.values()) if (t.timer) clearTimeout(t.timer);
    this.tracked.clear();
    this.listeners.clear();
  }

  /** Sessions tracked now (for tests and metrics). */
  get trackedCount(): number {
    return this.tracked.size;
  }

  /**
   * The port with the watch over it: sessions made and destroyed, tasks that may change files and
   * full listings are seen as they end. Everything else passes through untouched.
   */
  observe(port: CoordinatorPort): CoordinatorPort {
    const overrides: Partial<CoordinatorPort> = {
      createSession: async (input) => {
        const view = await port.createSession(input);
        this.sessionMade(view.sessionId, port);
        return view;
      },
      destroySession: async (sessionId, options) => {
        const r = await port.destroySession(sessionId, options);
        this.sessionGone(sessionId);
        return r;
      },
      restoreCheckpoint: async (checkpointId, options) => {
        const r = await port.restoreCheckpoint(checkpointId, options);
        // In place, the session's files are the checkpoint's now; a new session is learnt as it is used.
        if (!options?.createNew) this.filesMayHaveChanged(r.session.sessionId, port, []);
        return r;
      },
      submitTask: (input, onUpdate) => this.submitObserved(port, input, onUpdate),
    };
    return new Proxy(port, {
      get: (target, prop, receiver) => {
        if (prop in overrides) return overrides[prop as keyof CoordinatorPort];
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }

  /**
   * A subscription to `path` of the session: tracks the session and, when the path's state is
   * not known yet, starts a look for it. Its outcome is not waited for; the look is submitted
   * before the subscription is answered, so it queues before any task the client sends after,
   * and sees the file as it was when subscribed.
   */
  async watchPath(sessionId: string, path: string, port: CoordinatorPort): Promise<void> {
    const t = this.track(sessionId, port);
    if (!t || t.sigs.has(path)) return;
    if (t.probing || t.timer) {
      t.again = true;
      return;
    }
    await this.startLook(sessionId, t);
  }

  private async submitObserved(port: CoordinatorPort, input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle> {
    const { call, sessionId } = input;
    const changes = MAY_CHANGE_FILES.has(call.tool);
    const lists = isFullListing(call);
    if (this.closed || (!changes && !lists)) return port.submitTask(input, onUpdate);

    // The caller may stop listening before the task ends (a call that outlived its wait): the
    // watch keeps listening until the outcome, then lets go.
    let callerDetached = false;
    let ended = false;
    let inner: TaskHandle | undefined;
    const ticket = lists ? this.lookSubmitted(sessionId, port) : undefined;
    const relay = (update: TaskUpdate, taskId: string): void => {
      if (update.type === 'outcome' && !ended) {
        ended = true;
        try {
          if (ticket) this.lookEnded(ticket, update.outcome);
          if (changes) this.taskEnded(sessionId, port, update.outcome);
        } catch (err) {
          this.opts.logger.warn({ err, sessionId }, 'resource watch failed on a task outcome');
        }
        if (callerDetached) queueMicrotask(() => inner?.detach());
      }
      if (!callerDetached) onUpdate(update, taskId);
    };
    try {
      inner = await port.submitTask(input, relay);
    } catch (err) {
      if (ticket) this.lookFailed(ticket);
      throw err;
    }
    const handle = inner;
    return {
      taskId: handle.taskId,
      duplicate: handle.duplicate,
      detach: () => {
        callerDetached = true;
        if (ended) handle.detach();
      },
      abandon: (reason) => {
        // The task is cancelled and its outcome will not come here: it may have changed files already.
        callerDetached = true;
        handle.abandon(reason);
        if (changes && !ended) this.filesMayHaveChanged(sessionId, port, []);
      },
    };
  }

  private taskEnded(sessionId: string, port: CoordinatorPort, outcome: TaskOutcome): void {
    // A task refused before it ran changed nothing.
    if (outcome.type === 'error' && REFUSED.has(outcome.error.code)) return;
    const written = outcome.type === 'result' && outcome.reply?.tool === 'fs_write' ? [outcome.reply.output.path] : [];
    this.filesMayHaveChanged(sessionId, port, written);
  }

  private sessionMade(sessionId: string, port: CoordinatorPort): void {
    if (this.closed) return;
    // A new session's workspace holds no files yet: that is its first look.
    const t = this.track(sessionId, port, true);
    if (t && t.listed === undefined) t.listed = lookOf([], 0).listed;
  }

  /** The session is gone (destroyed through a port, or a look found it missing). */
  sessionGone(sessionId: string): void {
    const t = this.tracked.get(sessionId);
    if (t?.timer) clearTimeout(t.timer);
    this.tracked.delete(sessionId);
    for (const l of this.listeners) this.safely(() => l.sessionGone(sessionId));
  }

  private filesMayHaveChanged(sessionId: string, port: CoordinatorPort, written: string[]): void {
    if (this.closed) return;
    const t = this.track(sessionId, port);
    if (!t) return;
    t.dirty = true;
    for (const p of written) t.written.add(p);
    this.schedule(sessionId, t);
  }

  private watched(sessionId: string): boolean {
    for (const l of this.listeners) if (l.watches(sessionId)) return true;
    return false;
  }

  /**
   * The session's state, when some connection watches it (`force`: track it anyway, for a new
   * session about to be used). A session nobody watches is dropped: its state would go stale.
   */
  private track(sessionId: string, port: CoordinatorPort, force = false): Tracked | undefined {
    let t = this.tracked.get(sessionId);
    if (!force && !this.watched(sessionId)) {
      if (t?.timer) clearTimeout(t.timer);
      if (t && !t.probing) this.tracked.delete(sessionId);
      return undefined;
    }
    if (!t) {
      t = { port, listed: undefined, sigs: new Map(), dirty: false, written: new Set(), submittedLooks: 0, appliedLook: 0, timer: undefined, probing: false, again: false, touchedAt: 0 };
      this.tracked.set(sessionId, t);
      this.evictBeyondCap();
    }
    t.port = port;
    t.touchedAt = Date.now();
    return t;
  }

  private evictBeyondCap(): void {
    if (this.tracked.size <= this.maxTracked) return;
    const idle = [...this.tracked.entries()].filter(([, t]) => !t.probing && !t.timer).sort((a, b) => a[1].touchedAt - b[1].touchedAt);
    for (const [id] of idle.slice(0, this.tracked.size - this.maxTracked)) this.tracked.delete(id);
  }

  private schedule(sessionId: string, t: Tracked): void {
    if (t.probing) {
      t.again = true;
      return;
    }
    if (t.timer) return;
    t.timer = setTimeout(() => {
      t.timer = undefined;
      if (this.tracked.get(sessionId) !== t || !this.watched(sessionId)) {
        if (this.tracked.get(sessionId) === t) this.tracked.delete(sessionId);
        return;
      }
      void this.startLook(sessionId, t);
    }, this.probeDelayMs);
    t.timer.unref?.();
  }

  /**
   * A look this watch makes itself: one full listing, then another if changes came meanwhile.
   * Resolves once the listing task is submitted (its outcome is handled when it comes).
   */
  private async startLook(sessionId: string, t: Tracked): Promise<void> {
    const ticket = this.lookSubmitted(sessionId, t.port);
    if (!ticket) return; // nobody watches it any more
    t.probing = true;
    t.again = false;
    const finished = (): void => {
      t.probing = false;
      if (this.closed || this.tracked.get(sessionId) !== t) return;
      if (t.again || t.dirty) this.schedule(sessionId, t);
    };
    let settle!: (outcome: TaskOutcome | 'timeout') => void;
    const ended = new Promise<TaskOutcome | 'timeout'>((resolve) => (settle = resolve));
    let handle: TaskHandle;
    try {
      handle = await t.port.submitTask({ sessionId, call: { tool: 'fs_list', input: FULL_LISTING } }, (update) => {
        if (update.type === 'outcome') settle(update.outcome);
      });
    } catch (err) {
      this.opts.logger.debug({ err, sessionId }, 'a look at a watched session was refused');
      // The port that last touched the session says it does not exist: it is gone.
      if (err instanceof CodegenError && err.code === 'SESSION_NOT_FOUND') this.sessionGone(sessionId);
      else this.lookFailed(ticket);
      return finished();
    }
    const timer = setTimeout(() => settle('timeout'), this.probeWaitMs);
    timer.unref?.();
    void ended.then((outcome) => {
      clearTimeout(timer);
      try {
        handle.detach();
      } catch {
        // detaching a finished task is harmless
      }
      try {
        if (outcome === 'timeout') this.lookFailed(ticket);
        else this.lookEnded(ticket, outcome, true);
      } finally {
        finished();
      }
    });
  }

  private lookSubmitted(sessionId: string, port: CoordinatorPort): LookTicket | undefined {
    const t = this.track(sessionId, port);
    if (!t) return undefined;
    const ticket: LookTicket = { sessionId, seq: ++t.submittedLooks, dirty: t.dirty, written: t.written };
    t.dirty = false;
    t.written = new Set();
    return ticket;
  }

  private lookEnded(ticket: LookTicket | undefined, outcome: TaskOutcome, ownLook = false): void {
    if (!ticket) return;
    if (outcome.type === 'error' && outcome.error.code === 'SESSION_NOT_FOUND') {
      // Only this watch's own looks say a session is gone: they run on a port that could see it.
      if (ownLook) this.sessionGone(ticket.sessionId);
      return;
    }
    if (outcome.type !== 'result' || outcome.reply?.tool !== 'fs_list') return this.lookFailed(ticket);
    const t = this.tracked.get(ticket.sessionId);
    if (!t) return;
    if (ticket.seq < t.appliedLook) {
      // A later look was applied first and compared sizes and mtimes; what a tool wrote is still news.
      this.emit(ticket.sessionId, { listChanged: false, paths: [...ticket.written] });
      return;
    }
    t.appliedLook = ticket.seq;
    const look = lookOf(outcome.reply.output.files, outcome.reply.output.total_count);
    const subscribed = this.subscribedPaths(ticket.sessionId);
    const change = compareLooks({ listed: t.listed, sigs: t.sigs }, look, ticket.dirty, ticket.written, subscribed);
    t.listed = look.listed;
    // Keep the signatures of subscribed paths only: the rest is not needed to compare the next look.
    t.sigs = new Map([...subscribed].map((p) => [p, look.files.get(p) ?? null] as const).filter(([, s]) => s !== null || look.complete));
    this.emit(ticket.sessionId, { listChanged: change.listChanged, paths: [...change.paths] });
  }

  /**
   * A look that did not answer: what it covered is reported as changed. The last good look stays
   * the one the next look is compared with (what changed since is seen again then).
   */
  private lookFailed(ticket: LookTicket | undefined): void {
    if (!ticket || (!ticket.dirty && ticket.written.size === 0)) return;
    const paths = new Set(ticket.written);
    if (ticket.dirty) for (const p of this.subscribedPaths(ticket.sessionId)) paths.add(p);
    this.emit(ticket.sessionId, { listChanged: true, paths: [...paths] });
  }

  private subscribedPaths(sessionId: string): Set<string> {
    const out = new Set<string>();
    for (const l of this.listeners) for (const p of l.subscribedPaths(sessionId)) out.add(p);
    return out;
  }

  private emit(sessionId: string, change: FilesChange): void {
    if (!change.listChanged && change.paths.length === 0) return;
    for (const l of this.listeners) this.safely(() => l.filesChanged(sessionId, change));
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.opts.logger.warn({ err }, 'a resource watch listener failed');
    }
  }
}
