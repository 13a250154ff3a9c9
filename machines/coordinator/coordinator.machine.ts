import { enqueueActions, setup, type ActorRefFrom, type AnyActorRef, type SnapshotFrom } from 'xstate';
import { errorInfo, type ErrorInfo } from '../domain/errors.js';
import type { CheckpointRestore, SessionDescription, SessionReport } from '../domain/sessions.js';
import { sessionProxyIdOf } from './session-proxy.machine.js';
import { supervisorIdOf, supervisorMachine, type SupervisorInput, type SupervisorParentEvent } from '../supervisor.machine.js';
import { removeFailedChild, type BackoffPolicy, type RestartIntensity } from '../supervision.js';
import { choose, emptyPlacement, setSlot, slotOf, updateSlot, type PlacementIndex } from './placement.js';
import { shardIdOf, type Registration, type ShardEvent, type ShardInput, type ShardParentEvent } from './shard.machine.js';
import { connectionIdOf } from './worker-connection.machine.js';

/**
 * The coordinator's root: it supervises one shard per worker (each under a supervisor) and
 * places new sessions by the shards' counts. It keeps no session of its own: a restarted
 * coordinator rebuilds its view from the workers' registrations, and during `recovering` (a
 * grace period after start) an unknown session id means "not reported yet" rather than "gone".
 */
export interface CoordinatorInput {
  /** How long after start an unknown session id answers UNAVAILABLE ("recovering") instead of NOT_FOUND. */
  recoveryGraceMs: number;
  shard: Omit<ShardInput, 'workerId'>;
  supervision: { intensity: RestartIntensity; backoff: BackoffPolicy };
  seed: number;
}

export interface CoordinatorContext extends CoordinatorInput {
  placement: PlacementIndex;
  /** Sessions no worker holds, kept in their latest checkpoint (evicted, or waiting for a worker to be recovered on). */
  evicted: Record<string, EvictedSession>;
}

export interface EvictedSession {
  description: SessionDescription;
  restore: CheckpointRestore;
  /** The worker it left. */
  fromWorker: string;
  evictedAtMs: number;
}

export type CoordinatorEvent =
  | { type: 'worker.register'; workerId: string; registration: Registration; sessions: SessionReport[]; atMs: number }
  | { type: 'worker.heartbeat'; workerId: string; registrationId: string; atMs: number }
  | { type: 'worker.deregister'; workerId: string; registrationId: string; reason: string; atMs: number }
  | { type: 'stream.opened'; workerId: string; registrationId: string; streamId: string; atMs: number }
  | { type: 'session.create'; requestId: string; workerId: string; description: SessionDescription; atMs: number }
  /** An evicted session's next use: it is made again on the least-loaded worker from its checkpoint. */
  | { type: 'session.rehome'; requestId: string; sessionId: string; atMs: number }
  /** An evicted session destroyed: only its checkpoints remain. */
  | { type: 'session.forget'; requestId: string; sessionId: string }
  /** At start: an evicted session the checkpoint store remembers. */
  | { type: 'session.keep'; session: EvictedSession }
  | { type: 'coordinator.drain' }
  | ShardParentEvent
  | SupervisorParentEvent
  | { type: `xstate.done.actor.${string}`; output?: unknown }
  | { type: `xstate.error.actor.${string}`; error: unknown };

/** Answers to the front doors (matched by workerId/requestId), and warnings for the log. */
export type CoordinatorEmitted =
  | { type: 'worker.registered'; workerId: string; registrationId: string }
  | { type: 'worker.refused'; workerId: string; registrationId: string; error: ErrorInfo }
  | { type: 'worker.unknown'; workerId: string; registrationId: string }
  | { type: 'session.placed'; requestId: string; sessionId: string; workerId: string }
  | { type: 'session.rejected'; requestId: string; error: ErrorInfo }
  /** An evicted session to remember across restarts (the coordinator writes it to the checkpoint store), and one to forget. */
  | { type: 'session.kept'; session: EvictedSession }
  | { type: 'session.unkept'; sessionId: string }
  | { type: 'session.forgotten'; requestId: string; found: boolean }
  | { type: 'coordinator.warning'; message: string; details: Record<string, string> };

export const COORDINATOR_ID = 'coordinator';

export const coordinatorMachine = setup({
  types: {
    context: {} as CoordinatorContext,
    input: {} as CoordinatorInput,
    events: {} as CoordinatorEvent,
    emitted: {} as CoordinatorEmitted,
  },
  actors: {
    // Provided with the shard logic by the coordinator process.
    shardSupervisor: supervisorMachine,
  },
  guards: {
    isAnotherLiveInstance: ({ context }, e: { workerId: string; registration: Registration }) => {
      const slot = slotOf(context.placement, e.workerId);
      return slot !== undefined && slot.online && slot.instanceId !== e.registration.instanceId;
    },
  },
  actions: {
    refuseDuplicate: enqueueActions(({ enqueue }, e: Extract<CoordinatorEvent, { type: 'worker.register' }>) => {
      enqueue.emit({
        type: 'worker.refused',
        workerId: e.workerId,
        registrationId: e.registration.registrationId,
        error: errorInfo('ALREADY_EXISTS', `worker_id: a worker named ${JSON.stringify(e.workerId)} is already connected (another process); give every worker its own WORKER_ID. If that worker just died, retry once it is seen gone.`, true),
      });
    }),
    /** The worker's shard, under its supervisor; made here, so the next action finds it by systemId. */
    ensureShard: enqueueActions(({ context, enqueue, system }, e: { workerId: string }) => {
      const shard = shardIdOf(e.workerId);
      if (system.get(supervisorIdOf(shard))) return;
      const input: SupervisorInput = {
        childId: shard,
        restart: 'transient',
        intensity: context.supervision.intensity,
        backoff: context.supervision.backoff,
        shutdownTimeoutMs: 1_000,
        stopEvent: null,
        childInput: { ...context.shard, workerId: e.workerId } satisfies ShardInput as unknown as Record<string, unknown>,
        seed: context.seed,
      };
      enqueue.spawnChild('shardSupervisor', { id: supervisorIdOf(shard), systemId: supervisorIdOf(shard), input });
      enqueue.assign({ seed: context.seed + 1 });
    }),
    register: enqueueActions(({ context, enqueue, system }, e: Extract<CoordinatorEvent, { type: 'worker.register' }>) => {
      const slot = slotOf(context.placement, e.workerId);
      enqueue.assign({
        placement: setSlot(context.placement, e.workerId, { registrationId: e.registration.registrationId, instanceId: e.registration.instanceId, maxSessions: e.registration.maxSessions, load: slot?.load ?? 0, online: false }),
      });
      const registered: ShardEvent = { type: 'shard.register', registration: e.registration, sessions: e.sessions, atMs: e.atMs };
      const shardRef = system.get(shardIdOf(e.workerId)) as AnyActorRef | undefined;
      if (shardRef) enqueue.sendTo(shardRef, registered);
      enqueue.emit({ type: 'worker.registered', workerId: e.workerId, registrationId: e.registration.registrationId });
    }),
    toShard: enqueueActions(({ enqueue, system }, p: { workerId: string; event: ShardEvent }) => {
      const shard = system.get(shardIdOf(p.workerId)) as AnyActorRef | undefined;
      if (shard) enqueue.sendTo(shard, p.event);
    }),
    /** To the worker's connection, when the registration is the current one; else the worker must register again. */
    toConnection: enqueueActions(({ context, enqueue, system }, p: { workerId: string; registrationId: string; event: { type: string } & Record<string, unknown> }) => {
      const slot = slotOf(context.placement, p.workerId);
      const connection = system.get(connectionIdOf(p.workerId)) as AnyActorRef | undefined;
      if (!slot || slot.registrationId !== p.registrationId || !connection) {
        enqueue.emit({ type: 'worker.unknown', workerId: p.workerId, registrationId: p.registrationId });
        return;
      }
      enqueue.sendTo(connection, p.event);
    }),
    place: enqueueActions(({ context, enqueue, system }, e: Extract<CoordinatorEvent, { type: 'session.create' }>) => {
      const choice = choose(context.placement, e.workerId);
      if (!choice.ok) {
        enqueue.emit({ type: 'session.rejected', requestId: e.requestId, error: errorInfo(choice.code, choice.message) });
        return;
      }
      const shardRef = system.get(shardIdOf(choice.workerId)) as AnyActorRef | undefined;
      if (!shardRef) {
        enqueue.emit({ type: 'session.rejected', requestId: e.requestId, error: errorInfo('UNAVAILABLE', `worker ${choice.workerId}'s shard is restarting; try again shortly`) });
        return;
      }
      const slot = slotOf(context.placement, choice.workerId)!;
      // Counted at once: the next create sees this one even before the worker reports it.
      enqueue.assign({ placement: setSlot(context.placement, choice.workerId, { ...slot, load: slot.load + 1 }) });
      const create: ShardEvent = { type: 'session.create', description: e.description, atMs: e.atMs };
      enqueue.sendTo(shardRef, create);
      enqueue.emit({ type: 'session.placed', requestId: e.requestId, sessionId: e.description.sessionId, workerId: choice.workerId });
    }),
    keep: enqueueActions(({ context, enqueue }, p: { session: EvictedSession; rehome: boolean; tell: boolean }) => {
      const id = p.session.description.sessionId;
      enqueue.assign({ evicted: { ...context.evicted, [id]: p.session } });
      if (p.tell) enqueue.emit({ type: 'session.kept', session: p.session });
      if (p.rehome) enqueue.raise({ type: 'session.rehome', requestId: '', sessionId: id, atMs: p.session.evictedAtMs });
    }),
    rehome: enqueueActions(({ context, enqueue, system }, e: Extract<CoordinatorEvent, { type: 'session.rehome' }>) => {
      const kept = context.evicted[e.sessionId];
      const reject = (error: ErrorInfo) => enqueue.emit({ type: 'session.rejected', requestId: e.requestId, error });
      // Made again already (another call got there first): its proxy answers.
      if (system.get(sessionProxyIdOf(e.sessionId))) {
        enqueue.emit({ type: 'session.placed', requestId: e.requestId, sessionId: e.sessionId, workerId: '' });
        return;
      }
      if (!kept) return reject(errorInfo('SESSION_NOT_FOUND', `session_id: no session ${JSON.stringify(e.sessionId)} exists`));
      const choice = choose(context.placement, '');
      if (!choice.ok) return reject(errorInfo(choice.code === 'CAPACITY_EXHAUSTED' ? 'UNAVAILABLE' : choice.code, `session ${e.sessionId} is EVICTED (its files are in checkpoint ${kept.restore.checkpointId}) and no worker can take it now: ${choice.message}`));
      const shardRef = system.get(shardIdOf(choice.workerId)) as AnyActorRef | undefined;
      if (!shardRef) return reject(errorInfo('UNAVAILABLE', `worker ${choice.workerId}'s shard is restarting; try again shortly`));
      const slot = slotOf(context.placement, choice.workerId)!;
      const evicted = { ...context.evicted };
      delete evicted[e.sessionId];
      enqueue.assign({ evicted, placement: setSlot(context.placement, choice.workerId, { ...slot, load: slot.load + 1 }) });
      const create: ShardEvent = { type: 'session.create', description: { ...kept.description, restoreFrom: kept.restore }, atMs: e.atMs };
      enqueue.sendTo(shardRef, create);
      enqueue.emit({ type: 'session.unkept', sessionId: e.sessionId });
      enqueue.emit({ type: 'session.placed', requestId: e.requestId, sessionId: e.sessionId, workerId: choice.workerId });
    }),
    forget: enqueueActions(({ context, enqueue }, e: Extract<CoordinatorEvent, { type: 'session.forget' }>) => {
      const found = e.sessionId in context.evicted;
      if (found) {
        const evicted = { ...context.evicted };
        delete evicted[e.sessionId];
        enqueue.assign({ evicted });
        enqueue.emit({ type: 'session.unkept', sessionId: e.sessionId });
      }
      enqueue.emit({ type: 'session.forgotten', requestId: e.requestId, found });
    }),
    noteLoad: enqueueActions(({ context, enqueue }, e: Extract<ShardParentEvent, { type: 'shard.load' }>) => {
      const reg = e.registration;
      const placement = updateSlot(context.placement, e.workerId, {
        load: e.sessions,
        online: e.online,
        ...(reg ? { registrationId: reg.registrationId, instanceId: reg.instanceId, maxSessions: reg.maxSessions } : { registrationId: '', instanceId: '' }),
      });
      // Most loads confirm what `place` already counted: the index is unchanged then.
      if (placement !== context.placement) enqueue.assign({ placement });
    }),
  },
  delays: {
    recoveryGrace: ({ context }) => Math.max(0, context.recoveryGraceMs),
  },
}).createMachine({
  id: 'coordinator',
  context: ({ input }) => ({ ...input, placement: emptyPlacement(), evicted: {} }),
  on: {
    'session.evicted': {
      actions: {
        type: 'keep',
        params: ({ event }) => ({ session: { description: event.report.description, restore: event.restore, fromWorker: event.from, evictedAtMs: event.atMs }, rehome: event.rehome, tell: true }),
      },
    },
    'session.keep': { guard: ({ context, event }) => !(event.session.description.sessionId in context.evicted), actions: { type: 'keep', params: ({ event }) => ({ session: event.session, rehome: false, tell: false }) } },
    'session.forget': { actions: { type: 'forget', params: ({ event }) => event } },
    'worker.register': [
      // A second live process with the same WORKER_ID is refused, never allowed to take the first one's sessions.
      { guard: { type: 'isAnotherLiveInstance', params: ({ event }) => event }, actions: { type: 'refuseDuplicate', params: ({ event }) => event } },
      { actions: [{ type: 'ensureShard', params: ({ event }) => event }, { type: 'register', params: ({ event }) => event }] },
    ],
    'worker.heartbeat': { actions: { type: 'toConnection', params: ({ event }) => ({ workerId: event.workerId, registrationId: event.registrationId, event: { type: 'worker.heartbeat', atMs: event.atMs } }) } },
    'worker.deregister': { actions: { type: 'toConnection', params: ({ event }) => ({ workerId: event.workerId, registrationId: event.registrationId, event: { type: 'worker.deregister', reason: event.reason, atMs: event.atMs } }) } },
    'stream.opened': { actions: { type: 'toConnection', params: ({ event }) => ({ workerId: event.workerId, registrationId: event.registrationId, event: { type: 'stream.opened', streamId: event.streamId, atMs: event.atMs } }) } },
    'shard.load': { actions: { type: 'noteLoad', params: ({ event }) => event } },
    'session.moved': { actions: { type: 'toShard', params: ({ event }) => ({ workerId: event.to, event: { type: 'session.adopt', report: event.report, atMs: event.atMs } }) } },
    'coordinator.warning': { actions: enqueueActions(({ enqueue, event }) => enqueue.emit({ type: 'coordinator.warning', message: event.message, details: event.details })) },
    'supervisor.child_exited': {
      actions: enqueueActions(({ context, enqueue, event }) => {
        if (event.abnormal) enqueue.emit({ type: 'coordinator.warning', message: `${event.childId} crashed${event.restarting ? '; restarting it' : ''}`, details: { reason: event.reason } });
        // Its shard is gone: the worker takes no session until it registers again (its next heartbeat finds it unknown).
        if (event.childId.startsWith('shard:')) enqueue.assign({ placement: updateSlot(context.placement, event.childId.slice('shard:'.length), { online: false, registrationId: '' }) });
      }),
    },
    'supervisor.escalated': { actions: enqueueActions(({ enqueue, event }) => enqueue.emit({ type: 'coordinator.warning', message: `${event.childId} crashed too often; it is dropped until its worker registers again`, details: { reason: event.reason } })) },
    'xstate.done.actor.*': {
      actions: enqueueActions(({ context, enqueue, event }) => {
        const childId = event.type.slice('xstate.done.actor.'.length);
        enqueue.stopChild(childId);
        const workerId = childId.startsWith('sup:shard:') ? childId.slice('sup:shard:'.length) : '';
        if (workerId) enqueue.assign({ placement: setSlot(context.placement, workerId, undefined) });
      }),
    },
    'xstate.error.actor.*': {
      actions: enqueueActions(({ context, enqueue, event, self }) => {
        const childId = removeFailedChild(event, self, enqueue);
        const workerId = childId.startsWith('sup:shard:') ? childId.slice('sup:shard:'.length) : '';
        if (workerId) enqueue.assign({ placement: setSlot(context.placement, workerId, undefined) });
        enqueue.emit({ type: 'coordinator.warning', message: `supervisor ${childId} crashed`, details: { error: String((event as { error?: unknown }).error) } });
      }),
    },
  },
  initial: 'recovering',
  states: {
    recovering: {
      after: { recoveryGrace: 'serving' },
      on: { 'session.create': { actions: { type: 'place', params: ({ event }) => event } }, 'session.rehome': { actions: { type: 'rehome', params: ({ event }) => event } }, 'coordinator.drain': 'draining' },
    },
    serving: {
      on: { 'session.create': { actions: { type: 'place', params: ({ event }) => event } }, 'session.rehome': { actions: { type: 'rehome', params: ({ event }) => event } }, 'coordinator.drain': 'draining' },
    },
    draining: {
      entry: enqueueActions(({ enqueue, self, system }) => {
        for (const id of Object.keys(self.getSnapshot().children)) {
          if (!id.startsWith('sup:shard:')) continue;
          const shard = system.get(shardIdOf(id.slice('sup:shard:'.length))) as AnyActorRef | undefined;
          if (shard) enqueue.sendTo(shard, { type: 'coordinator.draining' });
        }
      }),
      on: {
        'session.create': { actions: enqueueActions(({ enqueue, event }) => enqueue.emit({ type: 'session.rejected', requestId: event.requestId, error: errorInfo('UNAVAILABLE', 'the coordinator is shutting down; create the session again once it is back') })) },
        'session.rehome': { actions: enqueueActions(({ enqueue, event }) => enqueue.emit({ type: 'session.rejected', requestId: event.requestId, error: errorInfo('UNAVAILABLE', 'the coordinator is shutting down; the session is restored from its checkpoint once it is back') })) },
      },
    },
  },
});

export type CoordinatorActor = ActorRefFrom<typeof coordinatorMachine>;
export type CoordinatorSnapshot = SnapshotFrom<typeof coordinatorMachine>;
