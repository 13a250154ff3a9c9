import { assign, enqueueActions, setup, type ActorRefFrom, type AnyActorRef } from 'xstate';
import { supervisorIdOf, supervisorMachine, type SupervisorInput, type SupervisorParentEvent } from './supervisor.machine.js';
import type { BackoffPolicy, RestartIntensity } from './supervision.js';

/**
 * `codegen-mcp up`: a coordinator and N workers as child processes, each under a supervisor
 * (permanent: a process that exits is started again after a backoff; too many restarts escalate,
 * and everything stops with exit status 1). Workers start once the coordinator says where it
 * listens. A stop drains in reverse start order: the workers first (their running tasks finish
 * and reach the coordinator), then the coordinator.
 */
export interface ProcessSpec {
  name: string;
  args: string[];
  env: Record<string, string>;
}

export interface UpInput {
  coordinator: ProcessSpec;
  /** The workers, given the coordinator's address once it is known. */
  workers: ProcessSpec[];
  intensity: RestartIntensity;
  backoff: BackoffPolicy;
  /** How long one process may take to stop before it is killed. */
  shutdownTimeoutMs: number;
  seed: number;
}

export interface UpContext extends UpInput {
  grpcPort: number;
  httpPort: number;
  /** Supervisors still running, in start order. */
  running: string[];
  escalation: string;
}

export type UpEvent =
  | { type: 'process.ready'; name: string; grpcPort?: number; httpPort?: number }
  | { type: 'up.stop' }
  | SupervisorParentEvent
  | { type: `xstate.done.actor.${string}`; output?: unknown }
  | { type: `xstate.error.actor.${string}`; error: unknown };

export type UpEmitted =
  | { type: 'up.ready'; grpcPort: number; httpPort: number; workers: number }
  | { type: 'up.restarting'; name: string; reason: string }
  | { type: 'up.escalated'; name: string; reason: string };

export const UP_ID = 'up';

const spec = (ctx: UpContext, p: ProcessSpec, seed: number): SupervisorInput => ({
  childId: p.name,
  restart: 'permanent',
  intensity: ctx.intensity,
  backoff: ctx.backoff,
  shutdownTimeoutMs: ctx.shutdownTimeoutMs,
  // The process logic turns this into SIGTERM (drain); past the timeout, the supervisor stops it outright (SIGKILL).
  stopEvent: { type: 'process.stop' },
  childInput: p as unknown as Record<string, unknown>,
  seed,
});

export const upMachine = setup({
  types: {
    context: {} as UpContext,
    input: {} as UpInput,
    events: {} as UpEvent,
    emitted: {} as UpEmitted,
  },
  actors: {
    // Provided by the up command: a supervisor whose child is a process.
    processSupervisor: supervisorMachine,
  },
  guards: {
    nothingRuns: ({ context }) => context.running.length === 0,
    onlyCoordinatorRuns: ({ context }) => context.running.every((id) => id === supervisorIdOf(context.coordinator.name)),
  },
  actions: {
    stopSupervisors: enqueueActions(({ context, enqueue, system }, p: { which: 'workers' | 'coordinator' }) => {
      const coordinator = supervisorIdOf(context.coordinator.name);
      for (const id of [...context.running].reverse()) {
        if ((p.which === 'coordinator') !== (id === coordinator)) continue;
        const sup = system.get(id) as AnyActorRef | undefined;
        if (sup) enqueue.sendTo(sup, { type: 'supervisor.stop' });
      }
    }),
  },
}).createMachine({
  id: 'up',
  context: ({ input }) => ({ ...input, grpcPort: 0, httpPort: 0, running: [], escalation: '' }),
  entry: enqueueActions(({ context, enqueue }) => {
    const id = supervisorIdOf(context.coordinator.name);
    enqueue.spawnChild('processSupervisor', { id, systemId: id, input: spec(context, context.coordinator, context.seed) });
    enqueue.assign({ running: [id] });
  }),
  on: {
    'supervisor.child_exited': {
      actions: enqueueActions(({ enqueue, event }) => {
        if (event.restarting) enqueue.emit({ type: 'up.restarting', name: event.childId, reason: event.reason });
      }),
    },
    'supervisor.escalated': {
      target: '.stopping',
      actions: [
        assign({ escalation: ({ event }) => `${event.childId}: ${event.reason}` }),
        enqueueActions(({ enqueue, event }) => enqueue.emit({ type: 'up.escalated', name: event.childId, reason: event.reason })),
      ],
    },
    'xstate.done.actor.*': {
      actions: enqueueActions(({ context, enqueue, event }) => {
        const id = event.type.slice('xstate.done.actor.'.length);
        enqueue.stopChild(id);
        enqueue.assign({ running: context.running.filter((r) => r !== id) });
      }),
    },
    'up.stop': '.stopping',
  },
  initial: 'starting',
  states: {
    starting: {
      on: {
        'process.ready': {
          guard: ({ context, event }) => event.name === context.coordinator.name,
          target: 'running',
          actions: enqueueActions(({ context, enqueue, event, system }) => {
            const grpcPort = event.grpcPort ?? 0;
            const httpPort = event.httpPort ?? 0;
            // A restarted coordinator binds the same ports, so the workers find it again.
            const coordinator: ProcessSpec = { ...context.coordinator, env: { ...context.coordinator.env, GRPC_PORT: String(grpcPort), ...(httpPort ? { HTTP_PORT: String(httpPort) } : {}) } };
            const sup = system.get(supervisorIdOf(context.coordinator.name)) as AnyActorRef | undefined;
            if (sup) enqueue.sendTo(sup, { type: 'supervisor.update_input', childInput: coordinator as unknown as Record<string, unknown> });
            const running = [...context.running];
            context.workers.forEach((w, i) => {
              const worker: ProcessSpec = { ...w, env: { ...w.env, COORDINATOR_ADDR: `127.0.0.1:${grpcPort}` } };
              const id = supervisorIdOf(w.name);
              enqueue.spawnChild('processSupervisor', { id, systemId: id, input: spec(context, worker, context.seed + i + 1) });
              running.push(id);
            });
            enqueue.assign({ grpcPort, httpPort, coordinator, running });
            enqueue.emit({ type: 'up.ready', grpcPort, httpPort, workers: context.workers.length });
          }),
        },
      },
    },
    running: {},
    // Reverse start order: every worker drains, then the coordinator stops.
    stopping: {
      entry: { type: 'stopSupervisors', params: { which: 'workers' } },
      always: { guard: 'onlyCoordinatorRuns', target: 'stoppingCoordinator' },
    },
    stoppingCoordinator: {
      entry: { type: 'stopSupervisors', params: { which: 'coordinator' } },
      always: { guard: 'nothingRuns', target: 'stopped' },
    },
    stopped: { type: 'final' },
  },
});

export type UpActor = ActorRefFrom<typeof upMachine>;
