import { assign, emit, sendParent, sendTo, setup, type ActorRefFrom } from 'xstate';
import type { ErrorInfo } from '../src/domain/errors.js';
import type { TaskLog, TaskOutcome, TaskProgress, TaskSpec, TaskUpdate } from '../src/domain/tasks.js';

/** One task: queued until its session starts it, running until its executor reports one outcome. */
export interface TaskInput {
  spec: TaskSpec;
  workerId: string;
  enqueuedAtMs: number;
}

export type TaskEvent =
  | { type: 'task.start' }
  | { type: 'task.cancel'; reason: string }
  | { type: 'worker.lost'; reason: string }
  // from the executor
  | { type: 'task.progressed'; progress: TaskProgress }
  | { type: 'task.logged'; log: TaskLog }
  | { type: 'task.finished'; outcome: TaskOutcome };

/** What the executor actor receives while it runs. */
export type ExecutorEvent = { type: 'executor.cancel'; reason: string };

export interface TaskContext {
  spec: TaskSpec;
  workerId: string;
  enqueuedAtMs: number;
  startedAtMs: number;
  progress: TaskProgress | undefined;
  outcome: TaskOutcome | undefined;
}

/** What the task tells its parent session when it ends: exactly once. */
export interface TaskEndedEvent { type: 'task.ended'; taskId: string; outcome: TaskOutcome }
export type TaskEmitted = { type: 'task.update'; taskId: string; update: TaskUpdate };

const now = () => Date.now();

export function cancelledOutcome(ctx: Pick<TaskContext, 'workerId' | 'enqueuedAtMs' | 'startedAtMs'>): TaskOutcome {
  const t = now();
  const started = ctx.startedAtMs || t;
  return {
    type: 'result',
    status: 'CANCELLED',
    artifacts: [],
    metadata: { workerId: ctx.workerId, startedAtMs: started, finishedAtMs: t, durationMs: t - started, queuedMs: started - ctx.enqueuedAtMs },
  };
}

export const errorOutcome = (error: ErrorInfo): TaskOutcome => ({ type: 'error', error });

export const workerLostOutcome = (reason: string): TaskOutcome =>
  errorOutcome({ code: 'WORKER_LOST', message: `the worker running this task was lost (${reason}); run the task again`, details: '', retriable: true });

export const taskMachine = setup({
  types: {
    context: {} as TaskContext,
    input: {} as TaskInput,
    events: {} as TaskEvent,
    emitted: {} as TaskEmitted,
    output: {} as TaskOutcome,
  },
  actors: {
    // Provided by the process: the coordinator forwards to a worker, the worker runs the tool.
    executor: {} as import('xstate').CallbackActorLogic<ExecutorEvent, { spec: TaskSpec; workerId: string }>,
  },
  actions: {
    markStarted: assign({ startedAtMs: () => now() }),
    recordProgress: assign({ progress: (_, p: { progress: TaskProgress }) => p.progress }),
    emitUpdate: emit((_, p: { taskId: string; update: TaskUpdate }) => ({ type: 'task.update' as const, taskId: p.taskId, update: p.update })),
    setOutcome: assign({ outcome: (_, p: { outcome: TaskOutcome }) => p.outcome }),
    cancelExecutor: sendTo('executor', (_, p: { reason: string }) => ({ type: 'executor.cancel' as const, reason: p.reason })),
    announceEnd: sendParent(({ context }): TaskEndedEvent => ({ type: 'task.ended', taskId: context.spec.taskId, outcome: context.outcome! })),
  },
  delays: {
    // After a cancel, how long the executor has to report before the task ends as cancelled anyway.
    cancelGrace: 10_000,
  },
}).createMachine({
  id: 'task',
  context: ({ input }) => ({
    spec: input.spec,
    workerId: input.workerId,
    enqueuedAtMs: input.enqueuedAtMs,
    startedAtMs: 0,
    progress: undefined,
    outcome: undefined,
  }),
  initial: 'queued',
  states: {
    queued: {
      on: {
        'task.start': { target: 'running', actions: 'markStarted' },
        'task.cancel': { target: 'done', actions: assign({ outcome: ({ context }) => cancelledOutcome(context) }) },
        'worker.lost': { target: 'done', actions: assign({ outcome: ({ event }) => workerLostOutcome(event.reason) }) },
      },
    },
    running: {
      invoke: {
        id: 'executor',
        src: 'executor',
        input: ({ context }) => ({ spec: context.spec, workerId: context.workerId }),
        onError: {
          target: 'done',
          actions: assign({
            outcome: ({ event }) => errorOutcome({ code: 'INTERNAL', message: `the task's executor failed: ${event.error instanceof Error ? event.error.message : String(event.error)}`, details: '', retriable: true }),
          }),
        },
      },
      on: {
        'task.progressed': {
          actions: [
            { type: 'recordProgress', params: ({ event }) => ({ progress: event.progress }) },
            { type: 'emitUpdate', params: ({ context, event }) => ({ taskId: context.spec.taskId, update: { type: 'progress', progress: event.progress } }) },
          ],
        },
        'task.logged': {
          actions: { type: 'emitUpdate', params: ({ context, event }) => ({ taskId: context.spec.taskId, update: { type: 'log', log: event.log } }) },
        },
        'task.finished': { target: 'done', actions: { type: 'setOutcome', params: ({ event }) => ({ outcome: event.outcome }) } },
        'worker.lost': { target: 'done', actions: assign({ outcome: ({ event }) => workerLostOutcome(event.reason) }) },
      },
      initial: 'active',
      states: {
        active: {
          on: {
            'task.cancel': { target: 'cancelling', actions: { type: 'cancelExecutor', params: ({ event }) => ({ reason: event.reason }) } },
          },
        },
        cancelling: {
          after: {
            cancelGrace: { target: '#task.done', actions: assign({ outcome: ({ context }) => cancelledOutcome(context) }) },
          },
        },
      },
    },
    done: {
      type: 'final',
      entry: [
        { type: 'emitUpdate', params: ({ context }) => ({ taskId: context.spec.taskId, update: { type: 'outcome', outcome: context.outcome! } }) },
        'announceEnd',
      ],
    },
  },
  output: ({ context }) => context.outcome!,
});

export type TaskActor = ActorRefFrom<typeof taskMachine>;
