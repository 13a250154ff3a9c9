import { assign, enqueueActions, setup, type ActorRefFrom, type AnyActorRef, type SnapshotFrom } from 'xstate';
import type { CheckpointRestore, SessionDescription, SessionReport } from '../domain/sessions.js';
import { removeFailedChild } from '../supervision.js';
import { bucketMachine, type BucketEvent, type BucketParentEvent } from './bucket.machine.js';
import { sessionProxyIdOf, type SessionProxyInput } from './session-proxy.machine.js';
import { connectionIdOf, workerConnectionMachine, type WorkerConnectionParentEvent } from './worker-connection.machine.js';

/**
 * One worker's shard: its connection (one per registration) and the proxies of its sessions,
 * spread over buckets. Losing the worker is one event here, passed to every proxy. A
 * registration reconciles: sessions the worker lists come back (or move here from another
 * shard, when this worker adopted them), proxies it does not list go FAILED with the reason.
 * The shard keeps counts only; the root places sessions by them.
 */
export interface ShardInput {
  workerId: string;
  /** Proxies per bucket. */
  bucketSize: number;
  createTimeoutMs: number;
  destroyTimeoutMs: number;
  heartbeatTimeoutMs: number;
}

export interface Registration {
  registrationId: string;
  instanceId: string;
  maxSessions: number;
  isolation: string;
  hostname: string;
}

export interface ShardContext extends ShardInput {
  registration: Registration | null;
  online: boolean;
  /** Proxies in this shard. */
  sessions: number;
  /** Proxies per bucket id. */
  buckets: Record<string, number>;
  nextBucket: number;
  /** Sessions destroyed while the worker was away: the worker removes them when it is back. */
  tombstones: string[];
  draining: boolean;
  /** The worker was lost at least once: an empty shard of a lost worker retires. */
  lost: boolean;
  /** Whether a connection actor is there (one ending tells the shard last: the shard retires after it). */
  connected: boolean;
}

export type ShardEvent =
  | { type: 'shard.register'; registration: Registration; sessions: SessionReport[]; atMs: number }
  | { type: 'session.create'; description: SessionDescription; atMs: number }
  | { type: 'session.adopt'; report: SessionReport; atMs: number }
  | { type: 'coordinator.draining' }
  | WorkerConnectionParentEvent
  | BucketParentEvent
  | { type: `xstate.done.actor.${string}`; output?: unknown }
  | { type: `xstate.error.actor.${string}`; error: unknown };

/** What the shard tells the root. */
export type ShardParentEvent =
  | { type: 'shard.load'; workerId: string; sessions: number; online: boolean; registration: Registration | null }
  | { type: 'session.moved'; sessionId: string; from: string; to: string; report: SessionReport; atMs: number }
  /** The session left this worker for its checkpoint: kept EVICTED by the root, made again elsewhere at once when `rehome`. */
  | { type: 'session.evicted'; from: string; report: SessionReport; restore: CheckpointRestore; rehome: boolean; atMs: number }
  | { type: 'coordinator.warning'; message: string; details: Record<string, string> };

export const shardIdOf = (workerId: string): string => `shard:${workerId}`;
const bucketIdOf = (workerId: string, n: number): string => `bucket:${workerId}:${n}`;
export const MAX_TOMBSTONES = 10_000;

/** A proxy's input in this shard: 'create' asks the worker to make the session, 'mirror' follows one it holds. */
const proxyInputOf = (c: ShardContext, mode: SessionProxyInput['mode'], report: SessionReport, reachable: boolean, atMs: number): SessionProxyInput => ({
  workerId: c.workerId,
  mode,
  report,
  reachable,
  createTimeoutMs: c.createTimeoutMs,
  destroyTimeoutMs: c.destroyTimeoutMs,
  atMs,
});

/** The counts once one proxy of `bucketId` is gone. */
const oneFewer = (c: ShardContext, bucketId: string): Pick<ShardContext, 'buckets' | 'sessions'> => ({
  buckets: { ...c.buckets, [bucketId]: Math.max(0, (c.buckets[bucketId] ?? 1) - 1) },
  sessions: Math.max(0, c.sessions - 1),
});

export const shardMachine = setup({
  types: {
    context: {} as ShardContext,
    input: {} as ShardInput,
    events: {} as ShardEvent,
  },
  actors: {
    bucket: bucketMachine,
    connection: workerConnectionMachine,
  },
  actions: {
    tellLoad: enqueueActions(({ context, enqueue }) =>
      enqueue.sendParent({ type: 'shard.load', workerId: context.workerId, sessions: context.sessions, online: context.online, registration: context.registration } satisfies ShardParentEvent),
    ),
    /** Puts a new proxy in a bucket with room, opening a bucket when all are full. */
    placeProxy: enqueueActions(({ context, enqueue }, p: { input: SessionProxyInput }) => {
      // The newest bucket is the one with room, unless proxies ended in an older one.
      const newest = bucketIdOf(context.workerId, context.nextBucket - 1);
      let bucket = (context.buckets[newest] ?? context.bucketSize) < context.bucketSize ? newest : undefined;
      if (bucket === undefined) {
        for (const b in context.buckets) {
          if (context.buckets[b]! < context.bucketSize) {
            bucket = b;
            break;
          }
        }
      }
      let nextBucket = context.nextBucket;
      if (bucket === undefined) {
        bucket = bucketIdOf(context.workerId, nextBucket++);
        enqueue.spawnChild('bucket', { id: bucket, systemId: bucket, input: { workerId: context.workerId, bucketId: bucket } });
      }
      enqueue.assign({ buckets: { ...context.buckets, [bucket]: (context.buckets[bucket] ?? 0) + 1 }, sessions: context.sessions + 1, nextBucket });
      enqueue.sendTo(bucket, { type: 'bucket.spawn', input: p.input } satisfies BucketEvent);
    }),
    broadcast: enqueueActions(({ context, enqueue }, p: { event: Extract<BucketEvent, { type: 'bucket.broadcast' }>['event'] }) => {
      for (const bucket of Object.keys(context.buckets)) enqueue.sendTo(bucket, { type: 'bucket.broadcast', event: p.event } satisfies BucketEvent);
    }),
    warn: enqueueActions(({ context, enqueue }, p: { message: string; details?: Record<string, string> }) =>
      enqueue.sendParent({ type: 'coordinator.warning', message: p.message, details: { workerId: context.workerId, ...(p.details ?? {}) } } satisfies ShardParentEvent),
    ),
  },
}).createMachine({
  id: 'shard',
  initial: 'active',
  states: {
    active: {
      // A lost worker's shard with no session left has nothing to keep: it ends (its worker may come back as a new shard).
      // Not while a destroy is still owed to the worker (a tombstone): it must reach the worker when it is back.
      always: { guard: ({ context }) => context.lost && !context.online && !context.connected && context.sessions === 0 && context.tombstones.length === 0, target: 'retired' },
    },
    retired: { type: 'final' },
  },
  context: ({ input }) => ({ ...input, registration: null, online: false, sessions: 0, buckets: {}, nextBucket: 0, tombstones: [], draining: false, lost: false, connected: false }),
  on: {
    'shard.register': {
      actions: [
        enqueueActions(({ context, enqueue, event, system }) => {
          const connection = connectionIdOf(context.workerId);
          // Tasks sent through the previous registration are not followed by the worker any more.
          if (context.registration && context.online) enqueue({ type: 'broadcast', params: { event: { type: 'worker.lost', reason: 'the worker registered again', atMs: event.atMs } } });
          if (context.registration) enqueue.stopChild(connection);
          enqueue.spawnChild('connection', {
            id: connection,
            systemId: connection,
            input: { workerId: context.workerId, registrationId: event.registration.registrationId, heartbeatTimeoutMs: context.heartbeatTimeoutMs, atMs: event.atMs },
          });
          enqueue.assign({ registration: event.registration, online: false, connected: true });

          const present: Record<string, true> = {};
          for (const report of event.sessions) {
            const id = report.description.sessionId;
            present[id] = true;
            // Destroyed while the worker was away: no proxy comes back; the destroy goes to the worker once it is online.
            if (context.tombstones.includes(id)) continue;
            const proxy = system.get(sessionProxyIdOf(id)) as AnyActorRef | undefined;
            // Known (here, or in another shard it moves from): it hears the report. Unknown: a proxy is made.
            if (proxy) enqueue.sendTo(proxy, { type: 'session.reported', workerId: context.workerId, report, atMs: event.atMs });
            else enqueue({ type: 'placeProxy', params: { input: proxyInputOf(context, 'mirror', report, false, event.atMs) } });
          }
          for (const bucket of Object.keys(context.buckets)) {
            enqueue.sendTo(bucket, { type: 'bucket.reconcile', present, reason: `worker ${context.workerId} registered again without this session (its workspace is gone)`, atMs: event.atMs } satisfies BucketEvent);
          }
          // Tombstones of sessions the worker does not hold any more are done with.
          enqueue.assign({ tombstones: context.tombstones.filter((id) => present[id]) });
        }),
        'tellLoad',
      ],
    },
    'worker.online': {
      actions: enqueueActions(({ context, enqueue, event, system }) => {
        if (event.registrationId !== context.registration?.registrationId) return;
        enqueue.assign({ online: true, tombstones: [] });
        enqueue({ type: 'broadcast', params: { event: { type: 'worker.online', atMs: event.atMs } } });
        const connection = system.get(connectionIdOf(context.workerId)) as AnyActorRef | undefined;
        if (connection) for (const id of context.tombstones) enqueue.sendTo(connection, { type: 'worker.command', command: { kind: 'destroy_session', sessionId: id } });
        enqueue('tellLoad');
      }),
    },
    'worker.lost': {
      actions: enqueueActions(({ context, enqueue, event }) => {
        if (event.registrationId !== context.registration?.registrationId) return;
        enqueue.stopChild(connectionIdOf(context.workerId));
        enqueue.assign({ online: false, lost: true, registration: event.deregistered ? null : context.registration });
        enqueue({ type: 'broadcast', params: { event: { type: 'worker.lost', reason: event.reason, atMs: event.atMs } } });
        enqueue('tellLoad');
      }),
    },
    'coordinator.draining': {
      actions: [assign({ draining: true }), { type: 'broadcast', params: { event: { type: 'coordinator.draining' } } }],
    },
    'session.create': {
      actions: [
        {
          type: 'placeProxy',
          params: ({ context, event }) => ({
            input: proxyInputOf(context, 'create', { description: event.description, state: 'INITIALIZING', workspacePath: '', failureReason: '', gone: false, incarnation: '' }, context.online, event.atMs),
          }),
        },
        'tellLoad',
      ],
    },
    'session.adopt': {
      actions: [
        {
          type: 'placeProxy',
          params: ({ context, event }) => ({ input: proxyInputOf(context, 'mirror', event.report, context.online, event.atMs) }),
        },
        'tellLoad',
      ],
    },
    'bucket.session_ended': {
      actions: [
        enqueueActions(({ context, enqueue, event }) => {
          enqueue.assign(oneFewer(context, event.bucketId));
          const out = event.output;
          if (out.end === 'moved') enqueue.sendParent({ type: 'session.moved', sessionId: out.sessionId, from: context.workerId, to: out.movedTo, report: out.report, atMs: out.report.description.lastActivityMs } satisfies ShardParentEvent);
          // Made again from its checkpoint and that failed: it stays EVICTED, its checkpoint kept for the next try.
          if (out.end === 'refused' && out.handover) {
            enqueue({ type: 'warn', params: { message: `session ${out.sessionId} could not be restored from checkpoint ${out.handover.checkpointId}; it stays EVICTED: ${out.error?.message ?? ''}`, details: { sessionId: out.sessionId } } });
            enqueue.sendParent({ type: 'session.evicted', from: context.workerId, report: out.report, restore: out.handover, rehome: false, atMs: out.report.description.lastActivityMs } satisfies ShardParentEvent);
          }
          if ((out.end === 'evicted' || out.end === 'rehome') && out.handover) {
            // A recovered session's copy on this (lost) worker is dropped if the worker comes back.
            if (out.end === 'rehome') enqueue.assign({ tombstones: [...context.tombstones.filter((id) => id !== out.sessionId), out.sessionId].slice(-MAX_TOMBSTONES) });
            enqueue.sendParent({ type: 'session.evicted', from: context.workerId, report: out.report, restore: out.handover, rehome: out.end === 'rehome', atMs: out.report.description.lastActivityMs } satisfies ShardParentEvent);
          }
        }),
        'tellLoad',
      ],
    },
    'bucket.session_crashed': {
      actions: [
        assign(({ context, event }) => oneFewer(context, event.bucketId)),
        { type: 'warn', params: ({ event }) => ({ message: 'a session proxy crashed; it comes back with the worker\'s next registration', details: { sessionId: event.sessionId, reason: event.reason } }) },
        'tellLoad',
      ],
    },
    'session.tombstone': {
      actions: assign({ tombstones: ({ context, event }) => [...context.tombstones.filter((id) => id !== event.sessionId), event.sessionId].slice(-MAX_TOMBSTONES) }),
    },
    'session.conflict': { actions: { type: 'warn', params: ({ event }) => ({ message: event.message, details: { sessionId: event.sessionId } }) } },
    'xstate.done.actor.*': {
      actions: enqueueActions(({ context, enqueue, event }) => {
        const childId = event.type.slice('xstate.done.actor.'.length);
        enqueue.stopChild(childId);
        if (childId === connectionIdOf(context.workerId)) enqueue.assign({ connected: false });
      }),
    },
    'xstate.error.actor.*': {
      actions: enqueueActions(({ context, enqueue, event, self }) => {
        const childId = removeFailedChild(event, self, enqueue);
        if (childId === connectionIdOf(context.workerId)) {
          enqueue.assign({ connected: false });
          enqueue.raise({ type: 'worker.lost', workerId: context.workerId, registrationId: context.registration?.registrationId ?? '', reason: 'the connection actor crashed', atMs: 0, deregistered: false });
        } else if (childId in context.buckets) {
          // Its proxies are gone with it; they come back with the worker's next registration.
          const buckets = { ...context.buckets };
          const lost = buckets[childId] ?? 0;
          delete buckets[childId];
          enqueue.assign({ buckets, sessions: Math.max(0, context.sessions - lost) });
          enqueue({ type: 'warn', params: { message: 'a bucket of session proxies crashed', details: { childId, sessions: String(lost) } } });
          enqueue('tellLoad');
        }
      }),
    },
  },
});

export type ShardActor = ActorRefFrom<typeof shardMachine>;
export type ShardSnapshot = SnapshotFrom<typeof shardMachine>;
