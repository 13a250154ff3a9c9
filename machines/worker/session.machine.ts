import { assign, enqueueActions, sendParent, setup, type ActorRefFrom, type CallbackActorLogic, type PromiseActorLogic, type SnapshotFrom } from 'xstate';
import { errorInfo, type ErrorInfo } from '../domain/errors.js';
import type { SessionDescription, SessionReport, SessionState } from '../domain/sessions.js';
import { addRecord, emptyTaskBook, findRecord, recordOf, updateRecord, taskStateOf, type TaskBook, type TaskOutcomeSummary, type TaskSpec } from '../domain/tasks.js';
import { supervisorIdOf, supervisorMachine, type Supervision, type SupervisorInput, type SupervisorParentEvent } from '../supervisor.machine.js';
import { reasonOf, removeFailedChild, type BackoffPolicy, type RestartIntensity } from '../supervision.js';
import { taskMachine, type TaskEndedEvent } from './task.machine.js';
import { atMsOf } from '../domain/events.js';
import { isCheckpointingTool } from '../domain/tools.js';

/**
 * The session statechart of the user's guide, on the worker that owns the session:
 *   INITIALIZING → READY (workspace and venv ready) → BUSY (a task) → READY (it ended, also when
 *   the user's code exited non-zero) → IDLE (idle timeout) → READY (a task); BUSY → FAILED (the
 *   execution machinery broke); destroy → DRAINING → TERMINATED. READY → CHECKPOINTING (the
 *   session's own checkpoint or restore, queued as a task like any other) → READY.
 * Every state change is reported to the parent (and from there to the coordinator, which keeps a
 * proxy of the session). The description is saved beside the workspace on every change, so a
 * restarted worker, or a restarted session actor, brings the session back.
 */
export interface SessionInput {
  description: SessionDescription;
  workerId: string;
  drainTimeoutMs: number;
  /** 'create': made by a command now; 'adopt': found on disk when the worker started. */
  origin: 'create' | 'adopt';
  /** Added by the supervisor: restarts > 0 means the previous session actor crashed. */
  supervision?: Supervision;
  /** Test hook (CODEGEN_TEST_FAULTS): a `session.fault` event crashes the actor. */
  faults?: boolean;
  /** The worker process (random per start): with the restart count, names this run of the actor in its reports. */
  instanceId?: string;
  /** The session's warm interpreter, as a supervised child (none: every task starts a fresh interpreter). */
  warm?: { intensity: RestartIntensity; backoff: BackoffPolicy; seed: number };
  /** The session's stateful interpreter (python_exec), as a supervised child (none: python_exec answers UNAVAILABLE). */
  interpreter?: { intensity: RestartIntensity; backoff: BackoffPolicy; seed: number };
}

export interface PreparedWorkspace {
  workspacePath: string;
  /** The description as it is on disk now (an adopted or restarted session keeps its own). */
  description: SessionDescription;
  atMs: number;
}

export interface SessionContext {
  description: SessionDescription;
  workerId: string;
  origin: SessionInput['origin'];
  restarts: number;
  lastExit: string;
  incarnation: string;
  drainTimeoutMs: number;
  faults: boolean;
  warm: SessionInput['warm'] | null;
  interpreter: SessionInput['interpreter'] | null;
  workspacePath: string;
  /** Task ids waiting to run, in arrival order. */
  queue: string[];
  /** The task running now. */
  current: string | null;
  book: TaskBook;
  failureReason: string;
  /** false when draining for a worker shutdown: the files stay for the next start. */
  removeWorkspace: boolean;
  /** What a destroy removed from artifacts/ (listed just before the files went), for its last report. */
  removedArtifacts: string[];
  /** Metadata changes (their request ids) applied here but not yet handed to a save. */
  metadataAsks: string[];
  /** Metadata changes that came while preparing: applied, in order, to the description on disk. */
  earlyMetadata: MetadataChange[];
}

export interface MetadataChange {
  requestId: string;
  metadata: Record<string, string>;
  merge: boolean;
}

/** Changes apply in the order they arrive (one ordered stream); the version counts them. */
const withMetadata = (d: SessionDescription, c: MetadataChange): SessionDescription => ({
  ...d,
  metadata: c.merge ? { ...d.metadata, ...c.metadata } : { ...c.metadata },
  metadataVersion: d.metadataVersion + 1,
});

export type SessionEvent =
  | { type: 'task.submit'; spec: TaskSpec; atMs: number }
  | { type: 'task.cancel'; taskId: string; reason: string; atMs: number }
  | TaskEndedEvent
  | { type: 'session.destroy'; atMs: number }
  | { type: 'session.drain'; atMs: number }
  /** The coordinator has a new registration of this worker: tasks it sent before are not followed any more. */
  | { type: 'tasks.orphan'; reason: string; atMs: number }
  | { type: 'metadata.put'; requestId: string; metadata: Record<string, string>; merge: boolean; atMs: number }
  /** From the writer: the description with these metadata changes is on disk (or could not be written). */
  | { type: 'description.saved'; requestIds: string[]; error: ErrorInfo | null }
  | { type: 'session.fault' }
  | SupervisorParentEvent
  | { type: `xstate.done.actor.${string}`; output?: unknown }
  | { type: `xstate.error.actor.${string}`; error: unknown };

/** Facts the session tells its parent (through its supervisor). */
export type SessionParentEvent =
  | { type: 'session.changed'; report: SessionReport }
  | { type: 'task.refused'; sessionId: string; taskId: string; error: ErrorInfo }
  /** These metadata changes are on disk (error: they could not be written). */
  | { type: 'metadata.saved'; sessionId: string; requestIds: string[]; error: ErrorInfo | null };

/** What the session asks its writer; it answers `description.saved` when requestIds is not empty. */
export interface DescriptionSave {
  type: 'description.save';
  description: SessionDescription;
  requestIds: string[];
}

export const sessionChildId = (sessionId: string): string => `session:${sessionId}`;
/** A task's actor among the session's children: the prefix keeps a task id (any safe id, say `persist`) from naming another child. */
export const taskChildId = (taskId: string): string => `task:${taskId}`;
export const warmChildId = (sessionId: string): string => `warm:${sessionId}`;
export const interpreterChildId = (sessionId: string): string => `interpreter:${sessionId}`;

/** A transient helper of the session under its own supervisor: restarted when it breaks, within its intensity. */
const helperSupervision = (childId: string, sessionId: string, h: NonNullable<SessionInput['warm']>): SupervisorInput => ({
  childId,
  restart: 'transient',
  intensity: h.intensity,
  backoff: h.backoff,
  shutdownTimeoutMs: 5_000,
  stopEvent: null,
  childInput: { sessionId },
  seed: h.seed,
});

const NEVER = 2 ** 31 - 1;

/**
 * Outcomes that mean the execution machinery broke: BUSY → FAILED. A tool's own error, whatever its
 * code (a bad path, a full disk, an INTERNAL surprise), ends its task and leaves the session usable;
 * a task actor that crashed (see 'xstate.error.actor.*', which marks its end `broken`) does not.
 */
const machineryFailures = new Set(['WORKER_LOST']);

const survivalNoteOf = (ctx: Pick<SessionContext, 'origin' | 'restarts' | 'lastExit'>): string => {
  if (ctx.restarts > 0) return `the session's actor ${ctx.lastExit || 'crashed'} and was restarted from its description: files and installed packages kept; the interpreter's memory and the tasks it was running were lost`;
  if (ctx.origin === 'adopt') return "its worker restarted: files and installed packages kept; the interpreter's memory and the tasks that were running were lost (they ended WORKER_LOST)";
  return '';
};

const reportOf = (ctx: SessionContext, state: SessionState, gone = false): SessionReport => ({
  description: ctx.description,
  state,
  workspacePath: ctx.workspacePath,
  failureReason: ctx.failureReason,
  gone,
  incarnation: ctx.incarnation,
  ...(state === 'DRAINING' && ctx.removeWorkspace ? { removing: true } : {}),
  ...(gone && ctx.removedArtifacts.length > 0 ? { removedArtifacts: ctx.removedArtifacts } : {}),
});

/** Which running state the current task makes: CHECKPOINTING for the session's own checkpoint or restore. */
const runningStateOf = (ctx: SessionContext): 'BUSY' | 'CHECKPOINTING' => (ctx.current && isCheckpointingTool(recordOf(ctx.book, ctx.current)?.tool ?? '') ? 'CHECKPOINTING' : 'BUSY');

const liveTaskIds = (ctx: SessionContext): string[] => (ctx.current ? [ctx.current, ...ctx.queue] : [...ctx.queue]);
const touched = (ctx: SessionContext, atMs: number): SessionDescription => ({ ...ctx.description, lastActivityMs: Math.max(ctx.description.lastActivityMs, atMs) });

/** A task this session will not run, told to the parent (and from there to the task's proxy). */
const refusal = (context: SessionContext, taskId: string, message: string): SessionParentEvent => ({
  type: 'task.refused',
  sessionId: context.description.sessionId,
  taskId,
  error: errorInfo('FAILED_PRECONDITION', message),
});

/** Hands the description to the writer, with the metadata changes it carries (answered once it is on disk). */
function saveDescription(
  context: SessionContext,
  enqueue: { sendTo: (to: string, event: DescriptionSave) => void; assign: (values: Partial<SessionContext>) => void },
): void {
  enqueue.sendTo('persist', { type: 'description.save', description: context.description, requestIds: context.metadataAsks });
  if (context.metadataAsks.length > 0) enqueue.assign({ metadataAsks: [] });
}

export const sessionMachine = setup({
  types: {
    context: {} as SessionContext,
    input: {} as SessionInput,
    events: {} as SessionEvent,
  },
  actors: {
    task: taskMachine,
    // Provided by the worker: the workspace with its venv; the saved description (written for a new session).
    prepareWorkspace: {} as PromiseActorLogic<PreparedWorkspace, { description: SessionDescription; origin: SessionInput['origin']; restarts: number }>,
    // Provided by the worker: stop the session's interpreters; remove its files and description when asked.
    releaseWorkspace: {} as PromiseActorLogic<{ removedArtifacts: string[] }, { sessionId: string; remove: boolean }>,
    // Provided by the worker with the warm-interpreter logic as its child.
    warmSupervisor: supervisorMachine,
    // Provided by the worker with the stateful-interpreter logic as its child.
    interpreterSupervisor: supervisorMachine,
    // Provided by the worker: writes each description it receives, in order, atomically.
    persist: {} as CallbackActorLogic<DescriptionSave, { sessionId: string }>,
  },
  guards: {
    hasQueuedTask: ({ context }) => context.queue.length > 0,
    nextIsCheckpointing: ({ context }) => context.queue.length > 0 && isCheckpointingTool(recordOf(context.book, context.queue[0]!)?.tool ?? ''),
    hasNoLiveTasks: ({ context }) => context.current === null && context.queue.length === 0,
    isCurrentTask: ({ context }, p: { taskId: string }) => context.current === p.taskId,
    isMachineryFailure: (_, p: { outcome: TaskOutcomeSummary; broken?: boolean }) => p.broken === true || (p.outcome.type === 'error' && machineryFailures.has(p.outcome.error.code)),
    faultsEnabled: ({ context }) => context.faults,
    idles: ({ context }) => context.description.idleTimeoutMs > 0,
  },
  actions: {
    report: sendParent(({ context }, p: { state: SessionState; gone?: boolean }): SessionParentEvent => ({ type: 'session.changed', report: reportOf(context, p.state, p.gone) })),
    save: enqueueActions(({ context, enqueue }) => saveDescription(context, enqueue)),
    /** A state that does not save on its own still gets waiting metadata changes to the disk. */
    saveAsked: enqueueActions(({ context, enqueue }) => {
      if (context.metadataAsks.length > 0) saveDescription(context, enqueue);
    }),
    enqueueTask: enqueueActions(({ context, enqueue }, p: { spec: TaskSpec; atMs: number }) => {
      // A repeat never runs twice. The coordinator answers repeats it remembers; this one it forgot
      // (it restarted since), so the task is refused here rather than left without an answer.
      const earlier = findRecord(context.book, { taskId: p.spec.taskId });
      if (earlier) {
        const how = earlier.outcome ? `ended ${earlier.state.toUpperCase()}; its result went with the coordinator's restart` : 'is still running from before the coordinator restarted';
        enqueue.sendParent(refusal(context, p.spec.taskId, `task_id ${p.spec.taskId} already ran in session ${context.description.sessionId} and ${how}; use a new task_id`));
        return;
      }
      enqueue.assign({
        book: addRecord(context.book, { taskId: p.spec.taskId, tool: p.spec.call.tool, sequence: p.spec.sequence, state: 'queued', enqueuedAtMs: p.atMs, startedAtMs: 0, endedAtMs: 0, progress: null, outcome: null }),
        queue: [...context.queue, p.spec.taskId],
        description: touched(context, p.atMs),
      });
      enqueue.spawnChild('task', { id: taskChildId(p.spec.taskId), systemId: taskChildId(p.spec.taskId), input: { spec: p.spec, workerId: context.workerId, enqueuedAtMs: p.atMs } });
    }),
    refuseTask: sendParent(({ context }, p: { spec: TaskSpec; message: string }) => refusal(context, p.spec.taskId, p.message)),
    startNextTask: enqueueActions(({ context, enqueue, event }) => {
      const [next, ...rest] = context.queue;
      if (!next) return;
      const atMs = atMsOf(event, context.description.lastActivityMs);
      enqueue.assign({ current: next, queue: rest, book: updateRecord(context.book, next, { state: 'running', startedAtMs: atMs }) });
      enqueue.sendTo(taskChildId(next), { type: 'task.start', atMs });
    }),
    recordTaskEnd: enqueueActions(({ context, enqueue }, p: { taskId: string; outcome: TaskOutcomeSummary; atMs: number }) => {
      enqueue.assign({
        book: updateRecord(context.book, p.taskId, { state: taskStateOf(p.outcome), endedAtMs: p.atMs, outcome: p.outcome }),
        queue: context.queue.filter((id) => id !== p.taskId),
        current: context.current === p.taskId ? null : context.current,
        description: touched(context, p.atMs),
      });
      enqueue.stopChild(taskChildId(p.taskId));
    }),
    forwardCancel: enqueueActions(({ context, enqueue }, p: { taskId: string; reason: string; atMs: number }) => {
      if (liveTaskIds(context).includes(p.taskId)) enqueue.sendTo(taskChildId(p.taskId), { type: 'task.cancel', reason: p.reason, atMs: p.atMs });
    }),
    cancelTasks: enqueueActions(({ context, enqueue }, p: { which: 'queued' | 'current' | 'all'; reason: string; atMs: number }) => {
      const ids = p.which === 'queued' ? context.queue : p.which === 'current' ? (context.current ? [context.current] : []) : liveTaskIds(context);
      for (const id of ids) enqueue.sendTo(taskChildId(id), { type: 'task.cancel', reason: p.reason, atMs: p.atMs });
    }),
    putMetadata: assign(({ context }, p: MetadataChange) => ({ description: withMetadata(context.description, p), metadataAsks: [...context.metadataAsks, p.requestId] })),
    /**
     * The session's interpreters, each transient under a supervisor: the warm fork server (beyond its
     * intensity tasks run cold) and the stateful interpreter of python_exec.
     */
    startInterpreters: enqueueActions(({ context, enqueue, system }) => {
      const sessionId = context.description.sessionId;
      const warmId = warmChildId(sessionId);
      if (context.warm && !system.get(supervisorIdOf(warmId))) {
        enqueue.spawnChild('warmSupervisor', { id: supervisorIdOf(warmId), systemId: supervisorIdOf(warmId), input: helperSupervision(warmId, sessionId, context.warm) });
      }
      const interpreterId = interpreterChildId(sessionId);
      if (context.interpreter && !system.get(supervisorIdOf(interpreterId))) {
        enqueue.spawnChild('interpreterSupervisor', { id: supervisorIdOf(interpreterId), systemId: supervisorIdOf(interpreterId), input: helperSupervision(interpreterId, sessionId, context.interpreter) });
      }
    }),
    stopInterpreters: enqueueActions(({ context, enqueue }) => {
      enqueue.stopChild(supervisorIdOf(interpreterChildId(context.description.sessionId)));
      enqueue.stopChild(supervisorIdOf(warmChildId(context.description.sessionId)));
    }),
    // A throwing action fails the actor, as a bug in it would.
    crash: enqueueActions(({ event }) => {
      if (event.type === 'session.fault') throw new Error('injected fault: the session actor crashed (CODEGEN_TEST_FAULTS)');
      throw new Error(`the session's description writer failed: ${reasonOf((event as { error?: unknown }).error)}`);
    }),
  },
  delays: {
    idleTimeout: ({ context }) => (context.description.idleTimeoutMs > 0 ? context.description.idleTimeoutMs : NEVER),
    drainTimeout: ({ context }) => Math.max(0, context.drainTimeoutMs),
  },
}).createMachine({
  id: 'session',
  context: ({ input }) => ({
    description: input.description,
    workerId: input.workerId,
    origin: input.origin,
    restarts: input.supervision?.restarts ?? 0,
    incarnation: `${input.instanceId ?? ''}#${input.supervision?.restarts ?? 0}`,
    lastExit: input.supervision?.lastExit ?? '',
    drainTimeoutMs: input.drainTimeoutMs,
    faults: input.faults ?? false,
    warm: input.warm ?? null,
    interpreter: input.interpreter ?? null,
    workspacePath: '',
    queue: [],
    current: null,
    book: emptyTaskBook(),
    failureReason: '',
    removeWorkspace: true,
    removedArtifacts: [],
    metadataAsks: [],
    earlyMetadata: [],
  }),
  invoke: { id: 'persist', src: 'persist', input: ({ context }) => ({ sessionId: context.description.sessionId }) },
  on: {
    'task.cancel': { actions: { type: 'forwardCancel', params: ({ event }) => event } },
    'task.ended': { actions: { type: 'recordTaskEnd', params: ({ event }) => event } },
    'session.fault': { guard: 'faultsEnabled', actions: 'crash' },
    'description.saved': {
      guard: ({ event }) => event.requestIds.length > 0,
      actions: sendParent(({ context, event }): SessionParentEvent => ({ type: 'metadata.saved', sessionId: context.description.sessionId, requestIds: event.requestIds, error: event.error })),
    },
    // Without its writer no change would reach the disk: fail, and be restarted from the description there.
    'xstate.error.actor.persist': { actions: 'crash' },
    // An interpreter's supervisor: it gave up (warm: tasks run cold from now on; python_exec tries a fresh interpreter per call) or ended.
    'supervisor.escalated': {},
    'supervisor.child_exited': {},
    'xstate.done.actor.*': { actions: enqueueActions(({ enqueue, event }) => enqueue.stopChild(event.type.slice('xstate.done.actor.'.length))) },
    // Supervising tasks: a task actor that crashed ends as an INTERNAL error, exactly once, through
    // the normal task.ended path (so a crashed running task takes BUSY to FAILED).
    'xstate.error.actor.*': {
      actions: enqueueActions(({ context, event, enqueue, self }) => {
        const childId = removeFailedChild(event, self, enqueue);
        if (!childId.startsWith('task:')) return;
        const taskId = childId.slice('task:'.length);
        const rec = recordOf(context.book, taskId);
        if (!rec || rec.outcome) return;
        const outcome: TaskOutcomeSummary = { type: 'error', error: errorInfo('INTERNAL', `task ${taskId} crashed: ${reasonOf((event as { error?: unknown }).error)}`) };
        enqueue.raise({ type: 'task.ended', taskId, outcome, atMs: context.description.lastActivityMs, broken: true });
      }),
    },
  },
  initial: 'INITIALIZING',
  states: {
    INITIALIZING: {
      entry: { type: 'report', params: { state: 'INITIALIZING' } },
      invoke: {
        src: 'prepareWorkspace',
        input: ({ context }) => ({ description: context.description, origin: context.origin, restarts: context.restarts }),
        onDone: {
          target: 'READY',
          actions: [
            assign(({ context, event }) => {
              const note = survivalNoteOf(context);
              const restarted = note !== '';
              const disk = event.output.description;
              // Metadata changes that arrived while preparing go on top of the disk's description.
              const changed = context.earlyMetadata.reduce(withMetadata, event.output.description);
              return {
                workspacePath: event.output.workspacePath,
                description: {
                  ...changed,
                  lastActivityMs: Math.max(changed.lastActivityMs, event.output.atMs),
                  ...(restarted ? { restartedAtMs: event.output.atMs, survivalNote: note } : {}),
                },
                metadataAsks: [...context.metadataAsks, ...context.earlyMetadata.map((c) => c.requestId)],
                earlyMetadata: [],
              };
            }),
            'save',
            'startInterpreters',
          ],
        },
        onError: {
          target: 'FAILED',
          actions: [
            assign(({ context, event }) => ({
              failureReason: `workspace could not be prepared: ${reasonOf(event.error)}`,
              description: context.earlyMetadata.reduce(withMetadata, context.description),
              metadataAsks: [...context.metadataAsks, ...context.earlyMetadata.map((c) => c.requestId)],
              earlyMetadata: [],
            })),
            'saveAsked',
          ],
        },
      },
      on: {
        'task.submit': { actions: { type: 'enqueueTask', params: ({ event }) => event } },
        'session.destroy': { target: 'DRAINING' },
        'session.drain': { target: 'DRAINING', actions: assign({ removeWorkspace: false }) },
        'tasks.orphan': { actions: { type: 'cancelTasks', params: ({ event }) => ({ which: 'all' as const, reason: event.reason, atMs: event.atMs }) } },
        'metadata.put': { actions: assign({ earlyMetadata: ({ context, event }) => [...context.earlyMetadata, { requestId: event.requestId, metadata: event.metadata, merge: event.merge }] }) },
      },
    },
    READY: {
      entry: { type: 'report', params: { state: 'READY' } },
      always: [
        { guard: 'nextIsCheckpointing', target: 'running.CHECKPOINTING' },
        { guard: 'hasQueuedTask', target: 'running.BUSY' },
      ],
      after: { idleTimeout: { guard: 'idles', target: 'IDLE' } },
      on: {
        'task.submit': { actions: { type: 'enqueueTask', params: ({ event }) => event } },
        'session.destroy': { target: 'DRAINING' },
        'session.drain': { target: 'DRAINING', actions: assign({ removeWorkspace: false }) },
        'metadata.put': { actions: [{ type: 'putMetadata', params: ({ event }) => event }, 'save', { type: 'report', params: { state: 'READY' } }] },
      },
    },
    IDLE: {
      // Saved here rather than after every task: the last activity reaches the disk without a write per task.
      entry: ['save', { type: 'report', params: { state: 'IDLE' } }],
      on: {
        'task.submit': { target: 'READY', actions: { type: 'enqueueTask', params: ({ event }) => event } },
        'session.destroy': { target: 'DRAINING' },
        'session.drain': { target: 'DRAINING', actions: assign({ removeWorkspace: false }) },
        'metadata.put': { actions: [{ type: 'putMetadata', params: ({ event }) => event }, 'save', { type: 'report', params: { state: 'IDLE' } }] },
      },
    },
    // A task runs: BUSY for the client's tasks, CHECKPOINTING for the session's own checkpoint or
    // restore (tasks that arrive meanwhile wait behind it). What they do on events is the same.
    running: {
      on: {
        'task.submit': { actions: { type: 'enqueueTask', params: ({ event }) => event } },
        'task.ended': [
          {
            guard: { type: 'isMachineryFailure', params: ({ event }) => ({ outcome: event.outcome, ...(event.broken ? { broken: true } : {}) }) },
            target: 'FAILED',
            actions: [
              { type: 'recordTaskEnd', params: ({ event }) => event },
              assign({ failureReason: ({ event }) => (event.outcome.type === 'error' ? `task ${event.taskId} failed: ${event.outcome.error.message}` : '') }),
            ],
          },
          {
            guard: { type: 'isCurrentTask', params: ({ event }) => ({ taskId: event.taskId }) },
            target: 'READY',
            actions: { type: 'recordTaskEnd', params: ({ event }) => event },
          },
          { actions: { type: 'recordTaskEnd', params: ({ event }) => event } },
        ],
        // The coordinator decides whether a busy session may be destroyed (force); here it is.
        'session.destroy': { target: 'DRAINING' },
        'session.drain': { target: 'DRAINING', actions: assign({ removeWorkspace: false }) },
        'tasks.orphan': { actions: { type: 'cancelTasks', params: ({ event }) => ({ which: 'all' as const, reason: event.reason, atMs: event.atMs }) } },
        'metadata.put': { actions: [{ type: 'putMetadata', params: ({ event }) => event }, 'save', { type: 'report', params: ({ context }) => ({ state: runningStateOf(context) }) }] },
      },
      initial: 'BUSY',
      states: {
        BUSY: { entry: ['startNextTask', { type: 'report', params: { state: 'BUSY' } }] },
        CHECKPOINTING: { entry: ['startNextTask', { type: 'report', params: { state: 'CHECKPOINTING' } }] },
      },
    },
    FAILED: {
      entry: [
        { type: 'cancelTasks', params: ({ context }) => ({ which: 'all' as const, reason: context.failureReason || 'session failed', atMs: context.description.lastActivityMs }) },
        { type: 'report', params: { state: 'FAILED' } },
      ],
      on: {
        'task.submit': {
          actions: { type: 'refuseTask', params: ({ context, event }) => ({ spec: event.spec, message: `session ${context.description.sessionId} has FAILED (${context.failureReason}); destroy it and create a new one` }) },
        },
        'session.destroy': { target: 'DRAINING' },
        'session.drain': { target: 'DRAINING', actions: assign({ removeWorkspace: false }) },
        'metadata.put': { actions: [{ type: 'putMetadata', params: ({ event }) => event }, 'save', { type: 'report', params: { state: 'FAILED' } }] },
      },
    },
    DRAINING: {
      entry: [
        'save',
        { type: 'report', params: { state: 'DRAINING' } },
        enqueueActions(({ context, enqueue, event }) => {
          const atMs = atMsOf(event, context.description.lastActivityMs);
          enqueue({ type: 'cancelTasks', params: { which: 'queued', reason: 'session is shutting down', atMs } });
          // A destroy cancels the running task at once; a drain lets it finish within drainTimeout.
          if (context.removeWorkspace) enqueue({ type: 'cancelTasks', params: { which: 'current', reason: 'session destroyed', atMs } });
        }),
      ],
      on: {
        'task.submit': {
          actions: { type: 'refuseTask', params: ({ context, event }) => ({ spec: event.spec, message: `session ${context.description.sessionId} is shutting down; create a new session` }) },
        },
        'metadata.put': { actions: [{ type: 'putMetadata', params: ({ event }) => event }, 'save', { type: 'report', params: { state: 'DRAINING' } }] },
      },
      initial: 'waiting',
      states: {
        waiting: {
          always: { guard: 'hasNoLiveTasks', target: 'releasing' },
          on: {
            // A destroy during a drain upgrades it: the running task is cancelled and the files go too.
            'session.destroy': {
              target: 'waiting',
              reenter: true,
              actions: [assign({ removeWorkspace: true }), { type: 'cancelTasks', params: ({ event }) => ({ which: 'current' as const, reason: 'session destroyed', atMs: event.atMs }) }],
            },
          },
          after: { drainTimeout: { actions: { type: 'cancelTasks', params: ({ context }) => ({ which: 'current' as const, reason: 'drain timeout', atMs: context.description.lastActivityMs + context.drainTimeoutMs }) } } },
        },
        releasing: {
          entry: 'stopInterpreters',
          // A destroy arriving while a drain releases: release again, removing the files this time.
          on: { 'session.destroy': { guard: ({ context }) => !context.removeWorkspace, target: 'releasing', reenter: true, actions: assign({ removeWorkspace: true }) } },
          invoke: {
            src: 'releaseWorkspace',
            input: ({ context }) => ({ sessionId: context.description.sessionId, remove: context.removeWorkspace }),
            onDone: { target: '#session.TERMINATED', actions: assign({ removedArtifacts: ({ event }) => event.output?.removedArtifacts ?? [] }) },
            onError: '#session.TERMINATED',
          },
        },
      },
    },
    TERMINATED: {
      type: 'final',
      // Only a destroy makes the session gone; a drain leaves it on disk for the next start.
      entry: enqueueActions(({ context, enqueue }) => {
        if (context.removeWorkspace) enqueue({ type: 'report', params: { state: 'TERMINATED', gone: true } });
      }),
    },
  },
});

export type SessionActor = ActorRefFrom<typeof sessionMachine>;
export type SessionSnapshot = SnapshotFrom<typeof sessionMachine>;

/** The wire state of a session snapshot (DRAINING's substates are both DRAINING; `running` is BUSY or CHECKPOINTING). */
export function sessionStateOf(snapshot: SessionSnapshot): SessionState {
  if (snapshot.status === 'done') return 'TERMINATED';
  const v = snapshot.value as string | Record<string, string>;
  if (typeof v === 'string') return v as SessionState;
  const [top, sub] = Object.entries(v)[0]!;
  return (top === 'running' ? sub : top) as SessionState;
}
