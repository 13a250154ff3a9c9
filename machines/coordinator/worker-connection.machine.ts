import { assign, enqueueActions, sendParent, setup, type ActorRefFrom, type CallbackActorLogic, type EventObject } from 'xstate';
import type { SessionDescription } from '../domain/sessions.js';
import type { TaskSpec } from '../domain/tasks.js';
import { atMsOf } from '../domain/events.js';

/**
 * The coordinator's side of one registration of a worker, a child of that worker's shard:
 * waiting for the worker's task stream, online while the stream is open and heartbeats arrive,
 * lost (final) otherwise. It is the one writer to the worker: proxies send it `worker.command`
 * events, and its `workerStream` logic (the open gRPC stream) writes them and routes what the
 * worker sends back to the actors it is about, by systemId.
 */
export interface WorkerConnectionInput {
  workerId: string;
  registrationId: string;
  heartbeatTimeoutMs: number;
  /** When the registration happened: the first deadline counts from here. */
  atMs: number;
}

/**
 * Open task streams are named by an id: the network object itself stays with the stream logic
 * (like a file descriptor table), so contexts, inputs and snapshots stay plain data.
 */

/** A command for the worker, as the stream logic encodes it. */
/** A command for the worker; one whose reply its sender waits for names the request id the reply carries. */
export type WorkerCommandMessage = { requestId?: string } & (
  | { kind: 'create_session'; description: SessionDescription }
  | { kind: 'destroy_session'; sessionId: string }
  | { kind: 'assign_task'; spec: TaskSpec }
  | { kind: 'cancel_task'; taskId: string; sessionId: string; reason: string }
  | { kind: 'put_metadata'; sessionId: string; metadata: Record<string, string>; merge: boolean }
);

export type WorkerConnectionEvent =
  | { type: 'worker.heartbeat'; atMs: number }
  | { type: 'stream.opened'; streamId: string; atMs: number }
  | { type: 'stream.closed'; reason: string; atMs: number }
  | { type: 'worker.deregister'; reason: string; atMs: number }
  | { type: 'worker.command'; command: WorkerCommandMessage }
  | { type: 'connection.close'; reason: string; atMs: number };

export interface WorkerConnectionContext extends Omit<WorkerConnectionInput, 'atMs'> {
  lostReason: string;
  lastSeenMs: number;
}

export type WorkerConnectionParentEvent =
  | { type: 'worker.online'; workerId: string; registrationId: string; atMs: number }
  | { type: 'worker.lost'; workerId: string; registrationId: string; reason: string; atMs: number; deregistered: boolean };

export const connectionIdOf = (workerId: string): string => `connection:${workerId}`;

export const workerConnectionMachine = setup({
  types: {
    context: {} as WorkerConnectionContext,
    input: {} as WorkerConnectionInput,
    events: {} as WorkerConnectionEvent,
  },
  actors: {
    // Provided by the coordinator: owns the open stream (writes commands, routes what comes back).
    workerStream: {} as CallbackActorLogic<EventObject, { workerId: string; registrationId: string; streamId: string }>,
  },
  actions: {
    lose: assign({ lostReason: (_, p: { reason: string }) => p.reason }),
    seen: assign({ lastSeenMs: ({ event }) => atMsOf(event) }),
    // Silence for a whole timeout: the worker was lost when the timeout ran out.
    expire: assign({ lastSeenMs: ({ context }) => (context.lastSeenMs > 0 ? context.lastSeenMs + context.heartbeatTimeoutMs : 0) }),
    announceOnline: sendParent(({ context, event }): WorkerConnectionParentEvent => ({ type: 'worker.online', workerId: context.workerId, registrationId: context.registrationId, atMs: atMsOf(event) })),
    announceLost: sendParent(({ context }): WorkerConnectionParentEvent => ({
      type: 'worker.lost',
      workerId: context.workerId,
      registrationId: context.registrationId,
      reason: context.lostReason,
      atMs: context.lastSeenMs,
      deregistered: context.lostReason.startsWith('deregistered'),
    })),
    write: enqueueActions(({ enqueue, event }) => enqueue.sendTo('stream', event)),
  },
  delays: {
    heartbeatTimeout: ({ context }) => context.heartbeatTimeoutMs,
    // How long a worker that deregistered may take to close its stream.
    leaveTimeout: 5_000,
  },
}).createMachine({
  id: 'workerConnection',
  context: ({ input }) => ({ workerId: input.workerId, registrationId: input.registrationId, heartbeatTimeoutMs: input.heartbeatTimeoutMs, lostReason: '', lastSeenMs: input.atMs }),
  initial: 'awaitingStream',
  on: {
    'worker.deregister': { target: '.lost', actions: [{ type: 'lose', params: ({ event }) => ({ reason: `deregistered: ${event.reason}` }) }, 'seen'] },
    'connection.close': { target: '.lost', actions: [{ type: 'lose', params: ({ event }) => ({ reason: event.reason }) }, 'seen'] },
  },

  states: {
    awaitingStream: {
      after: { heartbeatTimeout: { target: 'lost', actions: [{ type: 'lose', params: { reason: 'no task stream and no heartbeat before the deadline' } }, 'expire'] } },
      on: {
        'worker.heartbeat': { target: 'awaitingStream', reenter: true, actions: 'seen' },
        'stream.opened': { target: 'online', actions: 'seen' },
        // Commands only go to an open stream; proxies send none before the worker is online.
        'worker.command': {},
      },
    },
    online: {
      entry: 'announceOnline',
      invoke: {
        id: 'stream',
        src: 'workerStream',
        input: ({ context, event }) => ({ workerId: context.workerId, registrationId: context.registrationId, streamId: (event as Extract<WorkerConnectionEvent, { type: 'stream.opened' }>).streamId }),
        onError: { target: 'lost', actions: { type: 'lose', params: { reason: 'task stream failed' } } },
      },
      on: {
        'stream.closed': [
          // Leaving: what the worker wrote before closing its stream has all arrived.
          { guard: ({ context }) => context.lostReason.startsWith('deregistered'), target: 'lost', actions: 'seen' },
          { target: 'lost', actions: [{ type: 'lose', params: ({ event }) => ({ reason: `task stream closed: ${event.reason}` }) }, 'seen'] },
        ],
        'worker.command': { actions: 'write' },
        // A second stream from the same registration replaces nothing: the first one is authoritative.
        'stream.opened': {},
      },
      initial: 'watching',
      states: {
        watching: {
          after: { heartbeatTimeout: { target: '#workerConnection.lost', actions: [{ type: 'lose', params: { reason: 'heartbeats stopped' } }, 'expire'] } },
          on: {
            'worker.heartbeat': { target: 'watching', reenter: true, actions: 'seen' },
            // The deregistration is a separate call: it can overtake the last results on the stream. Wait for the stream to end.
            'worker.deregister': { target: 'leaving', actions: [{ type: 'lose', params: ({ event }) => ({ reason: `deregistered: ${event.reason}` }) }, 'seen'] },
          },
        },
        leaving: {
          after: { leaveTimeout: { target: '#workerConnection.lost' } },
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
