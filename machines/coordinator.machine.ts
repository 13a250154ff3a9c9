import { enqueueActions, setup, type ActorRefFrom, type SnapshotFrom } from 'xstate';
import type { ErrorInfo } from '../src/domain/errors.js';
import type { SessionConfig } from '../src/domain/sessions.js';
import { sessionChildId, sessionMachine, type SessionParentEvent } from './session.machine.js';
import { workerConnectionMachine, type StreamHandle, type WorkerConnectionParentEvent } from './worker-connection.machine.js';

/**
 * The coordinator's root supervisor: one worker-connection actor per registered worker and
 * one session actor per session (one_for_one; sessions are temporary children: a session
 * whose logic crashes is reported FAILED and removed, never silently restarted). It owns
 * placement: the least-loaded online worker, counting sessions it placed but the worker has
 * not reported yet.
 */
export interface CoordinatorInput {
  idleTimeoutMs: number;
  heartbeatTimeoutMs: number;
  drainTimeoutMs: number;
}

export interface WorkerSlot {
  registrationId: string;
  maxSessions: number;
  isolation: string;
  hostname: string;
  online: boolean;
  registeredAtMs: number;
}

export interface CoordinatorContext extends CoordinatorInput {
  workers: Record<string, WorkerSlot>;
  /** session id → worker id, for sessions counted against a worker's capacity. */
  placements: Record<string, string>;
}

export type CoordinatorEvent =
  | { type: 'worker.register'; workerId: string; registrationId: string; maxSessions: number; isolation: string; hostname: string }
  | { type: 'worker.heartbeat'; workerId: string; registrationId: string }
  | { type: 'worker.deregister'; workerId: string; registrationId: string; reason: string }
  | { type: 'stream.opened'; workerId: string; registrationId: string; stream: StreamHandle }
  | { type: 'session.create'; sessionId: string; workerId: string; workspaceId: string; config: SessionConfig; metadata: Record<string, string> }
  | SessionParentEvent
  | WorkerConnectionParentEvent
  | { type: `xstate.error.actor.${string}`; error: unknown };

export type CoordinatorEmitted =
  | { type: 'worker.registered'; workerId: string; registrationId: string }
  | { type: 'worker.unknown'; workerId: string; registrationId: string }
  | { type: 'session.placed'; sessionId: string; workerId: string }
  | { type: 'session.rejected'; sessionId: string; error: ErrorInfo }
  | { type: 'session.terminated'; sessionId: string };

export const workerChildId = (workerId: string, registrationId: string): string => `worker:${workerId}:${registrationId}`;

const load = (ctx: CoordinatorContext, workerId: string): number => Object.values(ctx.placements).filter((w) => w === workerId).length;

/** The worker for a new session, or why there is none. */
export function chooseWorker(ctx: CoordinatorContext, requested: string): { workerId: string } | { error: ErrorInfo } {
  const err = (code: ErrorInfo['code'], message: string) => ({ error: { code, message, details: '', retriable: code === 'CAPACITY_EXHAUSTED' } });
  if (requested) {
    const slot = ctx.workers[requested];
    if (!slot) return err('NOT_FOUND', `worker_id: no worker named ${JSON.stringify(requested)} is registered`);
    if (!slot.online) return err('CAPACITY_EXHAUSTED', `worker ${requested} is not connected yet; try again shortly`);
    if (load(ctx, requested) >= slot.maxSessions) return err('CAPACITY_EXHAUSTED', `worker ${requested} already runs its maximum of ${slot.maxSessions} sessions`);
    return { workerId: requested };
  }
  let best: { workerId: string; free: number; load: number } | undefined;
  for (const [workerId, slot] of Object.entries(ctx.workers).sort(([a], [b]) => a.localeCompare(b))) {
    if (!slot.online) continue;
    const l = load(ctx, workerId);
    const free = slot.maxSessions - l;
    if (free <= 0) continue;
    if (!best || l < best.load || (l === best.load && free > best.free)) best = { workerId, free, load: l };
  }
  if (best) return { workerId: best.workerId };
  const online = Object.values(ctx.workers).filter((w) => w.online).length;
  return err('CAPACITY_EXHAUSTED', online === 0 ? 'no worker is connected; start a worker and try again' : `all ${online} connected workers are at their session limit; destroy a session or add a worker`);
}

export const coordinatorMachine = setup({
  types: {
    context: {} as CoordinatorContext,
    input: {} as CoordinatorInput,
    events: {} as CoordinatorEvent,
    emitted: {} as CoordinatorEmitted,
  },
  actors: {
    session: sessionMachine,
    workerConnection: workerConnectionMachine,
  },
  actions: {
    registerWorker: enqueueActions(({ context, enqueue }, e: Extract<CoordinatorEvent, { type: 'worker.register' }>) => {
      const old = context.workers[e.workerId];
      const placements = { ...context.placements };
      if (old) {
        // The same worker id registering again means the old process is gone: its sessions fail.
        enqueue.stopChild(workerChildId(e.workerId, old.registrationId));
        for (const [sid, wid] of Object.entries(context.placements)) {
          if (wid !== e.workerId) continue;
          enqueue.sendTo(sessionChildId(sid), { type: 'worker.lost', reason: 'the worker registered again (restarted)' });
          delete placements[sid];
        }
      }
      enqueue.assign({
        placements,
        workers: {
          ...context.workers,
          [e.workerId]: { registrationId: e.registrationId, maxSessions: e.maxSessions, isolation: e.isolation, hostname: e.hostname, online: false, registeredAtMs: Date.now() },
        },
      });
      enqueue.spawnChild('workerConnection', {
        id: workerChildId(e.workerId, e.registrationId),
        systemId: workerChildId(e.workerId, e.registrationId),
        input: { workerId: e.workerId, registrationId: e.registrationId, maxSessions: e.maxSessions, isolation: e.isolation, hostname: e.hostname, heartbeatTimeoutMs: context.heartbeatTimeoutMs },
      });
      enqueue.emit({ type: 'worker.registered', workerId: e.workerId, registrationId: e.registrationId });
    }),
    forwardToWorker: enqueueActions(({ context, enqueue }, e: { workerId: string; registrationId: string; event: { type: 'worker.heartbeat' } | { type: 'worker.deregister'; reason: string } | { type: 'stream.opened'; stream: StreamHandle } }) => {
      const slot = context.workers[e.workerId];
      if (!slot || slot.registrationId !== e.registrationId) {
        enqueue.emit({ type: 'worker.unknown', workerId: e.workerId, registrationId: e.registrationId });
        return;
      }
      enqueue.sendTo(workerChildId(e.workerId, e.registrationId), e.event);
    }),
    markWorkerOnline: enqueueActions(({ context, enqueue }, e: { workerId: string; registrationId: string }) => {
      const slot = context.workers[e.workerId];
      if (!slot || slot.registrationId !== e.registrationId) return;
      enqueue.assign({ workers: { ...context.workers, [e.workerId]: { ...slot, online: true } } });
    }),
    loseWorker: enqueueActions(({ context, enqueue }, e: { workerId: string; registrationId: string; reason: string }) => {
      const slot = context.workers[e.workerId];
      if (!slot || slot.registrationId !== e.registrationId) return;
      const placements = { ...context.placements };
      for (const [sid, wid] of Object.entries(context.placements)) {
        if (wid !== e.workerId) continue;
        enqueue.sendTo(sessionChildId(sid), { type: 'worker.lost', reason: `worker ${e.workerId}: ${e.reason}` });
        delete placements[sid];
      }
      const workers = { ...context.workers };
      delete workers[e.workerId];
      enqueue.assign({ workers, placements });
      enqueue.stopChild(workerChildId(e.workerId, e.registrationId));
    }),
    createSession: enqueueActions(({ context, enqueue }, e: Extract<CoordinatorEvent, { type: 'session.create' }>) => {
      const choice = chooseWorker(context, e.workerId);
      if ('error' in choice) {
        enqueue.emit({ type: 'session.rejected', sessionId: e.sessionId, error: choice.error });
        return;
      }
      enqueue.assign({ placements: { ...context.placements, [e.sessionId]: choice.workerId } });
      enqueue.spawnChild('session', {
        id: sessionChildId(e.sessionId),
        systemId: sessionChildId(e.sessionId),
        input: {
          sessionId: e.sessionId,
          workerId: choice.workerId,
          workspaceId: e.workspaceId,
          config: e.config,
          metadata: e.metadata,
          idleTimeoutMs: context.idleTimeoutMs,
          drainTimeoutMs: context.drainTimeoutMs,
          requestId: '',
        },
      });
      enqueue.emit({ type: 'session.placed', sessionId: e.sessionId, workerId: choice.workerId });
    }),
    removeSession: enqueueActions(({ context, enqueue }, e: { sessionId: string }) => {
      const placements = { ...context.placements };
      delete placements[e.sessionId];
      enqueue.assign({ placements });
      enqueue.stopChild(sessionChildId(e.sessionId));
      enqueue.emit({ type: 'session.terminated', sessionId: e.sessionId });
    }),
    superviseChildError: enqueueActions(({ context, enqueue }, e: { childId: string }) => {
      if (e.childId.startsWith('session:')) {
        // temporary child: report it gone rather than restart with lost state
        const sessionId = e.childId.slice('session:'.length);
        const placements = { ...context.placements };
        delete placements[sessionId];
        enqueue.assign({ placements });
        enqueue.stopChild(e.childId);
        enqueue.emit({ type: 'session.terminated', sessionId });
        return;
      }
      const m = /^worker:(.+):(reg-[0-9a-f]+)$/.exec(e.childId);
      if (m) enqueue.raise({ type: 'worker.lost', workerId: m[1]!, registrationId: m[2]!, reason: 'connection actor crashed' });
    }),
  },
}).createMachine({
  id: 'coordinator',
  context: ({ input }) => ({ ...input, workers: {}, placements: {} }),
  on: {
    'worker.register': { actions: { type: 'registerWorker', params: ({ event }) => event } },
    'worker.heartbeat': { actions: { type: 'forwardToWorker', params: ({ event }) => ({ workerId: event.workerId, registrationId: event.registrationId, event: { type: 'worker.heartbeat' as const } }) } },
    'worker.deregister': { actions: { type: 'forwardToWorker', params: ({ event }) => ({ workerId: event.workerId, registrationId: event.registrationId, event: { type: 'worker.deregister' as const, reason: event.reason } }) } },
    'stream.opened': { actions: { type: 'forwardToWorker', params: ({ event }) => ({ workerId: event.workerId, registrationId: event.registrationId, event: { type: 'stream.opened' as const, stream: event.stream } }) } },
    'worker.online': { actions: { type: 'markWorkerOnline', params: ({ event }) => event } },
    'worker.lost': { actions: { type: 'loseWorker', params: ({ event }) => event } },
    'session.create': { actions: { type: 'createSession', params: ({ event }) => event } },
    'session.terminated': { actions: { type: 'removeSession', params: ({ event }) => ({ sessionId: event.sessionId }) } },
    'session.prepared': {},
    'session.failed': {},
    'xstate.error.actor.*': { actions: { type: 'superviseChildError', params: ({ event }) => ({ childId: event.type.slice('xstate.error.actor.'.length) }) } },
  },
});

export type CoordinatorActor = ActorRefFrom<typeof coordinatorMachine>;
export type CoordinatorSnapshot = SnapshotFrom<typeof coordinatorMachine>;
