import { assign, emit, enqueueActions, sendParent, setup, type ActorRefFrom } from 'xstate';
import { cancelledOutcome, summarizeOutcome, workerLostOutcome, type TaskLog, type TaskOutcome, type TaskOutcomeSummary, type TaskProgress, type TaskUpdate } from '../domain/tasks.js';
import { connectionIdOf, type WorkerCommandMessage } from './worker-connection.machine.js';

/**
 * The coordinator's proxy of one task, a child of its session's proxy. Its session sent the task
 * to the worker; the worker's updates arrive here (routed by systemId `task:<id>`) and go to
 * whoever follows the task, as emitted `task.update` events. Exactly one outcome ends it: the
 * worker's, WORKER_LOST when the worker goes, or CANCELLED when a cancel is not answered in time.
 * The context keeps a summary; the whole outcome goes to the followers (and the result cache).
 */
export interface TaskProxyInput {
  taskId: string;
  sessionId: string;
  workerId: string;
  tool: string;
  enqueuedAtMs: number;
  /** The follower that submitted the task: when it goes away, the task is cancelled. */
  ownerId: string;
  /** Who submitted it, for the audit log (opaque here). */
  origin?: string;
}

export type TaskProxyEvent =
  | { type: 'task.progressed'; progress: TaskProgress; atMs: number }
  | { type: 'task.logged'; log: TaskLog; atMs: number }
  | { type: 'task.finished'; outcome: TaskOutcome; atMs: number }
  | { type: 'task.cancel'; reason: string; atMs: number }
  /** A follower stops following; the owner leaving cancels the task. */
  | { type: 'task.detached'; followerId: string; atMs: number }
  | { type: 'worker.lost'; reason: string; atMs: number };

export interface TaskProxyContext extends TaskProxyInput {
  startedAtMs: number;
  cancelledAtMs: number;
  endedAtMs: number;
  progress: TaskProgress | null;
  outcome: TaskOutcomeSummary | null;
}

export interface TaskProxyEndedEvent { type: 'task.ended'; taskId: string; outcome: TaskOutcomeSummary; atMs: number }
export type TaskProxyEmitted = { type: 'task.update'; taskId: string; update: TaskUpdate };

/** An ended task as the coordinator's effects see it: its result cache, the metrics and the audit log. */
export interface KeptOutcome { taskId: string; sessionId: string; tool: string; origin: string; outcome: TaskOutcome }

export const TASK_CANCEL_GRACE_MS = 10_000;

/** A cancel the worker did not answer in time: the task ends CANCELLED when the grace runs out. */
const graceOutcome = (c: TaskProxyContext): TaskOutcome => cancelledOutcome(c.workerId, c.enqueuedAtMs, c.startedAtMs, c.cancelledAtMs + TASK_CANCEL_GRACE_MS);

/** The actions of every end: the outcome goes to the followers (`finish`) and to the result cache (`keepOutcome`). */
const endWith = <E>(end: (args: { context: TaskProxyContext; event: E }) => { outcome: TaskOutcome; atMs: number }) => [
  { type: 'finish' as const, params: (args: { context: TaskProxyContext; event: E }) => end(args) },
  { type: 'keepOutcome' as const, params: (args: { context: TaskProxyContext; event: E }) => ({ taskId: args.context.taskId, sessionId: args.context.sessionId, tool: args.context.tool, origin: args.context.origin ?? '', outcome: end(args).outcome }) },
];

export const taskProxyMachine = setup({
  types: {
    context: {} as TaskProxyContext,
    input: {} as TaskProxyInput,
    events: {} as TaskProxyEvent,
    emitted: {} as TaskProxyEmitted,
    output: {} as TaskOutcomeSummary,
  },
  guards: {
    isOwner: ({ context }, p: { followerId: string }) => context.ownerId !== '' && p.followerId === context.ownerId,
  },
  actions: {
    publish: emit(({ context }, p: { update: TaskUpdate }) => ({ type: 'task.update' as const, taskId: context.taskId, update: p.update })),
    finish: enqueueActions(({ context, enqueue }, p: { outcome: TaskOutcome; atMs: number }) => {
      enqueue.assign({ outcome: summarizeOutcome(p.outcome), endedAtMs: p.atMs });
      enqueue.emit({ type: 'task.update', taskId: context.taskId, update: { type: 'outcome', outcome: p.outcome } });
    }),
    // Provided by the coordinator: the whole outcome goes to its result cache, for followers who come late, and to the metrics and audit log.
    keepOutcome: enqueueActions((_, _p: KeptOutcome) => {}),
    markStarted: assign({ startedAtMs: ({ context }, p: { atMs: number }) => context.startedAtMs || p.atMs }),
    askWorkerToCancel: enqueueActions(({ context, enqueue, system }, p: { reason: string; atMs: number }) => {
      enqueue.assign({ cancelledAtMs: p.atMs });
      const connection = system.get(connectionIdOf(context.workerId));
      const event = { type: 'worker.command', command: { kind: 'cancel_task', taskId: context.taskId, sessionId: context.sessionId, reason: p.reason } satisfies WorkerCommandMessage };
      if (connection) enqueue.sendTo(connection, event);
    }),
    announceEnd: sendParent(({ context }): TaskProxyEndedEvent => ({
      type: 'task.ended',
      taskId: context.taskId,
      outcome: context.outcome!,
      // A result is dated by the worker's own clock; an error by when it happened here.
      atMs: context.outcome!.type === 'result' ? context.outcome!.metadata.finishedAtMs : context.endedAtMs || context.cancelledAtMs || context.startedAtMs || context.enqueuedAtMs,
    })),
  },
  delays: {
    cancelGrace: TASK_CANCEL_GRACE_MS,
  },
}).createMachine({
  id: 'taskProxy',
  context: ({ input }) => ({ ...input, startedAtMs: 0, cancelledAtMs: 0, endedAtMs: 0, progress: null, outcome: null }),
  initial: 'live',
  states: {
    live: {
      on: {
        'task.progressed': {
          actions: [
            { type: 'markStarted', params: ({ event }) => event },
            assign({ progress: ({ event }) => event.progress }),
            { type: 'publish', params: ({ event }) => ({ update: { type: 'progress' as const, progress: event.progress } }) },
          ],
        },
        'task.logged': {
          actions: [{ type: 'markStarted', params: ({ event }) => event }, { type: 'publish', params: ({ event }) => ({ update: { type: 'log' as const, log: event.log } }) }],
        },
        'task.finished': {
          target: 'done',
          actions: endWith(({ event }: { event: Extract<TaskProxyEvent, { type: 'task.finished' }> }) => event),
        },
        'worker.lost': {
          target: 'done',
          actions: endWith(({ event }: { event: Extract<TaskProxyEvent, { type: 'worker.lost' }> }) => ({ outcome: workerLostOutcome(event.reason), atMs: event.atMs })),
        },
      },
      initial: 'waiting',
      states: {
        // Sent to the worker: queued there, or running once it says so.
        waiting: {
          on: {
            'task.cancel': { target: 'cancelling', actions: { type: 'askWorkerToCancel', params: ({ event }) => event } },
            'task.detached': { guard: { type: 'isOwner', params: ({ event }) => event }, target: 'cancelling', actions: { type: 'askWorkerToCancel', params: ({ event }) => ({ reason: 'the client that started the task went away', atMs: event.atMs }) } },
          },
        },
        cancelling: {
          after: {
            cancelGrace: {
              target: '#taskProxy.done',
              actions: endWith(({ context }) => ({ outcome: graceOutcome(context), atMs: context.cancelledAtMs + TASK_CANCEL_GRACE_MS })),
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

export type TaskProxyActor = ActorRefFrom<typeof taskProxyMachine>;

/** Task proxies are found by this systemId. */
export const taskProxyIdOf = (taskId: string): string => `task:${taskId}`;

/** A live task's state as followers see it: running once the worker said anything about it. */
export const liveTaskStateOf = (ctx: TaskProxyContext): 'queued' | 'running' => (ctx.startedAtMs > 0 ? 'running' : 'queued');
