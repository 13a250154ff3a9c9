import { assign, sendParent, setup, type ActorRefFrom } from 'xstate';

/**
 * The coordinator's view of one registered worker: waiting for its task stream, online while
 * the stream is open and heartbeats arrive, lost (final) otherwise. Losing it is what ends the
 * worker's tasks with WORKER_LOST and fails its sessions.
 */
export interface WorkerConnectionInput {
  workerId: string;
  registrationId: string;
  maxSessions: number;
  isolation: string;
  hostname: string;
  heartbeatTimeoutMs: number;
}

/** Opaque handle of an open task stream; only the provided `workerStream` logic looks inside. */
export interface StreamHandle { readonly kind: 'stream-handle' }

export type WorkerConnectionEvent =
  | { type: 'worker.heartbeat' }
  | { type: 'stream.opened'; stream: StreamHandle }
  | { type: 'stream.closed'; reason: string }
  | { type: 'worker.deregister'; reason: string };

export interface WorkerConnectionContext extends WorkerConnectionInput {
  lostReason: string;
  lastHeartbeatMs: number;
}

export type WorkerConnectionParentEvent =
  | { type: 'worker.online'; workerId: string; registrationId: string }
  | { type: 'worker.lost'; workerId: string; registrationId: string; reason: string };

export const workerConnectionMachine = setup({
  types: {
    context: {} as WorkerConnectionContext,
    input: {} as WorkerConnectionInput,
    events: {} as WorkerConnectionEvent,
  },
  actors: {
    // Provided by the coordinator: owns the open stream (sends commands, routes replies and updates).
    workerStream: {} as import('xstate').CallbackActorLogic<import('xstate').EventObject, { workerId: string; registrationId: string; stream: StreamHandle }>,
  },
  actions: {
    setLostReason: assign({ lostReason: (_, p: { reason: string }) => p.reason }),
    touch: assign({ lastHeartbeatMs: () => Date.now() }),
    announceOnline: sendParent(({ context }): WorkerConnectionParentEvent => ({ type: 'worker.online', workerId: context.workerId, registrationId: context.registrationId })),
    announceLost: sendParent(({ context }): WorkerConnectionParentEvent => ({ type: 'worker.lost', workerId: context.workerId, registrationId: context.registrationId, reason: context.lostReason })),
  },
  delays: {
    heartbeatTimeout: ({ context }) => context.heartbeatTimeoutMs,
  },
}).createMachine({
  id: 'workerConnection',
  context: ({ input }) => ({ ...input, lostReason: '', lastHeartbeatMs: Date.now() }),
  initial: 'awaitingStream',
  on: {
    'worker.deregister': { target: '.lost', actions: { type: 'setLostReason', params: ({ event }) => ({ reason: `deregistered: ${event.reason}` }) } },
  },
  states: {
    awaitingStream: {
      after: { heartbeatTimeout: { target: 'lost', actions: { type: 'setLostReason', params: { reason: 'no task stream and no heartbeat before the deadline' } } } },
      on: {
        'worker.heartbeat': { target: 'awaitingStream', reenter: true, actions: 'touch' },
        'stream.opened': 'online',
      },
    },
    online: {
      entry: 'announceOnline',
      invoke: {
        id: 'stream',
        src: 'workerStream',
        input: ({ context, event }) => ({ workerId: context.workerId, registrationId: context.registrationId, stream: (event as Extract<WorkerConnectionEvent, { type: 'stream.opened' }>).stream }),
        onError: { target: 'lost', actions: { type: 'setLostReason', params: { reason: 'task stream failed' } } },
      },
      on: {
        'stream.closed': { target: 'lost', actions: { type: 'setLostReason', params: ({ event }) => ({ reason: `task stream closed: ${event.reason}` }) } },
        // A second stream from the same registration replaces nothing: the first one is authoritative.
      },
      initial: 'watching',
      states: {
        watching: {
          after: { heartbeatTimeout: { target: '#workerConnection.lost', actions: { type: 'setLostReason', params: { reason: 'heartbeats stopped' } } } },
          on: { 'worker.heartbeat': { target: 'watching', reenter: true, actions: 'touch' } },
        },
      },
    },
    lost: {
      type: 'final',
      entry: 'announceLost',
    },
  },
});

export type WorkerConnectionActor = ActorRefFrom<typeof workerConnectionMachine>;
