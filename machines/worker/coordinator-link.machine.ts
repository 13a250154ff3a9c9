import { assign, sendParent, setup, spawnChild, stopChild, type ActorRefFrom, type CallbackActorLogic, type EventObject, type PromiseActorLogic } from 'xstate';
import type { SessionReport } from '../domain/sessions.js';
import { backoffDelay, nextSeed, reasonOf, unitOf, type BackoffPolicy } from '../supervision.js';
import type { WorkerCommand } from './worker.machine.js';

/**
 * The worker's link to the coordinator (a permanent child of the worker's supervisor): collect
 * the sessions the worker holds, register with them, then heartbeat and hold the task stream;
 * when registration, a heartbeat or the stream fails, wait a capped exponential backoff and
 * register again (with the sessions held then: the coordinator reconciles).
 */
export interface CoordinatorLinkInput {
  workerId: string;
  backoff: BackoffPolicy;
  seed: number;
}

export interface LinkRegistration { registrationId: string; heartbeatIntervalMs: number; atMs: number }

export type CoordinatorLinkEvent =
  | WorkerCommand
  | { type: 'link.sessions'; sessions: SessionReport[] }
  | { type: 'link.failed'; reason: string }
  | { type: 'link.deregister'; reason: string };

export interface CoordinatorLinkContext extends CoordinatorLinkInput {
  attempt: number;
  registrationId: string;
  heartbeatIntervalMs: number;
  lastError: string;
}

export type CoordinatorLinkParentEvent =
  | { type: 'link.collect' }
  | { type: 'link.registered'; registrationId: string; atMs: number }
  | { type: 'link.down'; reason: string }
  /** The coordinator refused this worker's credential: retrying cannot help, so the worker stops. */
  | { type: 'link.refused'; reason: string };

const TASK_STREAM_ID = 'taskStream';

/**
 * A wrong or missing WORKER_TOKEN (or a client certificate the coordinator does not take) is not
 * a network fault: the same credential would be refused forever, so registration stops.
 */
export const isCredentialRefusal = (code: unknown): boolean => code === 'UNAUTHENTICATED' || code === 'PERMISSION_DENIED';

export const coordinatorLinkMachine = setup({
  types: {
    context: {} as CoordinatorLinkContext,
    input: {} as CoordinatorLinkInput,
    events: {} as CoordinatorLinkEvent,
  },
  actors: {
    register: {} as PromiseActorLogic<LinkRegistration, { workerId: string; attempt: number; sessions: SessionReport[] }>,
    heartbeats: {} as CallbackActorLogic<EventObject, { workerId: string; registrationId: string; intervalMs: number }>,
    taskStream: {} as CallbackActorLogic<EventObject, { workerId: string; registrationId: string }>,
    deregister: {} as PromiseActorLogic<void, { workerId: string; registrationId: string; reason: string }>,
  },
  actions: {
    forwardCommand: sendParent((_, p: { command: WorkerCommand }) => p.command),
    announceRegistered: sendParent(({ context }, p: { atMs: number }): CoordinatorLinkParentEvent => ({ type: 'link.registered', registrationId: context.registrationId, atMs: p.atMs })),
    announceDown: sendParent(({ context }): CoordinatorLinkParentEvent => ({ type: 'link.down', reason: context.lastError })),
    askForSessions: sendParent((): CoordinatorLinkParentEvent => ({ type: 'link.collect' })),
    announceRefused: sendParent(({ context }): CoordinatorLinkParentEvent => ({ type: 'link.refused', reason: context.lastError })),
    setError: assign({ lastError: (_, p: { error: string }) => p.error }),
  },
  guards: {
    credentialRefused: ({ event }) => isCredentialRefusal((event as { error?: { code?: unknown } }).error?.code),
  },
  delays: {
    reconnectDelay: ({ context }) => backoffDelay(context.attempt, context.backoff, unitOf(context.seed)),
  },
}).createMachine({
  id: 'coordinatorLink',
  context: ({ input }) => ({ workerId: input.workerId, backoff: input.backoff, seed: input.seed, attempt: 0, registrationId: '', heartbeatIntervalMs: 0, lastError: '' }),
  initial: 'registering',
  on: {
    'link.deregister': '.closed',
  },
  states: {
    registering: {
      initial: 'collecting',
      states: {
        // The sessions held right now go with the registration.
        collecting: {
          entry: 'askForSessions',
          on: { 'link.sessions': 'calling' },
        },
        calling: {
          invoke: {
            src: 'register',
            input: ({ context, event }) => ({ workerId: context.workerId, attempt: context.attempt, sessions: (event as Extract<CoordinatorLinkEvent, { type: 'link.sessions' }>).sessions ?? [] }),
            onDone: {
              target: '#coordinatorLink.connected',
              actions: [
                assign({ registrationId: ({ event }) => event.output.registrationId, heartbeatIntervalMs: ({ event }) => event.output.heartbeatIntervalMs, attempt: 0, lastError: '' }),
                { type: 'announceRegistered', params: ({ event }) => ({ atMs: event.output.atMs }) },
              ],
            },
            onError: [
              {
                guard: 'credentialRefused',
                target: '#coordinatorLink.refused',
                actions: { type: 'setError', params: ({ event }) => ({ error: `the coordinator refused this worker's credential: ${reasonOf(event.error)}` }) },
              },
              {
                target: '#coordinatorLink.backoff',
                actions: { type: 'setError', params: ({ event }) => ({ error: `registration failed: ${reasonOf(event.error)}` }) },
              },
            ],
          },
        },
      },
    },
    // Waits here for the worker to stop (the worker machine shuts down on link.refused).
    refused: {
      entry: [stopChild(TASK_STREAM_ID), 'announceRefused'],
    },
    backoff: {
      entry: [stopChild(TASK_STREAM_ID), 'announceDown'],
      after: { reconnectDelay: { target: 'registering', actions: assign({ attempt: ({ context }) => context.attempt + 1, seed: ({ context }) => nextSeed(context.seed) }) } },
    },
    connected: {
      // The task stream is a spawned child, not an invoke: it stays open while deregistering, so
      // the last results of a drain reach the coordinator and the coordinator still knows this
      // registration when DeregisterWorker arrives. It stops on backoff and when the link closes.
      entry: spawnChild('taskStream', { id: TASK_STREAM_ID, input: ({ context }) => ({ workerId: context.workerId, registrationId: context.registrationId }) }),
      invoke: [
        { id: 'heartbeats', src: 'heartbeats', input: ({ context }) => ({ workerId: context.workerId, registrationId: context.registrationId, intervalMs: context.heartbeatIntervalMs }) },
      ],
      on: {
        'link.failed': { target: 'backoff', actions: { type: 'setError', params: ({ event }) => ({ error: event.reason }) } },
        'command.create': { actions: { type: 'forwardCommand', params: ({ event }) => ({ command: event }) } },
        'command.destroy': { actions: { type: 'forwardCommand', params: ({ event }) => ({ command: event }) } },
        'command.task': { actions: { type: 'forwardCommand', params: ({ event }) => ({ command: event }) } },
        'command.cancel': { actions: { type: 'forwardCommand', params: ({ event }) => ({ command: event }) } },
        'command.put_metadata': { actions: { type: 'forwardCommand', params: ({ event }) => ({ command: event }) } },
        'link.deregister': 'deregistering',
      },
    },
    deregistering: {
      invoke: {
        src: 'deregister',
        input: ({ context, event }) => ({ workerId: context.workerId, registrationId: context.registrationId, reason: (event as { reason?: string }).reason ?? 'shutdown' }),
        onDone: 'closed',
        onError: 'closed',
      },
    },
    closed: {
      type: 'final',
      entry: stopChild(TASK_STREAM_ID),
    },
  },
});

export type CoordinatorLinkActor = ActorRefFrom<typeof coordinatorLinkMachine>;
