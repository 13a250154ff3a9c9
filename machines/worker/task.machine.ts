import { assign, emit, sendParent, sendTo, setup, type ActorRefFrom, type CallbackActorLogic } from 'xstate';
import { errorInfo } from '../domain/errors.js';
import { cancelledOutcome, errorOutcome, summarizeOutcome, type TaskLog, type TaskOutcome, type TaskOutcomeSummary, type TaskProgress, type TaskSpec, type TaskUpdate } from '../domain/tasks.js';
import { reasonOf } from '../supervision.js';

/**
 * One task on a worker: queued until its session starts it, running until its executor (the
 * sandboxed tool) reports one outcome. The outcome, which may be large, goes to subscribers in
 * the `task.update` it emits; the context keeps its summary only.
 */
export interface TaskInput {
  spec: TaskSpec;
  workerId: string;
  enqueuedAtMs: number;
}

export type TaskEvent =
  | { type: 'task.start'; atMs: number }
  | { type: 'task.cancel'; reason: string; atMs: number }
  // from the executor
  | { type: 'task.progressed'; progress: TaskProgress }
  | { type: 'task.logged'; log: TaskLog }
  | { type: 'task.finished'; outcome: TaskOutcome };

/** What the executor actor receives while it runs. */
export type ExecutorEvent = { type: 'executor.cancel'; reason: string };
export interface ExecutorInput { spec: TaskSpec; workerId: string; enqueuedAtMs: number; startedAtMs: number }

export interface TaskContext {
  taskId: string;
  sessionId: string;
  workerId: string;
  enqueuedAtMs: number;
  startedAtMs: number;
  cancelledAtMs: number;
  outcome: TaskOutcomeSummary | null;
}

/** What the task tells its parent session when it ends: exactly once. */
/** `broken`: the task's actor crashed (the session's machinery broke, not the tool). */
export interface TaskEndedEvent { type: 'task.ended'; taskId: string; outcome: TaskOutcomeSummary; atMs: number; broken?: boolean }
export type TaskEmitted = { type: 'task.update'; taskId: string; sessionId: string; update: TaskUpdate };

export const CANCEL_GRACE_MS = 10_000;

const executorFailed = (err: unknown): TaskOutcome => errorOutcome(errorInfo('INTERNAL', `the task's executor failed: ${reasonOf(err)}`));

export const taskMachine = setup({
  types: {
    /** broken: the executor itself failed (not the tool): the session's machinery broke. */
    context: {} as TaskContext & { spec: TaskSpec; broken?: boolean },
    input: {} as TaskInput,
    events: {} as TaskEvent,
    emitted: {} as TaskEmitted,
    output: {} as TaskOutcomeSummary,
  },
  actors: {
    // Provided by the worker: runs the tool in the sandbox.
    executor: {} as CallbackActorLogic<ExecutorEvent, ExecutorInput>,
  },
  actions: {
    emitUpdate: emit(({ context }, p: { update: TaskUpdate }) => ({ type: 'task.update' as const, taskId: context.taskId, sessionId: context.sessionId, update: p.update })),
    end: assign({ outcome: (_, p: { outcome: TaskOutcome | TaskOutcomeSummary }) => summarizeOutcome(p.outcome) }),
    cancelExecutor: sendTo('executor', (_, p: { reason: string }) => ({ type: 'executor.cancel' as const, reason: p.reason })),
    announceEnd: sendParent(({ context }): TaskEndedEvent => ({
      type: 'task.ended',
      taskId: context.taskId,
      outcome: context.outcome!,
      atMs: context.outcome!.type === 'result' ? context.outcome!.metadata.finishedAtMs : context.cancelledAtMs || context.startedAtMs || context.enqueuedAtMs,
      ...(context.broken ? { broken: true } : {}),
    })),
  },
  delays: {
    // After a cancel, how long the executor has to report before the task ends as cancelled anyway.
    cancelGrace: CANCEL_GRACE_MS,
  },
}).createMachine({
  id: 'task',
  context: ({ input }) => ({
    spec: input.spec,
    taskId: input.spec.taskId,
    sessionId: input.spec.sessionId,
    workerId: input.workerId,
    enqueuedAtMs: input.enqueuedAtMs,
    startedAtMs: 0,
    cancelledAtMs: 0,
    outcome: null,
  }),
  initial: 'queued',
  states: {
    queued: {
      on: {
        'task.start': { target: 'running', actions: assign({ startedAtMs: ({ event }) => event.atMs }) },
        'task.cancel': {
          target: 'done',
          actions: [
            assign({ cancelledAtMs: ({ event }) => event.atMs }),
            { type: 'end', params: ({ context, event }) => ({ outcome: cancelledOutcome(context.workerId, context.enqueuedAtMs, 0, event.atMs) }) },
            { type: 'emitUpdate', params: ({ context, event }) => ({ update: { type: 'outcome' as const, outcome: cancelledOutcome(context.workerId, context.enqueuedAtMs, 0, event.atMs) } }) },
          ],
        },
      },
    },
    running: {
      invoke: {
        id: 'executor',
        src: 'executor',
        input: ({ context }) => ({ spec: context.spec, workerId: context.workerId, enqueuedAtMs: context.enqueuedAtMs, startedAtMs: context.startedAtMs }),
        onError: {
          target: 'done',
          actions: [
            assign({ broken: true }),
            { type: 'end', params: ({ event }) => ({ outcome: executorFailed(event.error) }) },
            { type: 'emitUpdate', params: ({ event }) => ({ update: { type: 'outcome' as const, outcome: executorFailed(event.error) } }) },
          ],
        },
      },
      on: {
        'task.progressed': { actions: { type: 'emitUpdate', params: ({ event }) => ({ update: { type: 'progress' as const, progress: event.progress } }) } },
        'task.logged': { actions: { type: 'emitUpdate', params: ({ event }) => ({ update: { type: 'log' as const, log: event.log } }) } },
        'task.finished': {
          target: 'done',
          actions: [
            { type: 'end', params: ({ event }) => ({ outcome: event.outcome }) },
            { type: 'emitUpdate', params: ({ event }) => ({ update: { type: 'outcome' as const, outcome: event.outcome } }) },
          ],
        },
      },
      initial: 'active',
      states: {
        active: {
          on: {
            'task.cancel': { target: 'cancelling', actions: [assign({ cancelledAtMs: ({ event }) => event.atMs }), { type: 'cancelExecutor', params: ({ event }) => ({ reason: event.reason }) }] },
          },
        },
        cancelling: {
          after: {
            cancelGrace: {
              target: '#task.done',
              actions: [
                { type: 'end', params: ({ context }) => ({ outcome: cancelledOutcome(context.workerId, context.enqueuedAtMs, context.startedAtMs, context.cancelledAtMs + CANCEL_GRACE_MS) }) },
                { type: 'emitUpdate', params: ({ context }) => ({ update: { type: 'outcome' as const, outcome: cancelledOutcome(context.workerId, context.enqueuedAtMs, context.startedAtMs, context.cancelledAtMs + CANCEL_GRACE_MS) } }) },
              ],
            },
          },
        },
      },
    },
    done: {
      type: 'final',
      entry: 'announceEnd',
    },
  },
  output: ({ context }) => context.outcome!,
});

export type TaskActor = ActorRefFrom<typeof taskMachine>;
