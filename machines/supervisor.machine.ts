import { and, assign, enqueueActions, raise, sendParent, setup, type ActorRefFrom, type AnyActorLogic, type EventObject, type SnapshotFrom } from 'xstate';
import { backoffDelay, nextSeed, reasonOf, shouldRestart, stopOrphansOf, unitOf, type BackoffPolicy, type RestartIntensity, type RestartType } from './supervision.js';

/**
 * The one supervisor of the system, after Erlang/OTP: it starts one child (the logic provided as
 * `child`), and when the child ends it restarts it or not by its restart type (permanent,
 * transient, temporary). Restarts wait an exponential backoff, as a state a viewer can draw; more
 * than `intensity.maxRestarts` restarts within `intensity.windowMs` escalate to the parent. A
 * stop asks the child to finish (its `stopEvent`) and stops it outright after
 * `shutdownTimeoutMs`. Parents stop several supervisors in reverse start order.
 *
 * Whatever else the child sends its parent passes through to the supervisor's parent, so the
 * supervisor is invisible to the events of the tree; parents reach the child by its systemId.
 */
export interface SupervisorInput {
  /** The child's id and systemId, e.g. 'link' or 'session:<id>'. */
  childId: string;
  restart: RestartType;
  intensity: RestartIntensity;
  backoff: BackoffPolicy;
  /** How long a graceful stop may take before the child is stopped outright. */
  shutdownTimeoutMs: number;
  /** Sent to the child to ask it to finish; null: a stop stops it at once. */
  stopEvent: StopEvent | null;
  /** The child's input (plain data). Every start passes it again, with `supervision` added. */
  childInput: Record<string, unknown>;
  /** Seeds the backoff jitter (machines never call Math.random). */
  seed: number;
}

/** An event with its payload, as plain data. */
export type StopEvent = { type: string } & Record<string, unknown>;

/** What a (re)started child is told about its supervision, in `input.supervision`. */
export interface Supervision {
  /** Restarts so far; 0 on the first start. */
  restarts: number;
  /** How the previous run ended ('' on the first start). */
  lastExit: string;
}

export interface SupervisorContext extends SupervisorInput {
  /** Restarts inside the current intensity window. */
  recent: number;
  /** Restarts since the supervisor started. */
  total: number;
  lastExit: string;
  /** Whether the last exit was abnormal (a crash, or an abnormal output). */
  lastAbnormal: boolean;
  escalation: string;
  end: SupervisorOutput['end'] | '';
}

export type SupervisorEvent =
  /** Stop the child: with `stopEvent`, ask it with that event instead of the configured one. */
  | { type: 'supervisor.stop'; stopEvent?: StopEvent }
  /** Future (re)starts use this input: a child that learned something worth keeping (a port it bound). */
  | { type: 'supervisor.update_input'; childInput: Record<string, unknown> }
  | { type: 'restart.expired' }
  | { type: `xstate.done.actor.${string}`; output?: unknown }
  | { type: `xstate.error.actor.${string}`; error: unknown }
  | EventObject;

/** Facts a supervisor tells its parent. */
export type SupervisorParentEvent =
  | { type: 'supervisor.child_exited'; childId: string; abnormal: boolean; reason: string; restarting: boolean }
  | { type: 'supervisor.escalated'; childId: string; reason: string };

/** A child that ends with this output ended abnormally, like a crash (a process that exited non-zero). */
export interface AbnormalExit { exit: 'abnormal'; reason: string }
const isAbnormal = (output: unknown): output is AbnormalExit => typeof output === 'object' && output !== null && (output as { exit?: unknown }).exit === 'abnormal';

export interface SupervisorOutput {
  childId: string;
  /** 'stopped' (asked to), 'exited' (ended, not restarted) or 'escalated' (restarted too often). */
  end: 'stopped' | 'exited' | 'escalated';
  reason: string;
}

/** Supervisors are named after their child. */
export const supervisorIdOf = (childId: string): string => `sup:${childId}`;

export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    input: {} as SupervisorInput,
    events: {} as SupervisorEvent,
    output: {} as SupervisorOutput,
  },
  actors: {
    // Provided by whoever uses the supervisor: the logic it keeps running.
    child: {} as AnyActorLogic,
  },
  guards: {
    restartsAfterNormalExit: ({ context }) => shouldRestart(context.restart, false),
    endedAbnormally: ({ event }) => isAbnormal((event as { output?: unknown }).output),
    restartsAfterCrash: ({ context }) => shouldRestart(context.restart, true),
    hasRestartBudget: ({ context }) => context.recent < context.intensity.maxRestarts,
    hasStopEvent: ({ context }) => context.stopEvent !== null,
  },
  actions: {
    startChild: enqueueActions(({ context, enqueue }) => {
      const supervision: Supervision = { restarts: context.total, lastExit: context.lastExit };
      enqueue.spawnChild('child', { id: context.childId, systemId: context.childId, input: { ...context.childInput, supervision } });
    }),
    removeChild: enqueueActions(({ context, enqueue, self }) => {
      const child = self.getSnapshot().children[context.childId];
      enqueue(() => stopOrphansOf(child));
      enqueue.stopChild(context.childId);
    }),
    askChildToStop: enqueueActions(({ context, enqueue, self }) => {
      const child = self.getSnapshot().children[context.childId];
      if (child && context.stopEvent) enqueue.sendTo(child, context.stopEvent);
    }),
    noteExit: assign(({ event }) => {
      if (event.type.startsWith('xstate.error.actor.')) return { lastExit: `crashed: ${reasonOf((event as { error?: unknown }).error)}`, lastAbnormal: true };
      const output = (event as { output?: unknown }).output;
      return isAbnormal(output) ? { lastExit: `exited abnormally: ${output.reason}`, lastAbnormal: true } : { lastExit: 'exited normally', lastAbnormal: false };
    }),
    countRestart: enqueueActions(({ context, enqueue }) => {
      enqueue.assign({ recent: context.recent + 1, total: context.total + 1, seed: nextSeed(context.seed) });
      // Each restart leaves the window after windowMs (the actor clock: simulated in tests).
      enqueue.raise({ type: 'restart.expired' }, { delay: context.intensity.windowMs });
    }),
    tellExit: sendParent(({ context }, p: { restarting: boolean }): SupervisorParentEvent => ({
      type: 'supervisor.child_exited',
      childId: context.childId,
      abnormal: context.lastAbnormal,
      reason: context.lastExit,
      restarting: p.restarting,
    })),
    escalate: enqueueActions(({ context, enqueue }) => {
      const reason = `${context.childId} restarted ${context.recent} times within ${context.intensity.windowMs} ms; last: ${context.lastExit}`;
      enqueue.assign({ escalation: reason });
      enqueue.sendParent({ type: 'supervisor.escalated', childId: context.childId, reason } satisfies SupervisorParentEvent);
    }),
    // The supervisor is transparent: the child's other parent-bound events go one level up.
    forwardToParent: enqueueActions(({ event, enqueue }) => {
      if (!event.type.startsWith('xstate.') && !event.type.startsWith('supervisor.') && event.type !== 'restart.expired') enqueue.sendParent(event);
    }),
  },
  delays: {
    restartDelay: ({ context }) => backoffDelay(Math.max(0, context.recent - 1), context.backoff, unitOf(context.seed)),
    shutdownTimeout: ({ context }) => Math.max(0, context.shutdownTimeoutMs),
  },
}).createMachine({
  id: 'supervisor',
  context: ({ input }) => ({ ...input, recent: 0, total: 0, lastExit: '', lastAbnormal: false, escalation: '', end: '' }),
  initial: 'running',
  on: {
    'restart.expired': { actions: assign({ recent: ({ context }) => Math.max(0, context.recent - 1) }) },
    'supervisor.update_input': { actions: assign({ childInput: ({ event }) => (event as Extract<SupervisorEvent, { type: 'supervisor.update_input' }>).childInput }) },
    '*': { actions: 'forwardToParent' },
  },
  states: {
    running: {
      entry: 'startChild',
      on: {
        'xstate.done.actor.*': [
          { guard: and(['endedAbnormally', 'restartsAfterCrash']), target: 'restarting', actions: 'noteExit' },
          { guard: 'endedAbnormally', target: 'exited', actions: ['noteExit', { type: 'tellExit', params: { restarting: false } }] },
          { guard: 'restartsAfterNormalExit', target: 'restarting', actions: 'noteExit' },
          { target: 'exited', actions: ['noteExit', { type: 'tellExit', params: { restarting: false } }] },
        ],
        'xstate.error.actor.*': [
          { guard: 'restartsAfterCrash', target: 'restarting', actions: 'noteExit' },
          { target: 'exited', actions: ['noteExit', { type: 'tellExit', params: { restarting: false } }] },
        ],
        'supervisor.stop': {
          target: 'stopping',
          actions: assign({ stopEvent: ({ context, event }) => (context.stopEvent && (event as { stopEvent?: StopEvent }).stopEvent) || context.stopEvent }),
        },
      },
    },
    restarting: {
      entry: 'removeChild',
      // The exit is told once the budget decided it: a restart, or (beyond the budget) no restart and an escalation.
      always: [
        { guard: 'hasRestartBudget', target: 'backoff', actions: ['countRestart', { type: 'tellExit', params: { restarting: true } }] },
        { target: 'escalated', actions: { type: 'tellExit', params: { restarting: false } } },
      ],
    },
    backoff: {
      after: { restartDelay: 'running' },
      on: { 'supervisor.stop': 'stopped' },
    },
    stopping: {
      entry: 'askChildToStop',
      always: { guard: ({ context }) => context.stopEvent === null, target: 'stopped' },
      after: { shutdownTimeout: 'stopped' },
      on: {
        'xstate.done.actor.*': { target: 'stopped', actions: 'noteExit' },
        'xstate.error.actor.*': { target: 'stopped', actions: 'noteExit' },
      },
    },
    stopped: { type: 'final', entry: ['removeChild', assign({ end: 'stopped' as const })] },
    exited: { type: 'final', entry: ['removeChild', assign({ end: 'exited' as const })] },
    escalated: { type: 'final', entry: ['removeChild', 'escalate', assign({ end: 'escalated' as const })] },
  },
  output: ({ context }) => ({ childId: context.childId, end: context.end || 'stopped', reason: context.escalation || context.lastExit }),
});

export type SupervisorActor = ActorRefFrom<typeof supervisorMachine>;
export type SupervisorSnapshot = SnapshotFrom<typeof supervisorMachine>;

/** A child spec with the usual defaults, for composing supervisors in the roots. */
export function supervisorInput(spec: Partial<SupervisorInput> & Pick<SupervisorInput, 'childId' | 'restart'>): SupervisorInput {
  return {
    intensity: { maxRestarts: 5, windowMs: 60_000 },
    backoff: { initialMs: 250, maxMs: 30_000, factor: 2 },
    shutdownTimeoutMs: 5_000,
    stopEvent: null,
    childInput: {},
    seed: 1,
    ...spec,
  };
}
