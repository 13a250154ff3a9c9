import { assign, emit, enqueueActions, sendParent, setup, type ActorRefFrom, type SnapshotFrom } from 'xstate';
import type { ErrorInfo } from '../src/domain/errors.js';
import type { SessionConfig, SessionState } from '../src/domain/sessions.js';
import { taskStateOf, type TaskOutcome, type TaskSpec, type TaskState } from '../src/domain/tasks.js';
import { errorOutcome, taskMachine, type TaskEndedEvent } from './task.machine.js';

/**
 * The session statechart of the user's guide. The same definition runs in the coordinator
 * (its effects talk to a worker) and in the worker (its effects make venvs and run tools):
 * only the provided actors differ.
 */
export interface SessionInput {
  sessionId: string;
  workerId: string;
  workspaceId: string;
  config: SessionConfig;
  metadata: Record<string, string>;
  /** 0 or less: never idle. */
  idleTimeoutMs: number;
  /** How long a drain lets the running task finish before cancelling it. */
  drainTimeoutMs: number;
  /** The command this session was created for, echoed in session.prepared / session.failed. */
  requestId: string;
}

export interface TaskRecord {
  taskId: string;
  tool: string;
  sequence: number;
  state: TaskState;
  enqueuedAtMs: number;
  startedAtMs: number;
  endedAtMs: number;
  outcome: TaskOutcome | undefined;
}

export interface SessionContext extends Omit<SessionInput, 'idleTimeoutMs' | 'drainTimeoutMs'> {
  idleTimeoutMs: number;
  drainTimeoutMs: number;
  createdAtMs: number;
  lastActivityMs: number;
  workspacePath: string;
  /** Task ids waiting to run, in arrival order. */
  queue: string[];
  /** The task running now. */
  current: string | null;
  tasks: Record<string, TaskRecord>;
  /** Task ids in arrival order, for bounding `tasks`. */
  order: string[];
  /** Client sequence numbers (as strings) → task id, for answering repeats from the first run. */
  sequences: Record<string, string>;
  failureReason: string;
  /** false when draining for a shutdown: the files stay for the next start. */
  removeWorkspace: boolean;
  destroyRequestId: string;
}

export type SessionEvent =
  | { type: 'task.submit'; spec: TaskSpec }
  | { type: 'task.cancel'; taskId: string; reason: string }
  | TaskEndedEvent
  | { type: 'session.destroy'; force: boolean; requestId: string }
  | { type: 'session.drain' }
  | { type: 'worker.lost'; reason: string }
  | { type: 'metadata.put'; metadata: Record<string, string>; merge: boolean }
  | { type: `xstate.error.actor.${string}`; error: unknown };

/** Facts the session tells its parent supervisor. */
export type SessionParentEvent =
  | { type: 'session.prepared'; sessionId: string; requestId: string; workspacePath: string }
  | { type: 'session.failed'; sessionId: string; requestId: string; reason: string }
  | { type: 'session.terminated'; sessionId: string; requestId: string };

export type SessionEmitted =
  | { type: 'task.rejected'; sessionId: string; taskId: string; error: ErrorInfo };

/** Supervisors name session children (id and systemId) this way. */
export const sessionChildId = (sessionId: string): string => `session:${sessionId}`;

export const MAX_TASK_RECORDS = 256;
const NEVER = 2 ** 31 - 1;
const now = () => Date.now();

/** Errors that mean the execution machinery broke, not the user's code: BUSY → FAILED. */
const machineryFailures = new Set(['WORKER_LOST', 'INTERNAL']);

function addRecord(ctx: SessionContext, spec: TaskSpec): Pick<SessionContext, 'tasks' | 'order' | 'sequences'> {
  const tasks = { ...ctx.tasks };
  const order = [...ctx.order, spec.taskId];
  const sequences = { ...ctx.sequences };
  tasks[spec.taskId] = { taskId: spec.taskId, tool: spec.call.tool, sequence: spec.sequence, state: 'queued', enqueuedAtMs: now(), startedAtMs: 0, endedAtMs: 0, outcome: undefined };
  if (spec.sequence > 0) sequences[String(spec.sequence)] = spec.taskId;
  // Forget the oldest finished tasks beyond the bound; live ones always stay.
  while (order.length > MAX_TASK_RECORDS) {
    const idx = order.findIndex((id) => tasks[id]?.outcome !== undefined);
    if (idx < 0) break;
    const [old] = order.splice(idx, 1);
    const rec = tasks[old!];
    if (rec && rec.sequence > 0 && sequences[String(rec.sequence)] === old) delete sequences[String(rec.sequence)];
    delete tasks[old!];
  }
  return { tasks, order, sequences };
}

function endRecord(ctx: SessionContext, taskId: string, outcome: TaskOutcome): Record<string, TaskRecord> {
  const rec = ctx.tasks[taskId];
  if (!rec || rec.outcome) return ctx.tasks;
  return { ...ctx.tasks, [taskId]: { ...rec, state: taskStateOf(outcome), endedAtMs: now(), outcome } };
}

const liveTaskIds = (ctx: SessionContext): string[] => (ctx.current ? [ctx.current, ...ctx.queue] : [...ctx.queue]);

export const sessionMachine = setup({
  types: {
    context: {} as SessionContext,
    input: {} as SessionInput,
    events: {} as SessionEvent,
    emitted: {} as SessionEmitted,
  },
  actors: {
    task: taskMachine,
    // Provided by the process: make the workspace ready (coordinator: ask the worker; worker: venv).
    prepareWorkspace: {} as import('xstate').PromiseActorLogic<{ workspacePath: string }, { sessionId: string; workerId: string; config: SessionConfig }>,
    // Provided by the process: release the workspace (coordinator: tell the worker; worker: remove files).
    releaseWorkspace: {} as import('xstate').PromiseActorLogic<void, { sessionId: string; workerId: string; remove: boolean; force: boolean }>,
  },
  guards: {
    hasQueuedTask: ({ context }) => context.queue.length > 0,
    hasNoLiveTasks: ({ context }) => context.current === null && context.queue.length === 0,
    isForced: (_, p: { force: boolean }) => p.force,
    isCurrentTask: ({ context }, p: { taskId: string }) => context.current === p.taskId,
    isMachineryFailure: (_, p: { outcome: TaskOutcome }) => p.outcome.type === 'error' && machineryFailures.has(p.outcome.error.code),
  },
  actions: {
    enqueueTask: enqueueActions(({ context, enqueue }, p: { spec: TaskSpec }) => {
      if (context.tasks[p.spec.taskId]) return; // a repeat is answered from the first run, never run twice
      enqueue.assign({ ...addRecord(context, p.spec), queue: [...context.queue, p.spec.taskId], lastActivityMs: now() });
      enqueue.spawnChild('task', {
        id: p.spec.taskId,
        systemId: `task:${p.spec.taskId}`,
        input: { spec: p.spec, workerId: context.workerId, enqueuedAtMs: now() },
      });
    }),
    rejectTask: enqueueActions(({ context, enqueue }, p: { spec: TaskSpec; code: 'FAILED_PRECONDITION'; message: string }) => {
      if (context.tasks[p.spec.taskId]) return;
      const error: ErrorInfo = { code: p.code, message: p.message, details: '', retriable: false };
      const added = addRecord(context, p.spec);
      added.tasks[p.spec.taskId] = { ...added.tasks[p.spec.taskId]!, state: 'errored', endedAtMs: now(), outcome: errorOutcome(error) };
      enqueue.assign(added);
      enqueue.emit({ type: 'task.rejected', sessionId: context.sessionId, taskId: p.spec.taskId, error });
    }),
    startNextTask: enqueueActions(({ context, enqueue }) => {
      const [next, ...rest] = context.queue;
      if (!next) return;
      const rec = context.tasks[next]!;
      enqueue.assign({ current: next, queue: rest, tasks: { ...context.tasks, [next]: { ...rec, state: 'running', startedAtMs: now() } } });
      enqueue.sendTo(next, { type: 'task.start' });
    }),
    recordTaskEnd: enqueueActions(({ context, enqueue }, p: { taskId: string; outcome: TaskOutcome }) => {
      enqueue.assign({
        tasks: endRecord(context, p.taskId, p.outcome),
        queue: context.queue.filter((id) => id !== p.taskId),
        current: context.current === p.taskId ? null : context.current,
        lastActivityMs: now(),
      });
      enqueue.stopChild(p.taskId);
    }),
    forwardCancel: enqueueActions(({ context, enqueue }, p: { taskId: string; reason: string }) => {
      if (liveTaskIds(context).includes(p.taskId)) enqueue.sendTo(p.taskId, { type: 'task.cancel', reason: p.reason });
    }),
    cancelQueuedTasks: enqueueActions(({ context, enqueue }, p: { reason: string }) => {
      for (const id of context.queue) enqueue.sendTo(id, { type: 'task.cancel', reason: p.reason });
    }),
    cancelCurrentTask: enqueueActions(({ context, enqueue }, p: { reason: string }) => {
      if (context.current) enqueue.sendTo(context.current, { type: 'task.cancel', reason: p.reason });
    }),
    loseLiveTasks: enqueueActions(({ context, enqueue }, p: { reason: string }) => {
      for (const id of liveTaskIds(context)) enqueue.sendTo(id, { type: 'worker.lost', reason: p.reason });
    }),
    putMetadata: assign({
      metadata: ({ context }, p: { metadata: Record<string, string>; merge: boolean }) => (p.merge ? { ...context.metadata, ...p.metadata } : { ...p.metadata }),
    }),
    announcePrepared: sendParent(({ context }) => ({ type: 'session.prepared' as const, sessionId: context.sessionId, requestId: context.requestId, workspacePath: context.workspacePath })),
    announceFailed: sendParent(({ context }) => ({ type: 'session.failed' as const, sessionId: context.sessionId, requestId: context.requestId, reason: context.failureReason })),
    announceTerminated: sendParent(({ context }) => ({ type: 'session.terminated' as const, sessionId: context.sessionId, requestId: context.destroyRequestId })),
  },
  delays: {
    idleTimeout: ({ context }) => (context.idleTimeoutMs > 0 ? context.idleTimeoutMs : NEVER),
    drainTimeout: ({ context }) => (context.drainTimeoutMs > 0 ? context.drainTimeoutMs : 0),
  },
}).createMachine({
  id: 'session',
  context: ({ input }) => ({
    ...input,
    createdAtMs: now(),
    lastActivityMs: now(),
    workspacePath: '',
    queue: [],
    current: null,
    tasks: {},
    order: [],
    sequences: {},
    failureReason: '',
    removeWorkspace: true,
    destroyRequestId: '',
  }),
  on: {
    'metadata.put': { actions: { type: 'putMetadata', params: ({ event }) => ({ metadata: event.metadata, merge: event.merge }) } },
    'task.cancel': { actions: { type: 'forwardCancel', params: ({ event }) => ({ taskId: event.taskId, reason: event.reason }) } },
    'task.ended': { actions: { type: 'recordTaskEnd', params: ({ event }) => ({ taskId: event.taskId, outcome: event.outcome }) } },
    // Supervising tasks: a task actor that crashed ends as an INTERNAL error, exactly once, through
    // the normal task.ended path (so a crashed running task takes BUSY to FAILED).
    'xstate.error.actor.*': {
      actions: enqueueActions(({ context, event, enqueue }) => {
        const taskId = event.type.slice('xstate.error.actor.'.length);
        const rec = context.tasks[taskId];
        if (!rec || rec.outcome) return;
        const why = (event as { error?: unknown }).error;
        enqueue.raise({
          type: 'task.ended',
          taskId,
          outcome: errorOutcome({ code: 'INTERNAL', message: `task ${taskId} crashed: ${why instanceof Error ? why.message : String(why)}`, details: '', retriable: true }),
        });
      }),
    },
  },
  initial: 'INITIALIZING',
  states: {
    INITIALIZING: {
      invoke: {
        src: 'prepareWorkspace',
        input: ({ context }) => ({ sessionId: context.sessionId, workerId: context.workerId, config: context.config }),
        onDone: { target: 'READY', actions: [assign({ workspacePath: ({ event }) => event.output.workspacePath }), 'announcePrepared'] },
        onError: {
          target: 'FAILED',
          actions: [assign({ failureReason: ({ event }) => `workspace could not be prepared: ${event.error instanceof Error ? event.error.message : String(event.error)}` }), 'announceFailed'],
        },
      },
      on: {
        'task.submit': { actions: { type: 'enqueueTask', params: ({ event }) => ({ spec: event.spec }) } },
        'session.destroy': { target: 'DRAINING', actions: assign({ destroyRequestId: ({ event }) => event.requestId }) },
        'session.drain': { target: 'DRAINING', actions: assign({ removeWorkspace: false }) },
        'worker.lost': { target: 'FAILED', actions: [assign({ failureReason: ({ event }) => `worker lost: ${event.reason}` }), 'announceFailed'] },
      },
    },
    READY: {
      always: { guard: 'hasQueuedTask', target: 'BUSY' },
      after: { idleTimeout: 'IDLE' },
      on: {
        'task.submit': { actions: { type: 'enqueueTask', params: ({ event }) => ({ spec: event.spec }) } },
        'session.destroy': { target: 'DRAINING', actions: assign({ destroyRequestId: ({ event }) => event.requestId }) },
        'session.drain': { target: 'DRAINING', actions: assign({ removeWorkspace: false }) },
        'worker.lost': { target: 'FAILED', actions: assign({ failureReason: ({ event }) => `worker lost: ${event.reason}` }) },
      },
    },
    IDLE: {
      on: {
        'task.submit': { target: 'READY', actions: { type: 'enqueueTask', params: ({ event }) => ({ spec: event.spec }) } },
        'session.destroy': { target: 'DRAINING', actions: assign({ destroyRequestId: ({ event }) => event.requestId }) },
        'session.drain': { target: 'DRAINING', actions: assign({ removeWorkspace: false }) },
        'worker.lost': { target: 'FAILED', actions: assign({ failureReason: ({ event }) => `worker lost: ${event.reason}` }) },
      },
    },
    BUSY: {
      entry: 'startNextTask',
      on: {
        'task.submit': { actions: { type: 'enqueueTask', params: ({ event }) => ({ spec: event.spec }) } },
        'task.ended': [
          {
            guard: { type: 'isMachineryFailure', params: ({ event }) => ({ outcome: event.outcome }) },
            target: 'FAILED',
            actions: [
              { type: 'recordTaskEnd', params: ({ event }) => ({ taskId: event.taskId, outcome: event.outcome }) },
              assign({ failureReason: ({ event }) => (event.outcome.type === 'error' ? `task ${event.taskId} failed: ${event.outcome.error.message}` : '') }),
            ],
          },
          {
            guard: { type: 'isCurrentTask', params: ({ event }) => ({ taskId: event.taskId }) },
            target: 'READY',
            actions: { type: 'recordTaskEnd', params: ({ event }) => ({ taskId: event.taskId, outcome: event.outcome }) },
          },
          { actions: { type: 'recordTaskEnd', params: ({ event }) => ({ taskId: event.taskId, outcome: event.outcome }) } },
        ],
        // Destroying a busy session needs force: it cancels what runs.
        'session.destroy': { guard: { type: 'isForced', params: ({ event }) => ({ force: event.force }) }, target: 'DRAINING', actions: assign({ destroyRequestId: ({ event }) => event.requestId }) },
        'session.drain': { target: 'DRAINING', actions: assign({ removeWorkspace: false }) },
        'worker.lost': { target: 'FAILED', actions: assign({ failureReason: ({ event }) => `worker lost: ${event.reason}` }) },
      },
    },
    FAILED: {
      // Whatever still runs or waits ends now: nothing waits forever.
      entry: { type: 'loseLiveTasks', params: ({ context }) => ({ reason: context.failureReason || 'session failed' }) },
      on: {
        'task.submit': {
          actions: { type: 'rejectTask', params: ({ context, event }) => ({ spec: event.spec, code: 'FAILED_PRECONDITION' as const, message: `session ${context.sessionId} has FAILED (${context.failureReason}); destroy it and create a new one` }) },
        },
        'session.destroy': { target: 'DRAINING', actions: assign({ destroyRequestId: ({ event }) => event.requestId }) },
        'session.drain': { target: 'DRAINING', actions: assign({ removeWorkspace: false }) },
      },
    },
    DRAINING: {
      entry: [
        { type: 'cancelQueuedTasks', params: { reason: 'session is shutting down' } },
        enqueueActions(({ context, enqueue }) => {
          // A destroy cancels the running task at once; a drain lets it finish within drainTimeout.
          if (context.removeWorkspace) enqueue({ type: 'cancelCurrentTask', params: { reason: 'session destroyed' } });
        }),
      ],
      on: {
        'task.submit': {
          actions: { type: 'rejectTask', params: ({ context, event }) => ({ spec: event.spec, code: 'FAILED_PRECONDITION' as const, message: `session ${context.sessionId} is shutting down; create a new session` }) },
        },
        'worker.lost': { actions: { type: 'loseLiveTasks', params: ({ event }) => ({ reason: event.reason }) } },
        // A destroy during a drain upgrades it: the files go too, and the destroy is answered.
        'session.destroy': {
          target: '.waiting',
          reenter: true,
          actions: [
            assign({ removeWorkspace: true, destroyRequestId: ({ event }) => event.requestId }),
            { type: 'cancelCurrentTask', params: { reason: 'session destroyed' } },
          ],
        },
      },
      initial: 'waiting',
      states: {
        waiting: {
          always: { guard: 'hasNoLiveTasks', target: 'releasing' },
          after: { drainTimeout: { actions: { type: 'cancelCurrentTask', params: { reason: 'drain timeout' } } } },
        },
        releasing: {
          invoke: {
            src: 'releaseWorkspace',
            input: ({ context }) => ({ sessionId: context.sessionId, workerId: context.workerId, remove: context.removeWorkspace, force: true }),
            onDone: '#session.TERMINATED',
            onError: '#session.TERMINATED',
          },
        },
      },
    },
    TERMINATED: {
      type: 'final',
      entry: 'announceTerminated',
    },
  },
});

export type SessionActor = ActorRefFrom<typeof sessionMachine>;
export type SessionSnapshot = SnapshotFrom<typeof sessionMachine>;

/** The wire state of a session snapshot (DRAINING's substates are both DRAINING). */
export function sessionStateOf(snapshot: SessionSnapshot): SessionState {
  if (snapshot.status === 'done') return 'TERMINATED';
  const v = snapshot.value;
  const top = typeof v === 'string' ? v : Object.keys(v)[0]!;
  return top as SessionState;
}

/** A session accepts new tasks in these states; others answer FAILED_PRECONDITION. */
export const acceptsTasks = (state: SessionState): boolean => state === 'READY' || state === 'BUSY' || state === 'IDLE' || state === 'INITIALIZING';

export function findTaskRecord(snapshot: SessionSnapshot, ref: { taskId?: string; sequence?: number }): TaskRecord | undefined {
  const ctx = snapshot.context;
  if (ref.taskId && ctx.tasks[ref.taskId]) return ctx.tasks[ref.taskId];
  if (ref.sequence && ref.sequence > 0) {
    const id = ctx.sequences[String(ref.sequence)];
    if (id) return ctx.tasks[id];
  }
  return undefined;
}
