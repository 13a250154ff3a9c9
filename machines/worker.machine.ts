import { emit, enqueueActions, setup, type ActorRefFrom, type SnapshotFrom } from 'xstate';
import type { ErrorInfo } from '../src/domain/errors.js';
import { coordinatorLinkMachine, type CoordinatorLinkParentEvent, type WorkerCommand } from './coordinator-link.machine.js';
import { sessionChildId, sessionMachine, type SessionParentEvent } from './session.machine.js';
import { hasRestartBudget, recordRestart, type RestartIntensity } from './supervision.js';
import type { BackoffPolicy } from './supervision.js';

/**
 * The worker's root supervisor: the coordinator link (permanent: restarted within the restart
 * intensity, escalated beyond it) and one session actor per session (one_for_one, temporary).
 * SIGTERM drains: sessions finish or cancel their running task within the drain bound, then
 * the link deregisters, then the worker stops.
 */
export interface WorkerInput {
  workerId: string;
  maxSessions: number;
  drainTimeoutMs: number;
  backoff: BackoffPolicy;
  linkIntensity: RestartIntensity;
}

export interface WorkerContext extends WorkerInput {
  sessionIds: string[];
  /** destroy commands waiting for their session to terminate: session id → request id */
  registrationId: string;
  linkRestarts: number[];
  escalation: string;
}

/** What the worker answers the coordinator for a command. */
export interface CommandReply {
  ok: boolean;
  error?: ErrorInfo;
  workspacePath?: string;
}

export type WorkerEvent =
  | WorkerCommand
  | CoordinatorLinkParentEvent
  | SessionParentEvent
  | { type: 'worker.shutdown' }
  | { type: `xstate.error.actor.${string}`; error: unknown };

export type WorkerEmitted =
  | { type: 'coordinator.reply'; requestId: string; reply: CommandReply }
  | { type: 'task.error'; sessionId: string; taskId: string; error: ErrorInfo };

export const LINK_ID = 'link';

const err = (code: ErrorInfo['code'], message: string): ErrorInfo => ({ code, message, details: '', retriable: code === 'CAPACITY_EXHAUSTED' });

export const workerMachine = setup({
  types: {
    context: {} as WorkerContext,
    input: {} as WorkerInput,
    events: {} as WorkerEvent,
    emitted: {} as WorkerEmitted,
  },
  actors: {
    session: sessionMachine,
    link: coordinatorLinkMachine,
  },
  actions: {
    // The worker process writes emitted replies and task errors on the task stream.
    replyToCoordinator: emit((_, p: { requestId: string; reply: CommandReply }) => ({ type: 'coordinator.reply' as const, ...p })),
    reportTaskError: emit((_, p: { sessionId: string; taskId: string; error: ErrorInfo }) => ({ type: 'task.error' as const, ...p })),
    createSession: enqueueActions(({ context, enqueue }, e: Extract<WorkerCommand, { type: 'command.create' }>) => {
      if (context.sessionIds.includes(e.sessionId)) {
        enqueue.emit({ type: 'coordinator.reply', ...{ requestId: e.requestId, reply: { ok: false, error: err('FAILED_PRECONDITION', `session ${e.sessionId} already exists on this worker`) } } });
        return;
      }
      if (context.sessionIds.length >= context.maxSessions) {
        enqueue.emit({ type: 'coordinator.reply', ...{ requestId: e.requestId, reply: { ok: false, error: err('CAPACITY_EXHAUSTED', `worker ${context.workerId} already runs its maximum of ${context.maxSessions} sessions (MAX_SESSIONS)`) } } });
        return;
      }
      enqueue.assign({ sessionIds: [...context.sessionIds, e.sessionId] });
      enqueue.spawnChild('session', {
        id: sessionChildId(e.sessionId),
        systemId: sessionChildId(e.sessionId),
        input: { sessionId: e.sessionId, workerId: context.workerId, workspaceId: e.sessionId, config: e.config, metadata: {}, idleTimeoutMs: 0, drainTimeoutMs: context.drainTimeoutMs, requestId: e.requestId },
      });
    }),
    destroySession: enqueueActions(({ context, enqueue }, e: Extract<WorkerCommand, { type: 'command.destroy' }>) => {
      if (!context.sessionIds.includes(e.sessionId)) {
        // Idempotent: a session this worker does not hold is already gone.
        enqueue.emit({ type: 'coordinator.reply', ...{ requestId: e.requestId, reply: { ok: true } } });
        return;
      }
      enqueue.sendTo(sessionChildId(e.sessionId), { type: 'session.destroy', force: true, requestId: e.requestId });
    }),
    submitTask: enqueueActions(({ context, enqueue }, e: Extract<WorkerCommand, { type: 'command.task' }>) => {
      if (!context.sessionIds.includes(e.spec.sessionId)) {
        enqueue.emit({ type: 'task.error', ...{ sessionId: e.spec.sessionId, taskId: e.spec.taskId, error: err('SESSION_NOT_FOUND', `session ${e.spec.sessionId} does not exist on worker ${context.workerId}`) } });
        return;
      }
      enqueue.sendTo(sessionChildId(e.spec.sessionId), { type: 'task.submit', spec: e.spec });
    }),
    cancelTask: enqueueActions(({ context, enqueue }, e: Extract<WorkerCommand, { type: 'command.cancel' }>) => {
      if (context.sessionIds.includes(e.sessionId)) enqueue.sendTo(sessionChildId(e.sessionId), { type: 'task.cancel', taskId: e.taskId, reason: e.reason });
    }),
    answerPrepared: enqueueActions(({ enqueue }, e: { requestId: string; workspacePath: string }) => {
      if (e.requestId) enqueue.emit({ type: 'coordinator.reply', ...{ requestId: e.requestId, reply: { ok: true, workspacePath: e.workspacePath } } });
    }),
    answerFailed: enqueueActions(({ enqueue }, e: { requestId: string; reason: string }) => {
      if (e.requestId) enqueue.emit({ type: 'coordinator.reply', ...{ requestId: e.requestId, reply: { ok: false, error: err('INTERNAL', e.reason) } } });
    }),
    removeSession: enqueueActions(({ context, enqueue }, e: { sessionId: string; requestId: string }) => {
      enqueue.assign({ sessionIds: context.sessionIds.filter((id) => id !== e.sessionId) });
      enqueue.stopChild(sessionChildId(e.sessionId));
      if (e.requestId) enqueue.emit({ type: 'coordinator.reply', ...{ requestId: e.requestId, reply: { ok: true } } });
    }),
    /** A new registration means the coordinator no longer knows our old sessions: drop them. */
    dropOrphanSessions: enqueueActions(({ context, enqueue }, e: { registrationId: string }) => {
      if (context.registrationId && context.registrationId !== e.registrationId) {
        for (const id of context.sessionIds) enqueue.sendTo(sessionChildId(id), { type: 'session.destroy', force: true, requestId: '' });
      }
      enqueue.assign({ registrationId: e.registrationId });
    }),
    drainSessions: enqueueActions(({ context, enqueue }) => {
      for (const id of context.sessionIds) enqueue.sendTo(sessionChildId(id), { type: 'session.drain' });
    }),
    restartLink: enqueueActions(({ context, enqueue }, e: { reason: string }) => {
      const now = Date.now();
      if (!hasRestartBudget(context.linkRestarts, now, context.linkIntensity)) {
        enqueue.assign({ escalation: `coordinator link crashed too often (${context.linkIntensity.maxRestarts} times in ${context.linkIntensity.windowMs} ms): ${e.reason}` });
        enqueue.raise({ type: 'worker.shutdown' });
        return;
      }
      enqueue.assign({ linkRestarts: recordRestart(context.linkRestarts, now, context.linkIntensity) });
      enqueue.stopChild(LINK_ID);
      enqueue.spawnChild('link', { id: LINK_ID, systemId: LINK_ID, input: { workerId: context.workerId, backoff: context.backoff } });
    }),
  },
  guards: {
    hasNoSessions: ({ context }) => context.sessionIds.length === 0,
  },
}).createMachine({
  id: 'worker',
  context: ({ input }) => ({ ...input, sessionIds: [], registrationId: '', linkRestarts: [], escalation: '' }),
  entry: enqueueActions(({ context, enqueue }) => {
    enqueue.spawnChild('link', { id: LINK_ID, systemId: LINK_ID, input: { workerId: context.workerId, backoff: context.backoff } });
  }),
  on: {
    'session.prepared': { actions: { type: 'answerPrepared', params: ({ event }) => event } },
    'session.failed': { actions: { type: 'answerFailed', params: ({ event }) => event } },
    'session.terminated': { actions: { type: 'removeSession', params: ({ event }) => event } },
    'command.destroy': { actions: { type: 'destroySession', params: ({ event }) => event } },
    'command.cancel': { actions: { type: 'cancelTask', params: ({ event }) => event } },
    'link.registered': { actions: { type: 'dropOrphanSessions', params: ({ event }) => event } },
    'link.down': {},
    'xstate.error.actor.*': [
      { guard: ({ event }) => event.type === `xstate.error.actor.${LINK_ID}`, actions: { type: 'restartLink', params: ({ event }) => ({ reason: String((event as { error?: unknown }).error) }) } },
      {
        actions: enqueueActions(({ context, enqueue, event }) => {
          const childId = event.type.slice('xstate.error.actor.'.length);
          const sessionId = childId.slice('session:'.length);
          enqueue.assign({ sessionIds: context.sessionIds.filter((id) => id !== sessionId) });
          enqueue.stopChild(childId);
        }),
      },
    ],
  },
  initial: 'running',
  states: {
    running: {
      on: {
        'command.create': { actions: { type: 'createSession', params: ({ event }) => event } },
        'command.task': { actions: { type: 'submitTask', params: ({ event }) => event } },
        'worker.shutdown': 'draining',
      },
    },
    draining: {
      entry: 'drainSessions',
      on: {
        'command.create': { actions: { type: 'replyToCoordinator', params: ({ event }) => ({ requestId: event.requestId, reply: { ok: false, error: err('FAILED_PRECONDITION', 'this worker is shutting down') } }) } },
        'command.task': { actions: { type: 'reportTaskError', params: ({ event }) => ({ sessionId: event.spec.sessionId, taskId: event.spec.taskId, error: err('WORKER_LOST', 'this worker is shutting down; run the task again') }) } },
      },
      always: { guard: 'hasNoSessions', target: 'deregistering' },
    },
    deregistering: {
      entry: enqueueActions(({ enqueue, self }) => {
        // After an escalation the link has crashed for good: nobody would answer link.closed.
        const link = self.getSnapshot().children[LINK_ID];
        if (link?.getSnapshot().status === 'active') enqueue.sendTo(LINK_ID, { type: 'link.deregister', reason: 'worker shutting down' });
        else enqueue.raise({ type: 'link.closed' });
      }),
      on: { 'link.closed': 'stopped' },
    },
    stopped: { type: 'final' },
  },
});

export type WorkerActor = ActorRefFrom<typeof workerMachine>;
export type WorkerSnapshot = SnapshotFrom<typeof workerMachine>;
