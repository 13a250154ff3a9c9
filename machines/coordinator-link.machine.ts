import { assign, sendParent, setup, spawnChild, stopChild, type ActorRefFrom } from 'xstate';
import type { ErrorInfo } from '../src/domain/errors.js';
import type { SessionConfig } from '../src/domain/sessions.js';
import type { TaskSpec } from '../src/domain/tasks.js';
import { backoffDelay, type BackoffPolicy } from './supervision.js';

/**
 * The worker's link to the coordinator, a permanent child of the worker supervisor:
 * register, then heartbeat and hold the task stream; when registration, a heartbeat or the
 * stream fails, wait a capped exponential backoff and register again.
 */
export interface CoordinatorLinkInput {
  workerId: string;
  backoff: BackoffPolicy;
}

/** Commands that arrive over the task stream, forwarded to the worker supervisor. */
export type WorkerCommand =
  | { type: 'command.create'; requestId: string; sessionId: string; config: SessionConfig }
  | { type: 'command.destroy'; requestId: string; sessionId: string; force: boolean }
  | { type: 'command.task'; requestId: string; spec: TaskSpec }
  | { type: 'command.cancel'; requestId: string; sessionId: string; taskId: string; reason: string };

export interface Registration { registrationId: string; heartbeatIntervalMs: number }

export type CoordinatorLinkEvent =
  | WorkerCommand
  | { type: 'link.failed'; reason: string }
  | { type: 'link.deregister'; reason: string };

export interface CoordinatorLinkContext extends CoordinatorLinkInput {
  attempt: number;
  registrationId: string;
  heartbeatIntervalMs: number;
  lastError: string;
}

export type CoordinatorLinkParentEvent =
  | { type: 'link.registered'; registrationId: string }
  | { type: 'link.down'; reason: string }
  | { type: 'link.closed' };

const TASK_STREAM_ID = 'taskStream';

export const coordinatorLinkMachine = setup({
  types: {
    context: {} as CoordinatorLinkContext,
    input: {} as CoordinatorLinkInput,
    events: {} as CoordinatorLinkEvent,
  },
  actors: {
    register: {} as import('xstate').PromiseActorLogic<Registration, { workerId: string; attempt: number }>,
    heartbeats: {} as import('xstate').CallbackActorLogic<import('xstate').EventObject, { workerId: string; registrationId: string; intervalMs: number }>,
    taskStream: {} as import('xstate').CallbackActorLogic<import('xstate').EventObject, { workerId: string; registrationId: string }>,
    deregister: {} as import('xstate').PromiseActorLogic<void, { workerId: string; registrationId: string; reason: string }>,
  },
  actions: {
    forwardCommand: sendParent((_, p: { command: WorkerCommand }) => p.command),
    announceRegistered: sendParent(({ context }): CoordinatorLinkParentEvent => ({ type: 'link.registered', registrationId: context.registrationId })),
    announceDown: sendParent(({ context }): CoordinatorLinkParentEvent => ({ type: 'link.down', reason: context.lastError })),
    announceClosed: sendParent((): CoordinatorLinkParentEvent => ({ type: 'link.closed' })),
    setError: assign({ lastError: (_, p: { error: string }) => p.error }),
  },
  delays: {
    reconnectDelay: ({ context }) => backoffDelay(context.attempt, context.backoff),
  },
}).createMachine({
  id: 'coordinatorLink',
  context: ({ input }) => ({ ...input, attempt: 0, registrationId: '', heartbeatIntervalMs: 0, lastError: '' }),
  initial: 'registering',
  on: {
    'link.deregister': '.closed',
  },
  states: {
    registering: {
      invoke: {
        src: 'register',
        input: ({ context }) => ({ workerId: context.workerId, attempt: context.attempt }),
        onDone: {
          target: 'connected',
          actions: [
            assign({ registrationId: ({ event }) => event.output.registrationId, heartbeatIntervalMs: ({ event }) => event.output.heartbeatIntervalMs, attempt: 0, lastError: '' }),
            'announceRegistered',
          ],
        },
        onError: {
          target: 'backoff',
          actions: { type: 'setError', params: ({ event }) => ({ error: `registration failed: ${event.error instanceof Error ? event.error.message : String(event.error)}` }) },
        },
      },
    },
    backoff: {
      entry: [stopChild(TASK_STREAM_ID), 'announceDown'],
      after: { reconnectDelay: { target: 'registering', actions: assign({ attempt: ({ context }) => context.attempt + 1 }) } },
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
      entry: [stopChild(TASK_STREAM_ID), 'announceClosed'],
    },
  },
});

export type CoordinatorLinkActor = ActorRefFrom<typeof coordinatorLinkMachine>;
export type { ErrorInfo };
