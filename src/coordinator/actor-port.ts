import { waitFor, type AnyActorRef } from 'xstate';
import { checkEnvVars } from '../domain/env.js';
import { checkMetadataSize } from '../domain/metadata.js';
import { CodegenError, invalidArgument, type ErrorInfo } from '../domain/errors.js';
import { isSafeId, newRequestId, newSessionId, newTaskId } from '../domain/ids.js';
import type { CheckpointRestore, SessionConfig, SessionDescription, SessionView, WorkerView } from '../domain/sessions.js';
import { findRecord, isFinalTaskState, liveRecords, taskStateOf, type TaskConstraints, type TaskOutcome, type TaskOutcomeSummary, type TaskRecord, type TaskSpec, type TaskUpdate } from '../domain/tasks.js';
import { askLater, askNow } from '../runtime/ask.js';
import type { CheckpointView, CoordinatorPort, CreateSessionInput, SubmitTaskInput, TaskHandle, TaskView } from '../runtime/port.js';
import type { CheckpointStore } from '../checkpoints/store.js';
import { CheckpointService } from './checkpoints.js';
import { waitForOutcome } from '../runtime/wait-task.js';
import { ownerOf, type TenancyBackend, type TenantUsage } from '../runtime/tenancy.js';
import type { ResultStore } from '../runtime/result-store.js';
import type { CoordinatorActor, CoordinatorEmitted, CoordinatorEvent, EvictedSession } from '../../machines/coordinator/coordinator.machine.js';
import { allSlots } from '../../machines/coordinator/placement.js';
import { isSettled, lastClientTaskEndOf, lastTaskIsCheckpoint, sessionProxyIdOf, sessionViewOf, type SessionProxyActor, type SessionProxyEmitted, type SessionProxyOutput, type SessionProxySnapshot } from '../../machines/coordinator/session-proxy.machine.js';
import { shardIdOf } from '../../machines/coordinator/shard.machine.js';
import { liveTaskStateOf, taskProxyIdOf, type TaskProxyActor, type TaskProxyEmitted } from '../../machines/coordinator/task-proxy.machine.js';

export interface ActorPortOptions {
  /** READY → IDLE after this long without tasks (0: never); the worker applies it. */
  idleTimeoutMs: number;
  /** A bound on waiting for a proxy to settle, beyond its own deadlines: a safety net, never the rule. */
  settleBoundMs: number;
  results: ResultStore;
  /** The checkpoint store (absent: the checkpoint calls answer UNIMPLEMENTED). */
  checkpoints?: CheckpointStore;
  onSweep?: (result: { removed: number; freedBytes: number } | Error) => void;
  onCheckpointAdded?: (bytes: number) => void;
}

/** What the front doors show of a session no worker holds: EVICTED, its files in its latest checkpoint. */
function evictedView(k: EvictedSession): SessionView {
  const d = k.description;
  return {
    sessionId: d.sessionId,
    workerId: '',
    workspaceId: d.workspaceId,
    userId: d.userId,
    tenant: d.tenant,
    workspacePath: '',
    state: 'EVICTED',
    createdAtMs: d.createdAtMs,
    lastActivityMs: d.lastActivityMs,
    activeTasks: 0,
    recentTasks: [],
    metadata: { ...d.metadata },
    failureReason: '',
    restartedAtMs: d.restartedAtMs,
    survivalNote: `no worker holds it since ${new Date(k.evictedAtMs).toISOString()} (it left worker ${k.fromWorker}); its files and packages are in checkpoint ${k.restore.checkpointId}, and its next task restores it on the least-loaded worker`,
    unreachableSinceMs: 0,
    usage: { memoryBytes: 0, cpuMillicores: 0, diskBytes: 0 },
    limits: { memoryBytes: 0, maxProcesses: 0, cpuSecondsPerTask: 0, cpuMillicores: 0, diskBytes: 0 },
  };
}

/** An outcome the result cache no longer holds: rebuilt from the proxy's summary, without the tool's reply. */
const fromSummary = (s: TaskOutcomeSummary): TaskOutcome => (s.type === 'error' ? s : { type: 'result', status: s.status, artifacts: [], metadata: s.metadata });

/** How long CancelTask waits for the cancelled task to stop, to answer the state after the cancel. */
const CANCEL_SETTLE_MS = 5_000;

/**
 * The CoordinatorPort over the coordinator's actor system: it finds actors by systemId, sends
 * them events, and answers with what they emit or show. It keeps no state and decides nothing.
 */
export class ActorCoordinatorPort implements TenancyBackend {
  private readonly checkpointService: CheckpointService | undefined;
  /** Evicted sessions being made again now (calls that arrive meanwhile wait), and the checkpoint each came from. */
  private readonly rehoming = new Map<string, Promise<unknown>>();
  private readonly rehomedFrom = new Map<string, string>();

  constructor(
    private readonly root: CoordinatorActor,
    private readonly opts: ActorPortOptions,
  ) {
    this.checkpointService = opts.checkpoints ? new CheckpointService(opts.checkpoints, this, opts.onSweep, opts.onCheckpointAdded) : undefined;
    this.checkpointService?.pinWith(() => new Set(Object.values(this.root.getSnapshot().context.evicted).map((k) => k.restore.checkpointId)));
  }

  get checkpoints(): CheckpointService {
    if (!this.checkpointService) throw new CodegenError('UNIMPLEMENTED', 'this coordinator has no checkpoint store');
    return this.checkpointService;
  }

  /** The session's proxy while it is evicting the session (its worker dropping it). */
  private evicting(sessionId: string): SessionProxyActor | undefined {
    const p = this.system.get(sessionProxyIdOf(sessionId)) as SessionProxyActor | undefined;
    return p && p.getSnapshot().status === 'active' && p.getSnapshot().matches('evicting') ? p : undefined;
  }

  /** Being evicted, or being made again from its checkpoint: a task waits for the session rather than being refused. */
  private isComingBack(sessionId: string): boolean {
    return this.rehoming.has(sessionId) || this.evicting(sessionId) !== undefined;
  }

  /** The session's last task, if it was a successful checkpoint: the eviction's checkpoint when nothing ran since. */
  lastCheckpointTask(sessionId: string): string {
    const book = this.proxy(sessionId).getSnapshot().context.book;
    return lastTaskIsCheckpoint(book) ? book.records.at(-1)!.taskId : '';
  }

  /** Reachable sessions with no live task, READY or IDLE, whose last client task ended (or that were last active) before `idleSinceMs`. */
  evictionCandidates(idleSinceMs: number): Array<{ sessionId: string; lastClientMs: number }> {
    const out: Array<{ sessionId: string; lastClientMs: number }> = [];
    for (const proxy of this.proxies()) {
      const snap = proxy.getSnapshot();
      const c = snap.context;
      if (!snap.matches('active') || !c.reachable || liveRecords(c.book).length > 0) continue;
      if (c.report.state !== 'IDLE' && c.report.state !== 'READY') continue;
      const lastClientMs = lastClientTaskEndOf(c.book) || c.report.description.createdAtMs;
      if (lastClientMs < idleSinceMs) out.push({ sessionId: c.sessionId, lastClientMs });
    }
    return out;
  }

  /**
   * Written before a session leaves its worker (evicted, recovered): were the coordinator killed
   * right after, its next run still knows where the session's files are. An entry left behind
   * while a worker still holds the session is ignored (see keptNow) and replaced or removed later.
   */
  private async writeAhead(sessionId: string, restore: CheckpointRestore): Promise<void> {
    const c = this.proxy(sessionId).getSnapshot().context;
    const entry: EvictedSession = { description: c.report.description, restore, fromWorker: c.workerId, evictedAtMs: c.report.description.lastActivityMs };
    await this.opts.checkpoints?.putEvicted(sessionId, entry);
  }

  /** Removes an entry written ahead, unless the root keeps the session in its checkpoint now (its own entry, then). */
  private async forgetWrittenAhead(sessionId: string): Promise<void> {
    if (this.root.getSnapshot().context.evicted[sessionId]) return;
    await this.opts.checkpoints?.deleteEvicted(sessionId).catch(() => undefined);
  }

  /** Asks the session's proxy to evict it; resolves once its worker dropped it (or with the refusal). */
  async evict(sessionId: string, restore: CheckpointRestore, afterTaskId: string): Promise<void> {
    const proxy = this.proxy(sessionId);
    await this.writeAhead(sessionId, restore);
    // Destroyed (or gone) while the entry was written: the entry must not bring it back at the next start.
    if (proxy.getSnapshot().status !== 'active') {
      await this.forgetWrittenAhead(sessionId);
      throw new CodegenError('FAILED_PRECONDITION', `session ${sessionId} was not evicted: it ended meanwhile`);
    }
    const requestId = newRequestId();
    let refusal: ErrorInfo | null = null;
    const sub = proxy.on('evict.answered', (e: Extract<SessionProxyEmitted, { type: 'evict.answered' }>) => {
      if (e.requestId === requestId) refusal = e.error;
    });
    try {
      proxy.send({ type: 'session.evict', requestId, restore, afterTaskId, atMs: Date.now() });
      await waitFor(proxy, (s) => refusal !== null || s.status !== 'active' || !s.matches('evicting'), { timeout: this.opts.settleBoundMs });
    } finally {
      sub.unsubscribe();
    }
    // Only a proxy that ended handing the session over evicted it; one back in `active` kept it.
    const snap = proxy.getSnapshot();
    const kept = refusal !== null || snap.status !== 'done' || (snap.output as SessionProxyOutput | undefined)?.end !== 'evicted';
    // Its worker kept it: the entry written ahead goes.
    if (kept) await this.forgetWrittenAhead(sessionId);
    if (refusal) throw CodegenError.from(refusal);
    if (kept) throw new CodegenError('FAILED_PRECONDITION', `session ${sessionId} was not evicted: its worker kept it`);
  }

  /** Sessions whose worker has been unreachable since before `sinceMs`. */
  unreachableSince(sinceMs: number): Array<{ sessionId: string; workerId: string; unreachableSinceMs: number }> {
    const out: Array<{ sessionId: string; workerId: string; unreachableSinceMs: number }> = [];
    for (const proxy of this.proxies()) {
      const snap = proxy.getSnapshot();
      const c = snap.context;
      if (!snap.matches('active') || c.reachable || !c.unreachableSinceMs || c.unreachableSinceMs > sinceMs) continue;
      out.push({ sessionId: c.sessionId, workerId: c.workerId, unreachableSinceMs: c.unreachableSinceMs });
    }
    return out;
  }

  /** The session's worker is gone for good: its proxy hands it over, and it is made again elsewhere from `restore`. */
  async recover(sessionId: string, restore: CheckpointRestore): Promise<void> {
    await this.writeAhead(sessionId, restore);
    const proxy = this.system.get(sessionProxyIdOf(sessionId)) as SessionProxyActor | undefined;
    const snap = proxy?.getSnapshot();
    // Its worker came back (or it ended) while the entry was written: nothing to recover.
    if (!proxy || !snap || snap.status !== 'active' || snap.context.reachable) {
      await this.forgetWrittenAhead(sessionId);
      return;
    }
    proxy.send({ type: 'session.recover', restore, atMs: Date.now() });
  }

  /** Whether some worker is online with room for another session. */
  hasRoom(): boolean {
    return allSlots(this.root.getSnapshot().context.placement).some(([, slot]) => slot.online && slot.load < slot.maxSessions);
  }

  /** The session's description as its worker last reported it. */
  descriptionNow(sessionId: string): SessionDescription {
    return this.proxy(sessionId).getSnapshot().context.report.description;
  }

  /**
   * Sessions IDLE now, on a reachable worker, whose files may have changed since their latest
   * checkpoint: their last task (only tasks change a workspace) was not a checkpoint. A scan, like a listing.
   */
  idleSessionsChanged(): string[] {
    const out: string[] = [];
    for (const proxy of this.proxies()) {
      const snap = proxy.getSnapshot();
      const c = snap.context;
      if (!c.reachable || sessionViewOf(snap).state !== 'IDLE') continue;
      // A task ran since the last checkpoint (a restore counts: it changed the files).
      if (c.book.records.length > 0 && !lastTaskIsCheckpoint(c.book)) out.push(c.sessionId);
    }
    return out;
  }

  /** Every session the coordinator knows now (any state, evicted ones too). */
  sessionIds(): Set<string> {
    const ids = new Set(this.proxies().map((p) => p.getSnapshot().context.sessionId));
    for (const id of Object.keys(this.root.getSnapshot().context.evicted)) ids.add(id);
    return ids;
  }

  /** Tasks accepted and not started yet, over every session (codegen_task_queue_depth). */
  queuedTasks(): number {
    let n = 0;
    for (const proxy of this.proxies()) for (const r of liveRecords(proxy.getSnapshot().context.book)) if (r.state === 'queued') n++;
    return n;
  }

  /** The session's tasks queued or running, oldest first. */
  liveTaskIds(sessionId: string): string[] {
    return liveRecords(this.proxy(sessionId).getSnapshot().context.book).map((r) => r.taskId);
  }

  async checkpointSession(sessionId: string, options: { name?: string } = {}): Promise<CheckpointView> {
    return this.checkpoints.checkpoint(sessionId, options.name ?? '');
  }

  async restoreCheckpoint(checkpointId: string, options: { workerId?: string; createNew?: boolean } = {}) {
    return this.checkpoints.restore(checkpointId, options);
  }

  async getCheckpoint(checkpointId: string): Promise<CheckpointView> {
    return this.checkpoints.get(checkpointId);
  }

  async listCheckpoints(sessionId = ''): Promise<CheckpointView[]> {
    if (sessionId) this.sessionViewNow(sessionId);
    return this.checkpoints.list(sessionId);
  }

  async deleteCheckpoint(checkpointId: string): Promise<boolean> {
    return this.checkpoints.delete(checkpointId);
  }

  private get system() {
    return this.root.system;
  }

  /** An unknown session id: gone, or (while the coordinator recovers after a restart) not reported yet. */
  unknownSession(sessionId: string): CodegenError {
    if (this.root.getSnapshot().matches('recovering')) {
      return new CodegenError('UNAVAILABLE', `session_id: ${JSON.stringify(sessionId)} is not known yet: the coordinator restarted recently and is recovering its sessions from the workers' reports; retry in a few seconds`, { retriable: true });
    }
    return new CodegenError('SESSION_NOT_FOUND', `session_id: no session ${JSON.stringify(sessionId)} exists (create one first, or check the id)`);
  }

  unknownTask(taskId: string, sessionId?: string): CodegenError {
    return new CodegenError('TASK_NOT_FOUND', `task_id: no task ${JSON.stringify(taskId)}${sessionId ? ` in session ${sessionId}` : ''} (finished tasks are kept for the session's last 256 tasks)`);
  }

  /** The session's view now (for tenancy's checks, in the same step as the call they guard). */
  sessionViewNow(sessionId: string): SessionView {
    const kept = this.keptNow(sessionId);
    if (kept) return evictedView(kept);
    return this.viewOf(this.proxy(sessionId).getSnapshot());
  }

  /** The session when no worker holds it and its checkpoint does (EVICTED), and no proxy stands for it. */
  private keptNow(sessionId: string): EvictedSession | undefined {
    const kept = this.root.getSnapshot().context.evicted[sessionId];
    return kept && !this.system.get(sessionProxyIdOf(sessionId)) ? kept : undefined;
  }

  /** Every EVICTED session (an entry left while a proxy stands for its id is not one). */
  private keptSessions(): EvictedSession[] {
    return Object.values(this.root.getSnapshot().context.evicted).filter((k) => !this.system.get(sessionProxyIdOf(k.description.sessionId)));
  }

  /**
   * An EVICTED session is made again on the least-loaded worker from its checkpoint, and this
   * resolves once it is READY (with the checkpoint it came from); a session a worker holds
   * resolves at once with ''. One being evicted right now is waited for first.
   */
  async ensureLive(sessionId: string): Promise<string> {
    const current = this.evicting(sessionId);
    if (current) await waitFor(current, (s) => s.status !== 'active' || !s.matches('evicting'), { timeout: this.opts.settleBoundMs }).catch(() => undefined);
    // Being made again from its checkpoint for another call: this one waits for it too.
    const underway = this.rehoming.get(sessionId);
    if (underway) {
      await underway.catch(() => undefined);
      return this.keptNow(sessionId) ? this.ensureLive(sessionId) : (this.rehomedFrom.get(sessionId) ?? '');
    }
    const kept = this.keptNow(sessionId);
    if (!kept) return '';
    const done = this.placeAndSettle(sessionId, (requestId) => ({ type: 'session.rehome', requestId, sessionId, atMs: Date.now() }));
    this.rehoming.set(sessionId, done);
    this.rehomedFrom.set(sessionId, kept.restore.checkpointId);
    try {
      await done;
    } finally {
      this.rehoming.delete(sessionId);
      // Kept a moment for calls that waited on it; the next eviction sets it anew.
      setTimeout(() => this.rehomedFrom.delete(sessionId), 1_000).unref();
    }
    return kept.restore.checkpointId;
  }

  /** Sends a placing event to the root, then waits for the session's proxy to be READY (or to end, refused). */
  private async placeAndSettle(sessionId: string, event: (requestId: string) => CoordinatorEvent): Promise<SessionView> {
    const requestId = newRequestId();
    const placed = askNow(this.root, event(requestId), ['session.placed', 'session.rejected'], (e) => {
      const a = e as CoordinatorEmitted;
      return (a.type === 'session.placed' || a.type === 'session.rejected') && a.requestId === requestId ? a : undefined;
    });
    if (placed.type === 'session.rejected') throw CodegenError.from(placed.error);
    const proxy = this.system.get(sessionProxyIdOf(sessionId)) as SessionProxyActor | undefined;
    if (!proxy) throw new CodegenError('INTERNAL', `session ${sessionId} was placed on worker ${placed.workerId} but has no proxy`);
    const snap = await waitFor(proxy, isSettled, { timeout: this.opts.settleBoundMs }).catch(() => proxy.getSnapshot());
    if (snap.status === 'done') {
      const out = snap.output as SessionProxyOutput;
      throw CodegenError.from(out.error ?? { code: 'INTERNAL', message: `session ${sessionId} ended while it was being made`, details: '', retriable: true });
    }
    if (!isSettled(snap)) throw new CodegenError('INTERNAL', `session ${sessionId} did not settle within ${this.opts.settleBoundMs} ms`);
    return sessionViewOf(snap);
  }

  /** A tenant's sessions (made or being made) and its tasks queued or running: a scan, like a listing. */
  usageOf(tenant: string): TenantUsage {
    let sessions = 0;
    let liveTasks = 0;
    for (const proxy of this.proxies()) {
      const c = proxy.getSnapshot().context;
      if (ownerOf(c.report.description) !== tenant) continue;
      sessions++;
      liveTasks += liveRecords(c.book).length;
    }
    for (const kept of this.keptSessions()) if (ownerOf(kept.description) === tenant) sessions++;
    return { sessions, liveTasks };
  }

  private proxy(sessionId: string): SessionProxyActor {
    if (!sessionId) throw invalidArgument('session_id', 'is required');
    const actor = this.system.get(sessionProxyIdOf(sessionId)) as SessionProxyActor | undefined;
    if (!actor || actor.getSnapshot().status !== 'active') throw this.unknownSession(sessionId);
    return actor;
  }

  async createSession(input: CreateSessionInput): Promise<SessionView> {
    const config: SessionConfig = {
      env_vars: checkEnvVars(input.config?.env_vars ?? {}, 'config.env_vars'),
      allow_network: input.config?.allow_network ?? false,
      language: input.config?.language || 'python',
      ...(input.config?.limits ? { limits: { ...input.config.limits } } : {}),
    };
    if (config.language !== 'python') throw invalidArgument('config.language', `only "python" is supported, not ${JSON.stringify(config.language)}`);
    checkMetadataSize(input.metadata ?? {});
    const workspaceId = input.workspaceId ?? '';
    if (workspaceId && !isSafeId(workspaceId)) throw invalidArgument('workspace_id', 'letters, digits, ".", "_" and "-" only, at most 128');
    const now = Date.now();
    const sessionId = newSessionId();
    const description: SessionDescription = {
      sessionId,
      workspaceId: workspaceId || sessionId,
      userId: input.userId ?? '',
      tenant: input.tenant ?? '',
      config,
      metadata: { ...(input.metadata ?? {}) },
      metadataVersion: 0,
      createdAtMs: now,
      lastActivityMs: now,
      restartedAtMs: 0,
      survivalNote: '',
      idleTimeoutMs: this.opts.idleTimeoutMs,
    };
    return this.placeAndSettle(sessionId, (requestId) => ({ type: 'session.create', requestId, workerId: input.workerId ?? '', description, atMs: now }));
  }

  async destroySession(sessionId: string, options: { force?: boolean; saveCheckpoint?: boolean } = {}): Promise<{ destroyed: boolean; artifacts: string[]; checkpointId: string }> {
    const kept = this.keptNow(sessionId);
    if (kept) {
      // Its files are in its checkpoint already: that is the checkpoint a save asks for.
      const requestId = newRequestId();
      askNow(this.root, { type: 'session.forget', requestId, sessionId }, ['session.forgotten'], (e) => (e as Extract<CoordinatorEmitted, { type: 'session.forgotten' }>).requestId === requestId ? e : undefined);
      return { destroyed: true, artifacts: [], checkpointId: options.saveCheckpoint ? kept.restore.checkpointId : '' };
    }
    let checkpointId = '';
    // The checkpoint first, behind the running task (a refused destroy would keep the session anyway): when it fails, the session stays.
    if (options.saveCheckpoint) {
      const live = this.liveTaskIds(sessionId);
      if (!options.force && live.length > 0) throw new CodegenError('FAILED_PRECONDITION', `session ${sessionId} is BUSY running task ${live[0]}; wait for it, cancel it, or destroy with force`);
      checkpointId = (await this.checkpoints.checkpoint(sessionId, 'destroy')).checkpointId;
    }
    const proxy = this.proxy(sessionId);
    const requestId = newRequestId();
    let refusal: ErrorInfo | undefined;
    const answered = new Promise<ErrorInfo>((resolve) => {
      const sub = proxy.on('destroy.answered', (e: Extract<SessionProxyEmitted, { type: 'destroy.answered' }>) => {
        if (e.requestId !== requestId) return;
        sub.unsubscribe();
        refusal = e.error;
        resolve(e.error);
      });
    });
    proxy.send({ type: 'session.destroy', requestId, force: Boolean(options.force), atMs: Date.now() });
    if (refusal) throw CodegenError.from(refusal);
    const done = waitFor(proxy, (s) => s.status === 'done', { timeout: this.opts.settleBoundMs }).then(
      () => undefined,
      () => (proxy.getSnapshot().status === 'done' ? undefined : { code: 'INTERNAL' as const, message: `session ${sessionId} did not finish shutting down within ${this.opts.settleBoundMs} ms`, details: '', retriable: true }),
    );
    const failure = await Promise.race([done, answered]);
    if (failure) throw CodegenError.from(failure);
    // An evicted entry left over (kept across a restart while its worker still held it, or written
    // ahead of an eviction that did not happen) goes with it.
    if (this.root.getSnapshot().context.evicted[sessionId]) this.root.send({ type: 'session.forget', requestId: newRequestId(), sessionId });
    else await this.opts.checkpoints?.deleteEvicted(sessionId).catch(() => undefined);
    // The artifacts its worker removed (with save_checkpoint, the checkpoint keeps them).
    const artifacts = (proxy.getSnapshot().output as SessionProxyOutput | undefined)?.removedArtifacts ?? [];
    return { destroyed: true, artifacts, checkpointId };
  }

  async getSession(sessionId: string): Promise<SessionView> {
    return this.sessionViewNow(sessionId);
  }

  /** Every session proxy, walking the tree: root → shards → buckets → proxies (a listing is a scan by nature). */
  private proxies(): SessionProxyActor[] {
    const out: SessionProxyActor[] = [];
    for (const supId of Object.keys(this.root.getSnapshot().children)) {
      if (!supId.startsWith('sup:shard:')) continue;
      const shard = this.system.get(shardIdOf(supId.slice('sup:shard:'.length))) as AnyActorRef | undefined;
      if (!shard) continue;
      for (const [bucketId, bucket] of Object.entries(shard.getSnapshot().children as Record<string, AnyActorRef>)) {
        if (!bucketId.startsWith('bucket:') || !bucket) continue;
        for (const proxy of Object.values(bucket.getSnapshot().children as Record<string, AnyActorRef>)) {
          if (proxy && proxy.getSnapshot().status === 'active') out.push(proxy as SessionProxyActor);
        }
      }
    }
    return out;
  }

  /**
   * A view is a pure function of its proxy's snapshot, and a quiet session keeps its snapshot:
   * one view object per snapshot, so front doors can cache what they make of it (ListSessions
   * encodes each session once per change).
   */
  private readonly views = new WeakMap<SessionProxySnapshot, SessionView>();

  private viewOf(snap: SessionProxySnapshot): SessionView {
    let view = this.views.get(snap);
    if (!view) {
      view = Object.freeze(sessionViewOf(snap));
      this.views.set(snap, view);
    }
    return view;
  }

  async listSessions(): Promise<SessionView[]> {
    const kept = this.keptSessions();
    return this.proxies()
      .map((p) => p.getSnapshot())
      .filter((s) => isSettled(s))
      .map((s) => this.viewOf(s))
      .concat(kept.map(evictedView))
      .sort((a, b) => a.createdAtMs - b.createdAtMs || (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0));
  }

  async getMetadata(sessionId: string): Promise<Record<string, string>> {
    const kept = this.keptNow(sessionId);
    if (kept) return { ...kept.description.metadata };
    return { ...this.proxy(sessionId).getSnapshot().context.report.description.metadata };
  }

  async putMetadata(sessionId: string, metadata: Record<string, string>, merge: boolean): Promise<Record<string, string>> {
    if (this.keptNow(sessionId)) await this.ensureLive(sessionId);
    const proxy = this.proxy(sessionId);
    checkMetadataSize(merge ? { ...proxy.getSnapshot().context.report.description.metadata, ...metadata } : metadata);
    const requestId = newRequestId();
    // Answered once the worker saved the change, or when it is lost: the bound only guards against a bug.
    const answer = await askLater(proxy, { type: 'metadata.put', requestId, metadata: { ...metadata }, merge, atMs: Date.now() }, ['metadata.answered'], (e) => {
      const a = e as Extract<SessionProxyEmitted, { type: 'metadata.answered' }>;
      return a.requestId === requestId ? a : undefined;
    }, this.opts.settleBoundMs);
    if (answer.error) throw CodegenError.from(answer.error);
    return { ...answer.metadata };
  }

  async submitTask(input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle> {
    // An evicted session comes back first (transparently: the call only takes longer), and its task's metadata says so.
    const restoredFrom = this.keptNow(input.sessionId) || this.isComingBack(input.sessionId) ? await this.ensureLive(input.sessionId) : '';
    if (restoredFrom) {
      const deliver = onUpdate;
      onUpdate = (u, taskId) => deliver(u.type === 'outcome' && u.outcome.type === 'result' ? { ...u, outcome: { ...u.outcome, metadata: { ...u.outcome.metadata, restoredFromCheckpoint: restoredFrom } } } : u, taskId);
    }
    const proxy = this.proxy(input.sessionId);
    if (input.taskId && !isSafeId(input.taskId)) throw invalidArgument('task_id', 'letters, digits, ".", "_" and "-" only, at most 128');
    const sequence = input.sequence ?? 0;
    if (!Number.isSafeInteger(sequence) || sequence < 0) throw invalidArgument('sequence', 'must be a non-negative integer');
    const constraints: TaskConstraints = {
      timeout_seconds: input.constraints?.timeout_seconds ?? 0,
      max_memory_bytes: input.constraints?.max_memory_bytes ?? 0,
      max_output_bytes: input.constraints?.max_output_bytes ?? 0,
      allow_network: input.constraints?.allow_network ?? false,
    };
    const spec: TaskSpec = { taskId: input.taskId || newTaskId(), sessionId: input.sessionId, call: input.call, constraints, sequence };
    const requestId = newRequestId();
    const followerId = newRequestId();
    const answer = askNow(proxy, { type: 'task.submit', requestId, spec, followerId, atMs: Date.now(), ...(input.origin ? { origin: input.origin } : {}) }, ['task.accepted', 'task.rejected'], (e) => {
      const a = e as SessionProxyEmitted;
      return (a.type === 'task.accepted' || a.type === 'task.rejected') && a.requestId === requestId ? a : undefined;
    });
    if (answer.type === 'task.rejected') throw CodegenError.from(answer.error);
    const taskId = answer.taskId;
    const stop = this.follow(proxy, taskId, onUpdate);
    return {
      taskId,
      duplicate: answer.duplicate,
      detach: stop,
      abandon: () => {
        stop();
        this.liveTask(taskId)?.send({ type: 'task.detached', followerId, atMs: Date.now() });
      },
    };
  }

  /** Streams a task's further updates; a finished task gets its outcome on the next tick. */
  private follow(session: SessionProxyActor, taskId: string, onUpdate: (u: TaskUpdate, taskId: string) => void): () => void {
    let active = true;
    const deliver = (u: TaskUpdate) => {
      if (!active) return;
      if (u.type === 'outcome') active = false;
      try {
        onUpdate(u, taskId);
      } catch {
        // a front door's listener must not break the actor system
      }
    };
    const task = this.liveTask(taskId);
    if (task) {
      const sub = task.on('task.update', (e: TaskProxyEmitted) => {
        deliver(e.update);
        if (e.update.type === 'outcome') sub.unsubscribe();
      });
      return () => {
        active = false;
        sub.unsubscribe();
      };
    }
    const outcome = this.outcomeOf(taskId, findRecord(session.getSnapshot().context.book, { taskId }));
    if (outcome) queueMicrotask(() => deliver({ type: 'outcome', outcome }));
    return () => {
      active = false;
    };
  }

  /** A task's proxy while the task is live (it stops once the task ended). */
  private liveTask(taskId: string): TaskProxyActor | undefined {
    const task = this.system.get(taskProxyIdOf(taskId)) as TaskProxyActor | undefined;
    return task && task.getSnapshot().status === 'active' ? task : undefined;
  }

  private outcomeOf(taskId: string, record: TaskRecord | undefined): TaskOutcome | undefined {
    const stored = this.opts.results.get(taskId);
    if (stored) return stored.outcome;
    return record?.outcome ? fromSummary(record.outcome) : undefined;
  }

  /** The session proxy a task belongs to: live tasks name their session, finished ones the result cache does. */
  private taskSession(taskId: string, sessionId?: string): { proxy: SessionProxyActor; record: TaskRecord } {
    if (!taskId) throw invalidArgument('task_id', 'is required');
    const notFound = () => this.unknownTask(taskId, sessionId);
    let sid = sessionId;
    if (!sid) sid = this.liveTask(taskId)?.getSnapshot().context.sessionId ?? this.opts.results.sessionOf(taskId);
    if (!sid) throw notFound();
    const proxy = this.system.get(sessionProxyIdOf(sid)) as SessionProxyActor | undefined;
    if (!proxy || proxy.getSnapshot().status !== 'active') {
      if (sessionId) throw this.unknownSession(sessionId);
      throw notFound();
    }
    const record = findRecord(proxy.getSnapshot().context.book, { taskId });
    if (!record) throw notFound();
    return { proxy, record };
  }

  async watchTask(taskId: string, sessionId: string | undefined, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<{ detach(): void }> {
    const { proxy } = this.taskSession(taskId, sessionId);
    return { detach: this.follow(proxy, taskId, onUpdate) };
  }

  async cancelTask(taskId: string, reason: string, sessionId?: string) {
    const { proxy } = this.taskSession(taskId, sessionId);
    const requestId = newRequestId();
    const answer = askNow(proxy, { type: 'task.cancel', requestId, taskId, reason: reason || 'cancelled by the client', atMs: Date.now() }, ['cancel.answered'], (e) => {
      const a = e as Extract<SessionProxyEmitted, { type: 'cancel.answered' }>;
      return a.requestId === requestId ? a : undefined;
    });
    if (!answer.cancelled) return { cancelled: false, state: answer.state };
    // The answer is the state after the cancel: the task stops once its worker has killed it, so wait (bounded) for that.
    const outcome = await this.waitTask(taskId, CANCEL_SETTLE_MS);
    return { cancelled: true, state: outcome ? taskStateOf(outcome) : (await this.getTask(taskId, sessionId)).state };
  }

  async getTask(taskId: string, sessionId?: string): Promise<TaskView> {
    const { proxy, record } = this.taskSession(taskId, sessionId);
    const live = this.liveTask(taskId)?.getSnapshot().context;
    const startedAtMs = live?.startedAtMs || record.startedAtMs;
    const state = live ? liveTaskStateOf(live) : record.state;
    const outcome = isFinalTaskState(record.state) ? this.outcomeOf(taskId, record) : undefined;
    const end = record.endedAtMs || Date.now();
    return {
      taskId,
      sessionId: proxy.getSnapshot().context.sessionId,
      tool: record.tool,
      state,
      ...(live?.progress ? { progress: live.progress } : {}),
      elapsedMs: Math.max(0, end - (startedAtMs || record.enqueuedAtMs)),
      ...(outcome ? { outcome } : {}),
    };
  }

  async waitTask(taskId: string, timeoutMs: number): Promise<TaskOutcome | undefined> {
    return waitForOutcome(this, taskId, timeoutMs);
  }

  async listWorkers(): Promise<WorkerView[]> {
    return allSlots(this.root.getSnapshot().context.placement).map(([workerId, slot]) => ({
      workerId,
      state: slot.online ? 'online' : 'offline',
      maxSessions: slot.maxSessions,
      sessions: slot.load,
      isolation: '',
    }));
  }
}
