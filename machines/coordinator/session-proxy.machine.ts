import { assign, enqueueActions, sendParent, setup, type ActorRefFrom, type AnyActorRef, type SnapshotFrom } from 'xstate';
import { errorInfo, type ErrorInfo } from '../domain/errors.js';
import type { CheckpointRestore, SessionReport, SessionState, SessionView } from '../domain/sessions.js';
import { isCheckpointingTool } from '../domain/tools.js';
import { addRecord, emptyTaskBook, findRecord, liveRecords, recordOf, taskIdsOf, taskStateOf, updateRecord, type TaskBook, type TaskSpec, type TaskState } from '../domain/tasks.js';
import { removeFailedChild } from '../supervision.js';
import { taskProxyIdOf, taskProxyMachine, type TaskProxyEndedEvent } from './task-proxy.machine.js';
import { connectionIdOf, type WorkerCommandMessage } from './worker-connection.machine.js';
import { atMsOf } from '../domain/events.js';

/**
 * The coordinator's proxy of one session. The session's worker owns its lifecycle; this proxy
 * mirrors the worker's reports (one on every state change, and the full list at every
 * registration) and supervises the proxies of the session's tasks. It decides what the front
 * doors answer: refusals are guards, deadlines are delays, and answers are emitted events that
 * carry the caller's requestId.
 *
 * While the worker is unreachable the session is not final: its tasks end WORKER_LOST and new
 * ones are refused with UNAVAILABLE; it comes back with its worker. Only the worker's own report
 * ("I no longer hold it") makes it FAILED.
 */
export interface SessionProxyInput {
  workerId: string;
  /** 'create': ask the worker to make it; 'mirror': the worker already holds it (a registration). */
  mode: 'create' | 'mirror';
  report: SessionReport;
  reachable: boolean;
  createTimeoutMs: number;
  destroyTimeoutMs: number;
  atMs: number;
}

export interface SessionProxyContext {
  sessionId: string;
  workerId: string;
  mode: SessionProxyInput['mode'];
  report: SessionReport;
  reachable: boolean;
  unreachableSinceMs: number;
  /** New work is refused: the coordinator is shutting down. */
  draining: boolean;
  book: TaskBook;
  /** The run of the session's actor each live task was sent to (see SessionReport.incarnation). */
  taskIncarnations: Record<string, string>;
  /** Why the proxy ended without a session (a refused create). */
  error: ErrorInfo | null;
  /** Where the session went (another worker adopted it). */
  movedTo: string;
  destroyRequestId: string;
  /** Metadata changes sent to the worker and not yet answered (their request ids): the worker answers once it saved one. */
  metadataAsks: string[];
  createTimeoutMs: number;
  destroyTimeoutMs: number;
  /** The checkpoint an eviction or recovery hands the session over with. */
  handover: CheckpointRestore | null;
  evictRequestId: string;
  /** What the worker's last report of a destroy says it removed from artifacts/. */
  removedArtifacts: string[];
}

export type SessionProxyEvent =
  | { type: 'session.reported'; workerId: string; report: SessionReport; atMs: number }
  | { type: 'session.unreported'; reason: string; atMs: number }
  | { type: 'command.replied'; requestId: string; ok: boolean; error?: ErrorInfo; atMs: number }
  | { type: 'worker.lost'; reason: string; atMs: number }
  | { type: 'worker.online'; atMs: number }
  | { type: 'coordinator.draining' }
  | { type: 'task.submit'; requestId: string; spec: TaskSpec; followerId: string; atMs: number; origin?: string }
  | { type: 'task.cancel'; requestId: string; taskId: string; reason: string; atMs: number }
  | TaskProxyEndedEvent
  | { type: 'metadata.put'; requestId: string; metadata: Record<string, string>; merge: boolean; atMs: number }
  | { type: 'session.destroy'; requestId: string; force: boolean; atMs: number }
  /**
   * Evict: the worker drops the session (its slot freed); the session lives on in `restore`, the
   * checkpoint its task `afterTaskId` took, which must be the session's last task (nothing changed since).
   */
  | { type: 'session.evict'; requestId: string; restore: CheckpointRestore; afterTaskId: string; atMs: number }
  /** Recover: the worker has been unreachable too long; the session is made again elsewhere from `restore`. */
  | { type: 'session.recover'; restore: CheckpointRestore; atMs: number }
  | { type: `xstate.error.actor.${string}`; error: unknown };

/** Answers to the front doors, matched by requestId. */
export type SessionProxyEmitted =
  | { type: 'task.accepted'; requestId: string; taskId: string; duplicate: boolean }
  | { type: 'task.rejected'; requestId: string; error: ErrorInfo }
  | { type: 'cancel.answered'; requestId: string; cancelled: boolean; state: TaskState }
  | { type: 'metadata.answered'; requestId: string; metadata: Record<string, string>; error: ErrorInfo | null }
  | { type: 'destroy.answered'; requestId: string; error: ErrorInfo }
  | { type: 'evict.answered'; requestId: string; error: ErrorInfo | null };

/** Told to the bucket above. */
export type SessionProxyParentEvent =
  | { type: 'session.tombstone'; sessionId: string }
  | { type: 'session.conflict'; sessionId: string; message: string };

export interface SessionProxyOutput {
  sessionId: string;
  /** evicted: its worker dropped it, its checkpoint holds it; rehome: to be made again elsewhere from its checkpoint. */
  end: 'terminated' | 'refused' | 'moved' | 'evicted' | 'rehome';
  error: ErrorInfo | null;
  movedTo: string;
  report: SessionReport;
  handover: CheckpointRestore | null;
  removedArtifacts: string[];
}

export const sessionProxyIdOf = (sessionId: string): string => `session:${sessionId}`;
/** The request ids of the create and destroy commands, so their replies are not taken for another command's. */
export const createCommandIdOf = (sessionId: string): string => `create:${sessionId}`;
export const destroyCommandIdOf = (sessionId: string): string => `destroy:${sessionId}`;


// CHECKPOINTING takes tasks: they queue behind the checkpoint on the worker.
const acceptingStates: ReadonlySet<SessionState> = new Set(['INITIALIZING', 'READY', 'BUSY', 'IDLE', 'CHECKPOINTING']);

/** The session's last task is this successful checkpoint (any id when `taskId` is empty). */
export function lastTaskIsCheckpoint(book: TaskBook, taskId = ''): boolean {
  const r = book.records.at(-1);
  return Boolean(r && r.tool === 'checkpoint' && (!taskId || r.taskId === taskId) && r.outcome?.type === 'result' && r.outcome.status === 'SUCCESS');
}

/** When the session's last client task (not its own checkpoints and restores) ended; 0: none in the book. */
export function lastClientTaskEndOf(book: TaskBook): number {
  let last = 0;
  for (const r of book.records) {
    if (!isCheckpointingTool(r.tool)) last = Math.max(last, r.endedAtMs || r.enqueuedAtMs);
  }
  return last;
}

function command(enqueue: { sendTo: (ref: AnyActorRef, event: { type: 'worker.command'; command: WorkerCommandMessage }) => void }, system: { get(id: string): AnyActorRef | undefined }, workerId: string, message: WorkerCommandMessage): boolean {
  const connection = system.get(connectionIdOf(workerId));
  if (!connection) return false;
  enqueue.sendTo(connection, { type: 'worker.command', command: message });
  return true;
}

/** Every metadata change still waiting for the worker's answer fails with this error. */
function failAsks(context: SessionProxyContext, enqueue: { emit: (e: SessionProxyEmitted) => void; assign: (v: Partial<SessionProxyContext>) => void }, error: ErrorInfo): void {
  if (context.metadataAsks.length === 0) return;
  for (const requestId of context.metadataAsks) enqueue.emit({ type: 'metadata.answered', requestId, metadata: {}, error });
  enqueue.assign({ metadataAsks: [] });
}

export const sessionProxyMachine = setup({
  types: {
    context: {} as SessionProxyContext,
    input: {} as SessionProxyInput,
    events: {} as SessionProxyEvent,
    emitted: {} as SessionProxyEmitted,
    output: {} as SessionProxyOutput,
  },
  actors: {
    taskProxy: taskProxyMachine,
  },
  guards: {
    // Provided by the coordinator: the task id belongs to a finished task of another session it still remembers.
    taskIdTakenElsewhere: (_, _p: { taskId: string; sessionId: string }) => false,
    isMine: ({ context }, p: { workerId: string }) => p.workerId === context.workerId,
    isMetadataReply: ({ context }, p: { requestId: string }) => context.metadataAsks.includes(p.requestId),
    isDestroyReply: ({ context }, p: { requestId: string }) => p.requestId === destroyCommandIdOf(context.sessionId),
    isGone: (_, p: { report: SessionReport }) => p.report.gone,
    isReady: (_, p: { report: SessionReport }) => p.report.state === 'READY' || p.report.state === 'IDLE' || p.report.state === 'BUSY' || p.report.state === 'CHECKPOINTING',
    isFailed: (_, p: { report: SessionReport }) => p.report.state === 'FAILED',
    reachable: ({ context }) => context.reachable,
    hasNoLiveTasks: ({ context }) => liveRecords(context.book).length === 0,
    refusesDestroy: ({ context }, p: { force: boolean }) => !p.force && liveRecords(context.book).length > 0,
    /**
     * Nothing ran since the checkpoint: its task is the session's last one and succeeded, no task is
     * live, and the session is READY or IDLE. Task order, not clocks: the worker's and ours may differ.
     */
    evictable: ({ context }, p: { afterTaskId: string }) =>
      context.reachable &&
      (context.report.state === 'IDLE' || context.report.state === 'READY') &&
      liveRecords(context.book).length === 0 &&
      lastTaskIsCheckpoint(context.book, p.afterTaskId),
    // A task's constraints only narrow the session's permissions.
    widensNetwork: ({ context }, p: { spec: TaskSpec }) => p.spec.constraints.allow_network && !context.report.description.config.allow_network,
  },
  actions: {
    sendCreate: enqueueActions(({ context, enqueue, system }) => {
      command(enqueue, system, context.workerId, { kind: 'create_session', description: context.report.description, requestId: createCommandIdOf(context.sessionId) });
    }),
    sendDestroy: enqueueActions(({ context, enqueue, system }) => {
      command(enqueue, system, context.workerId, { kind: 'destroy_session', sessionId: context.sessionId, requestId: destroyCommandIdOf(context.sessionId) });
    }),
    // The worker owns the session, metadata included: its report is the truth.
    mirror: assign((_, p: { report: SessionReport }) => ({ report: p.report })),
    /**
     * A report that tasks we follow cannot outlive: a new run of the session's actor (it crashed
     * and was restarted, or its worker restarted) ends the tasks sent to an earlier run; FAILED
     * (the worker gave up on the session) ends them all. Tasks sent to this run live on.
     */
    loseTasksOfRestart: enqueueActions(({ context, enqueue }, p: { report: SessionReport; atMs: number }) => {
      const failed = p.report.state === 'FAILED';
      const now = p.report.incarnation;
      const why = failed ? `the session failed: ${p.report.failureReason}` : `the session restarted${p.report.description.survivalNote ? `: ${p.report.description.survivalNote}` : ''}`;
      for (const rec of liveRecords(context.book)) {
        const sentTo = context.taskIncarnations[rec.taskId] ?? '';
        if (failed || (now !== '' && sentTo !== '' && sentTo !== now)) enqueue.sendTo(rec.taskId, { type: 'worker.lost', reason: why, atMs: p.atMs });
      }
    }),
    loseTasks: enqueueActions(({ context, enqueue }, p: { reason: string; atMs: number }) => {
      for (const rec of liveRecords(context.book)) enqueue.sendTo(rec.taskId, { type: 'worker.lost', reason: p.reason, atMs: p.atMs });
    }),
    refuse: enqueueActions(({ context, enqueue, system }, p: { error: ErrorInfo }) => {
      enqueue.assign({ error: p.error });
      // A session the worker made but we gave up on must not linger there.
      if (context.reachable) command(enqueue, system, context.workerId, { kind: 'destroy_session', sessionId: context.sessionId, requestId: destroyCommandIdOf(context.sessionId) });
    }),
    admitTask: enqueueActions(({ context, enqueue, system }, e: Extract<SessionProxyEvent, { type: 'task.submit' }>) => {
      const reject = (error: ErrorInfo) => enqueue.emit({ type: 'task.rejected', requestId: e.requestId, error });
      const first = findRecord(context.book, { taskId: e.spec.taskId, sequence: e.spec.sequence });
      if (first) {
        enqueue.emit({ type: 'task.accepted', requestId: e.requestId, taskId: first.taskId, duplicate: true });
        return;
      }
      if (system.get(taskProxyIdOf(e.spec.taskId))) {
        return reject(errorInfo('INVALID_ARGUMENT', `task_id: ${e.spec.taskId} is already used by a task of another session`));
      }
      if (context.draining) return reject(errorInfo('UNAVAILABLE', 'the coordinator is shutting down; run the task again once it is back'));
      if (!context.reachable) {
        return reject(errorInfo('UNAVAILABLE', `session ${context.sessionId} is on worker ${context.workerId}, which is unreachable${context.unreachableSinceMs ? ` since ${new Date(context.unreachableSinceMs).toISOString()}` : ''}; the session comes back when its worker does: retry then`));
      }
      const state = context.report.state;
      if (!acceptingStates.has(state)) {
        const reason = context.report.failureReason;
        return reject(errorInfo('FAILED_PRECONDITION', `session ${context.sessionId} is ${state}${reason ? ` (${reason})` : ''} and takes no tasks; create a new session`));
      }
      if (!system.get(connectionIdOf(context.workerId))) return reject(errorInfo('UNAVAILABLE', `worker ${context.workerId} is not connected; retry shortly`));
      enqueue.assign({
        book: addRecord(context.book, { taskId: e.spec.taskId, tool: e.spec.call.tool, sequence: e.spec.sequence, state: 'queued', enqueuedAtMs: e.atMs, startedAtMs: 0, endedAtMs: 0, progress: null, outcome: null }),
        taskIncarnations: { ...context.taskIncarnations, [e.spec.taskId]: context.report.incarnation },
      });
      enqueue.spawnChild('taskProxy', {
        id: e.spec.taskId,
        systemId: taskProxyIdOf(e.spec.taskId),
        input: { taskId: e.spec.taskId, sessionId: context.sessionId, workerId: context.workerId, tool: e.spec.call.tool, enqueuedAtMs: e.atMs, ownerId: e.followerId, origin: e.origin ?? '' },
      });
      // The whole spec goes to the worker from here: no context keeps the task's payload.
      command(enqueue, system, context.workerId, { kind: 'assign_task', spec: e.spec });
      enqueue.emit({ type: 'task.accepted', requestId: e.requestId, taskId: e.spec.taskId, duplicate: false });
    }),
    cancelTask: enqueueActions(({ context, enqueue }, e: Extract<SessionProxyEvent, { type: 'task.cancel' }>) => {
      const rec = recordOf(context.book, e.taskId);
      if (!rec || rec.outcome) {
        enqueue.emit({ type: 'cancel.answered', requestId: e.requestId, cancelled: false, state: rec?.state ?? 'errored' });
        return;
      }
      enqueue.sendTo(e.taskId, { type: 'task.cancel', reason: e.reason || 'cancelled by the client', atMs: e.atMs });
      enqueue.emit({ type: 'cancel.answered', requestId: e.requestId, cancelled: true, state: rec.state });
    }),
    recordTaskEnd: enqueueActions(({ context, enqueue }, e: TaskProxyEndedEvent) => {
      const taskIncarnations = { ...context.taskIncarnations };
      delete taskIncarnations[e.taskId];
      enqueue.assign({ book: updateRecord(context.book, e.taskId, { state: taskStateOf(e.outcome), endedAtMs: e.atMs, outcome: e.outcome }), taskIncarnations });
      enqueue.stopChild(e.taskId);
    }),
    // The change is the worker's to apply (in arrival order) and save; the answer waits for its reply.
    putMetadata: enqueueActions(({ context, enqueue, system }, e: Extract<SessionProxyEvent, { type: 'metadata.put' }>) => {
      if (!command(enqueue, system, context.workerId, { kind: 'put_metadata', requestId: e.requestId, sessionId: context.sessionId, metadata: e.metadata, merge: e.merge })) {
        enqueue.emit({ type: 'metadata.answered', requestId: e.requestId, metadata: {}, error: errorInfo('UNAVAILABLE', `worker ${context.workerId} is not connected; retry shortly`) });
        return;
      }
      enqueue.assign({ metadataAsks: [...context.metadataAsks, e.requestId] });
    }),
    // The worker's report of the change came before its reply (one ordered stream): the metadata here has it.
    answerMetadata: enqueueActions(({ context, enqueue }, e: Extract<SessionProxyEvent, { type: 'command.replied' }>) => {
      enqueue.assign({ metadataAsks: context.metadataAsks.filter((r) => r !== e.requestId) });
      const error = e.ok ? null : (e.error ?? errorInfo('INTERNAL', 'the worker could not change the metadata'));
      enqueue.emit({ type: 'metadata.answered', requestId: e.requestId, metadata: error ? {} : { ...context.report.description.metadata }, error });
    }),
    failMetadataAsks: enqueueActions(({ context, enqueue }, p: { error: ErrorInfo }) => failAsks(context, enqueue, p.error)),
    markLost: enqueueActions(({ context, enqueue }, p: { atMs: number }) => {
      // An event raised inside the tree (a crashed connection actor) has no time: the last one known stands in.
      enqueue.assign({ reachable: false, unreachableSinceMs: context.unreachableSinceMs || p.atMs || Math.max(1, context.report.description.lastActivityMs) });
      failAsks(context, enqueue, errorInfo('UNAVAILABLE', `worker ${context.workerId} was lost before it confirmed the metadata change of session ${context.sessionId}; it may or may not have been saved: read the session and change it again`));
    }),
    markOnline: assign({ reachable: true, unreachableSinceMs: 0 }),
    answerDestroy: enqueueActions(({ enqueue }, p: { requestId: string; error: ErrorInfo }) => enqueue.emit({ type: 'destroy.answered', requestId: p.requestId, error: p.error })),
    rejectTaskWith: enqueueActions(({ enqueue }, p: { requestId: string; error: ErrorInfo }) => enqueue.emit({ type: 'task.rejected', requestId: p.requestId, error: p.error })),
  },
  delays: {
    createTimeout: ({ context }) => context.createTimeoutMs,
    destroyTimeout: ({ context }) => context.destroyTimeoutMs,
  },
}).createMachine({
  id: 'sessionProxy',
  context: ({ input }) => ({
    sessionId: input.report.description.sessionId,
    workerId: input.workerId,
    mode: input.mode,
    report: input.report,
    reachable: input.reachable,
    unreachableSinceMs: input.reachable ? 0 : input.atMs,
    draining: false,
    book: emptyTaskBook(),
    taskIncarnations: {},
    error: null,
    movedTo: '',
    destroyRequestId: '',
    metadataAsks: [],
    createTimeoutMs: input.createTimeoutMs,
    destroyTimeoutMs: input.destroyTimeoutMs,
    // A session made again from its checkpoint (evicted, recovered) hands it back if that fails, so it is not lost.
    handover: input.report.description.restoreFrom ?? null,
    evictRequestId: '',
    removedArtifacts: [],
  }),
  initial: 'starting',
  on: {
    'task.ended': { actions: { type: 'recordTaskEnd', params: ({ event }) => event } },
    'coordinator.draining': { actions: assign({ draining: true }) },
    'metadata.put': {
      actions: enqueueActions(({ context, enqueue, event }) =>
        enqueue.emit({ type: 'metadata.answered', requestId: event.requestId, metadata: {}, error: errorInfo('FAILED_PRECONDITION', `session ${context.sessionId} is being made or shut down; its metadata cannot change now`) }),
      ),
    },
    'command.replied': { guard: { type: 'isMetadataReply', params: ({ event }) => event }, actions: { type: 'answerMetadata', params: ({ event }) => event } },
    'task.cancel': { actions: { type: 'cancelTask', params: ({ event }) => event } },
    // A crashed task proxy ends as INTERNAL through the normal path, exactly once.
    'xstate.error.actor.*': {
      actions: enqueueActions(({ context, enqueue, event, self }) => {
        const taskId = removeFailedChild(event, self, enqueue);
        const rec = recordOf(context.book, taskId);
        if (!rec || rec.outcome) return;
        enqueue.raise({ type: 'task.ended', taskId, outcome: { type: 'error', error: errorInfo('INTERNAL', `the coordinator's proxy of task ${taskId} crashed`) }, atMs: rec.enqueuedAtMs });
      }),
    },
  },
  states: {
    // A mirrored session (its worker listed it) is never created again, whatever state it is in.
    starting: {
      always: [{ guard: ({ context }) => context.mode === 'create', target: 'creating' }, { target: 'active' }],
    },
    creating: {
      entry: 'sendCreate',
      after: {
        createTimeout: {
          target: 'refused',
          actions: { type: 'refuse', params: ({ context }) => ({ error: errorInfo('UNAVAILABLE', `worker ${context.workerId} did not make session ${context.sessionId} ready within ${context.createTimeoutMs} ms`) }) },
        },
      },
      on: {
        'session.reported': [
          { guard: { type: 'isGone', params: ({ event }) => event }, target: 'refused', actions: assign({ error: ({ event }) => errorInfo('INTERNAL', `the worker dropped the session while making it: ${event.report.failureReason || 'no reason given'}`) }) },
          { guard: { type: 'isFailed', params: ({ event }) => event }, target: 'refused', actions: [{ type: 'mirror', params: ({ event }) => event }, { type: 'refuse', params: ({ event }) => ({ error: errorInfo('INTERNAL', `session could not be created: ${event.report.failureReason}`) }) }] },
          { guard: { type: 'isReady', params: ({ event }) => event }, target: 'active', actions: [{ type: 'mirror', params: ({ event }) => event }, assign({ handover: null })] },
          { actions: { type: 'mirror', params: ({ event }) => event } },
        ],
        'command.replied': { guard: ({ context, event }) => !event.ok && event.requestId === createCommandIdOf(context.sessionId), target: 'refused', actions: assign({ error: ({ event }) => event.error ?? errorInfo('INTERNAL', 'the worker refused the session') }) },
        'worker.lost': { target: 'refused', actions: assign({ error: ({ context, event }) => errorInfo('UNAVAILABLE', `worker ${context.workerId} was lost before session ${context.sessionId} was ready (${event.reason}); try again`) }) },
        // The worker registered again without it: the create never reached it.
        'session.unreported': { target: 'refused', actions: assign({ error: ({ context }) => errorInfo('UNAVAILABLE', `worker ${context.workerId} restarted before session ${context.sessionId} was ready; try again`) }) },
        'task.submit': { actions: { type: 'rejectTaskWith', params: ({ context, event }) => ({ requestId: event.requestId, error: errorInfo('UNAVAILABLE', `session ${context.sessionId} is still being made; retry shortly`) }) } },
        'session.destroy': { target: 'destroying', actions: assign({ destroyRequestId: ({ event }) => event.requestId }) },
        'worker.online': { actions: 'markOnline' },
      },
    },
    active: {
      on: {
        'session.reported': [
          // Another worker adopted the session (it holds its lock now): it moves there.
          {
            guard: ({ context, event }) => event.workerId !== context.workerId && !context.reachable,
            target: 'ending',
            actions: [
              assign({ movedTo: ({ event }) => event.workerId }),
              { type: 'mirror', params: ({ event }) => event },
              { type: 'loseTasks', params: ({ event }) => ({ reason: `the session moved to worker ${event.workerId}`, atMs: event.atMs }) },
            ],
          },
          {
            guard: ({ context, event }) => event.workerId !== context.workerId,
            actions: sendParent(({ context, event }): SessionProxyParentEvent => ({ type: 'session.conflict', sessionId: context.sessionId, message: `worker ${event.workerId} reported session ${context.sessionId}, which worker ${context.workerId} holds and is connected; the report was ignored` })),
          },
          { guard: { type: 'isGone', params: ({ event }) => event }, target: 'ending', actions: { type: 'loseTasks', params: ({ event }) => ({ reason: 'the worker no longer holds the session', atMs: event.atMs }) } },
          // Still held (an eviction the worker never carried out): it stays here.
          { actions: [{ type: 'loseTasksOfRestart', params: ({ event }) => event }, { type: 'mirror', params: ({ event }) => event }, assign({ handover: ({ context, event }) => (event.report.removing ? context.handover : null) })] },
        ],
        'session.unreported': [
          // Its eviction went through while the worker was away: it is kept in its checkpoint.
          { guard: ({ context }) => context.handover !== null, target: 'ending' },
          // It was being destroyed: the destroy finished while its last report (gone) could not reach us.
          { guard: ({ context }) => context.report.removing === true, target: 'ending', actions: { type: 'loseTasks', params: ({ event }) => ({ reason: 'the session was destroyed', atMs: event.atMs }) } },
          {
            actions: [
              { type: 'loseTasks', params: ({ event }) => ({ reason: event.reason, atMs: event.atMs }) },
              { type: 'failMetadataAsks', params: ({ context }) => ({ error: errorInfo('UNAVAILABLE', `worker ${context.workerId} no longer holds session ${context.sessionId}`) }) },
              assign({ report: ({ context, event }) => ({ ...context.report, state: 'FAILED' as const, failureReason: event.reason }) }),
            ],
          },
        ],
        'worker.lost': { actions: [{ type: 'markLost', params: ({ event }) => event }, { type: 'loseTasks', params: ({ context, event }) => ({ reason: `worker ${context.workerId}: ${event.reason}`, atMs: event.atMs }) }] },
        'worker.online': { actions: 'markOnline' },
        'task.submit': [
          {
            guard: { type: 'taskIdTakenElsewhere', params: ({ context, event }) => ({ taskId: event.spec.taskId, sessionId: context.sessionId }) },
            actions: { type: 'rejectTaskWith', params: ({ event }) => ({ requestId: event.requestId, error: errorInfo('INVALID_ARGUMENT', `task_id: ${event.spec.taskId} is already used by a task of another session`) }) },
          },
          {
            guard: { type: 'widensNetwork', params: ({ event }) => event },
            actions: {
              type: 'rejectTaskWith',
              params: ({ event }) => ({ requestId: event.requestId, error: errorInfo('PERMISSION_DENIED', 'constraints.allow_network: this session was created without network; a task can only narrow its permissions, never widen them (create a session with allow_network)') }),
            },
          },
          { actions: { type: 'admitTask', params: ({ event }) => event } },
        ],
        'metadata.put': [
          { guard: 'reachable', actions: { type: 'putMetadata', params: ({ event }) => event } },
          {
            actions: enqueueActions(({ context, enqueue, event }) =>
              enqueue.emit({ type: 'metadata.answered', requestId: event.requestId, metadata: {}, error: errorInfo('UNAVAILABLE', `worker ${context.workerId} of session ${context.sessionId} is unreachable; retry when it is back`) }),
            ),
          },
        ],
        'session.destroy': [
          {
            guard: { type: 'refusesDestroy', params: ({ event }) => event },
            actions: {
              type: 'answerDestroy',
              params: ({ context, event }) => ({ requestId: event.requestId, error: errorInfo('FAILED_PRECONDITION', `session ${context.sessionId} is BUSY running task ${liveRecords(context.book)[0]?.taskId}; wait for it, cancel it, or destroy with force`) }),
            },
          },
          { target: 'destroying', actions: assign({ destroyRequestId: ({ event }) => event.requestId }) },
        ],
        'session.evict': [
          { guard: { type: 'evictable', params: ({ event }) => event }, target: 'evicting', actions: assign({ handover: ({ event }) => event.restore, evictRequestId: ({ event }) => event.requestId }) },
          {
            actions: enqueueActions(({ context, enqueue, event }) =>
              enqueue.emit({ type: 'evict.answered', requestId: event.requestId, error: errorInfo('FAILED_PRECONDITION', `session ${context.sessionId} is ${context.report.state}${liveRecords(context.book).length ? ' with tasks' : ''} or changed since the checkpoint; not evicted`) }),
            ),
          },
        ],
        // Only a session whose worker is away is made again elsewhere (the worker, if it comes back, drops its copy).
        'session.recover': { guard: ({ context }) => !context.reachable, target: 'ending', actions: assign({ handover: ({ event }) => event.restore }) },
      },
    },
    // The worker drops the session; the coordinator keeps it as EVICTED, to be made again from its checkpoint.
    evicting: {
      entry: 'sendDestroy',
      after: {
        // The destroy is on its way and cannot be taken back: the caller hears why it waits no more,
        // and the proxy keeps waiting for the worker's answer (or its loss), the handover kept.
        destroyTimeout: {
          actions: enqueueActions(({ context, enqueue }) => enqueue.emit({ type: 'evict.answered', requestId: context.evictRequestId, error: errorInfo('UNAVAILABLE', `worker ${context.workerId} did not drop session ${context.sessionId} within ${context.destroyTimeoutMs} ms; it is still being evicted`) })),
        },
      },
      on: {
        'command.replied': [
          { guard: ({ context, event }) => event.requestId === destroyCommandIdOf(context.sessionId) && event.ok, target: 'done' },
          {
            guard: { type: 'isDestroyReply', params: ({ event }) => event },
            target: 'active',
            actions: [
              enqueueActions(({ context, enqueue, event }) => enqueue.emit({ type: 'evict.answered', requestId: context.evictRequestId, error: event.error ?? errorInfo('INTERNAL', 'the worker could not drop the session') })),
              assign({ handover: null }),
            ],
          },
        ],
        'session.reported': [{ guard: { type: 'isGone', params: ({ event }) => event }, target: 'done' }, { actions: { type: 'mirror', params: ({ event }) => event } }],
        // The handover stays: if the worker comes back without the session (the destroy went through), it is evicted after all.
        'worker.lost': {
          target: 'active',
          actions: [
            { type: 'markLost', params: ({ event }) => event },
            enqueueActions(({ context, enqueue }) => enqueue.emit({ type: 'evict.answered', requestId: context.evictRequestId, error: errorInfo('UNAVAILABLE', `worker ${context.workerId} was lost during the eviction`) })),
          ],
        },
        'session.evict': {
          actions: enqueueActions(({ context, enqueue, event }) => enqueue.emit({ type: 'evict.answered', requestId: event.requestId, error: errorInfo('FAILED_PRECONDITION', `session ${context.sessionId} is being evicted already`) })),
        },
        'task.submit': { actions: { type: 'rejectTaskWith', params: ({ context, event }) => ({ requestId: event.requestId, error: errorInfo('UNAVAILABLE', `session ${context.sessionId} is being evicted; send the task again and it restores the session`) }) } },
        'session.destroy': { actions: { type: 'answerDestroy', params: ({ context, event }) => ({ requestId: event.requestId, error: errorInfo('UNAVAILABLE', `session ${context.sessionId} is being evicted; destroy it again in a moment`) }) } },
      },
    },
    destroying: {
      entry: enqueueActions(({ context, enqueue }) => {
        // A destroy asked for ends the session for good, whatever eviction was left over.
        if (context.handover) enqueue.assign({ handover: null });
        if (context.reachable) enqueue('sendDestroy');
        // Its worker is away: it destroys the session when it comes back (the shard remembers).
        else enqueue.sendParent({ type: 'session.tombstone', sessionId: context.sessionId } satisfies SessionProxyParentEvent);
      }),
      always: { guard: ({ context }) => !context.reachable, target: 'ending', actions: { type: 'loseTasks', params: ({ event }) => ({ reason: 'the session was destroyed', atMs: atMsOf(event) }) } },
      after: {
        destroyTimeout: {
          target: 'active',
          actions: { type: 'answerDestroy', params: ({ context }) => ({ requestId: context.destroyRequestId, error: errorInfo('INTERNAL', `session ${context.sessionId} did not finish shutting down within ${context.destroyTimeoutMs} ms; it is still DRAINING`) }) },
        },
      },
      on: {
        'command.replied': [
          { guard: ({ context, event }) => event.requestId === destroyCommandIdOf(context.sessionId) && event.ok, target: 'ending' },
          {
            guard: { type: 'isDestroyReply', params: ({ event }) => event },
            target: 'active',
            actions: { type: 'answerDestroy', params: ({ context, event }) => ({ requestId: context.destroyRequestId, error: event.error ?? errorInfo('INTERNAL', 'the worker could not destroy the session') }) },
          },
        ],
        'session.reported': [
          { guard: { type: 'isGone', params: ({ event }) => event }, target: 'ending', actions: assign({ removedArtifacts: ({ event }) => event.report.removedArtifacts ?? [] }) },
          // Its actor restarted during the destroy and forgot it: its tasks are gone; ask again.
          {
            guard: ({ context, event }) => event.report.incarnation !== '' && event.report.incarnation !== context.report.incarnation,
            actions: [{ type: 'loseTasksOfRestart', params: ({ event }) => event }, { type: 'mirror', params: ({ event }) => event }, 'sendDestroy'],
          },
          { actions: { type: 'mirror', params: ({ event }) => event } },
        ],
        'worker.lost': { target: 'ending', actions: [{ type: 'markLost', params: ({ event }) => event }, { type: 'loseTasks', params: ({ event }) => ({ reason: event.reason, atMs: event.atMs }) }, sendParent(({ context }): SessionProxyParentEvent => ({ type: 'session.tombstone', sessionId: context.sessionId }))] },
        'task.submit': { actions: { type: 'rejectTaskWith', params: ({ context, event }) => ({ requestId: event.requestId, error: errorInfo('FAILED_PRECONDITION', `session ${context.sessionId} is shutting down; create a new session`) }) } },
        'session.destroy': { actions: assign({ destroyRequestId: ({ event }) => event.requestId }) },
      },
    },
    // The worker no longer holds the session: what it sent before this has arrived (one ordered stream), so a
    // task still live here will never get an outcome from it. Every follower gets one before the proxy goes.
    ending: {
      entry: [
        { type: 'loseTasks', params: ({ event }) => ({ reason: 'the worker no longer holds the session', atMs: atMsOf(event) }) },
        { type: 'failMetadataAsks', params: ({ context }) => ({ error: errorInfo('FAILED_PRECONDITION', `session ${context.sessionId} ended before the metadata change was confirmed`) }) },
      ],
      always: { guard: 'hasNoLiveTasks', target: 'done' },
      on: {
        'worker.lost': { actions: [{ type: 'markLost', params: ({ event }) => event }, { type: 'loseTasks', params: ({ context, event }) => ({ reason: `worker ${context.workerId}: ${event.reason}`, atMs: event.atMs }) }] },
        'task.submit': { actions: { type: 'rejectTaskWith', params: ({ context, event }) => ({ requestId: event.requestId, error: errorInfo('FAILED_PRECONDITION', `session ${context.sessionId} is shutting down; create a new session`) }) } },
      },
    },
    refused: { type: 'final' },
    done: { type: 'final' },
  },
  output: ({ context }) => ({
    sessionId: context.sessionId,
    end: context.error ? 'refused' : context.movedTo ? 'moved' : context.handover ? (context.reachable ? 'evicted' : 'rehome') : 'terminated',
    error: context.error,
    movedTo: context.movedTo,
    report: context.report,
    handover: context.handover,
    removedArtifacts: context.removedArtifacts,
  }),
});

export type SessionProxyActor = ActorRefFrom<typeof sessionProxyMachine>;
export type SessionProxySnapshot = SnapshotFrom<typeof sessionProxyMachine>;

/** What the front doors show of a session proxy. */
export function sessionViewOf(snap: SessionProxySnapshot): SessionView {
  const c = snap.context;
  const d = c.report.description;
  // BUSY with no task here is stale (the result went out before the worker's READY report); while the
  // worker is away the session comes back READY, whatever it last said (BUSY, or DRAINING for a worker shutdown).
  const live = liveRecords(c.book).length;
  const running = c.report.state === 'BUSY' || c.report.state === 'CHECKPOINTING';
  const stale = (running && live === 0) || (!c.reachable && (running || c.report.state === 'DRAINING'));
  const reported = stale ? 'READY' : c.report.state;
  const state: SessionState = snap.status === 'done' ? 'TERMINATED' : snap.matches('destroying') || snap.matches('ending') ? 'DRAINING' : reported;
  return {
    sessionId: c.sessionId,
    workerId: c.workerId,
    workspaceId: d.workspaceId,
    userId: d.userId,
    tenant: d.tenant,
    workspacePath: c.report.workspacePath,
    state,
    createdAtMs: d.createdAtMs,
    lastActivityMs: d.lastActivityMs,
    activeTasks: live,
    recentTasks: taskIdsOf(c.book).slice(-20),
    metadata: { ...d.metadata },
    failureReason: c.report.failureReason,
    restartedAtMs: d.restartedAtMs,
    survivalNote: d.survivalNote,
    unreachableSinceMs: c.unreachableSinceMs,
    usage: c.report.usage ?? { memoryBytes: 0, cpuMillicores: 0, diskBytes: 0 },
    limits: c.report.limits ?? { memoryBytes: 0, maxProcesses: 0, cpuSecondsPerTask: 0, cpuMillicores: 0, diskBytes: 0 },
  };
}

/** Whether the proxy has come to a session the front doors can use (or ended without one). */
export const isSettled = (snap: SessionProxySnapshot): boolean => snap.status !== 'active' || !snap.matches('creating');
