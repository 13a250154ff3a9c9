import { enqueueActions, sendParent, setup, type ActorRefFrom, type AnyActorRef } from 'xstate';
import { reasonOf, removeFailedChild } from '../supervision.js';
import { sessionProxyIdOf, sessionProxyMachine, type SessionProxyInput, type SessionProxyOutput, type SessionProxyParentEvent } from './session-proxy.machine.js';

/**
 * A bucket of session proxies inside a worker's shard. XState copies a parent's children on
 * every spawn, so a shard spreads its sessions over buckets of bounded size: adding a session
 * costs the same at 10,000 as at 10. The bucket passes broadcasts down and endings up; proxies
 * are found directly by their systemId, never through the bucket.
 */
export interface BucketInput {
  workerId: string;
  bucketId: string;
}

export type BucketEvent =
  | { type: 'bucket.spawn'; input: SessionProxyInput }
  | { type: 'bucket.broadcast'; event: { type: 'worker.lost'; reason: string; atMs: number } | { type: 'worker.online'; atMs: number } | { type: 'coordinator.draining' } }
  /** The worker registered with the sessions in `present`: every other proxy here is told it was not reported. */
  | { type: 'bucket.reconcile'; present: Record<string, true>; reason: string; atMs: number }
  | SessionProxyParentEvent
  | { type: `xstate.done.actor.${string}`; output: SessionProxyOutput }
  | { type: `xstate.error.actor.${string}`; error: unknown };

export type BucketParentEvent =
  | { type: 'bucket.session_ended'; bucketId: string; output: SessionProxyOutput }
  | { type: 'bucket.session_crashed'; bucketId: string; sessionId: string; reason: string }
  | SessionProxyParentEvent;

export const bucketMachine = setup({
  types: {
    context: {} as BucketInput,
    input: {} as BucketInput,
    events: {} as BucketEvent,
  },
  actors: {
    sessionProxy: sessionProxyMachine,
  },
}).createMachine({
  id: 'bucket',
  context: ({ input }) => input,
  on: {
    'bucket.spawn': {
      actions: enqueueActions(({ enqueue, event }) => {
        const id = sessionProxyIdOf(event.input.report.description.sessionId);
        enqueue.spawnChild('sessionProxy', { id, systemId: id, input: event.input });
      }),
    },
    'bucket.broadcast': {
      actions: enqueueActions(({ enqueue, event, self }) => {
        for (const child of Object.values(self.getSnapshot().children) as AnyActorRef[]) enqueue.sendTo(child, event.event);
      }),
    },
    'bucket.reconcile': {
      actions: enqueueActions(({ enqueue, event, self }) => {
        for (const [id, child] of Object.entries(self.getSnapshot().children) as Array<[string, AnyActorRef]>) {
          if (!event.present[id.slice('session:'.length)]) enqueue.sendTo(child, { type: 'session.unreported', reason: event.reason, atMs: event.atMs });
        }
      }),
    },
    'session.tombstone': { actions: sendParent(({ event }) => event) },
    'session.conflict': { actions: sendParent(({ event }) => event) },
    'xstate.done.actor.*': {
      actions: enqueueActions(({ context, enqueue, event }) => {
        enqueue.stopChild(event.type.slice('xstate.done.actor.'.length));
        enqueue.sendParent({ type: 'bucket.session_ended', bucketId: context.bucketId, output: (event as { output: SessionProxyOutput }).output } satisfies BucketParentEvent);
      }),
    },
    // A proxy is a mirror: one that crashed is dropped, and the shard asks the worker to report again.
    'xstate.error.actor.*': {
      actions: enqueueActions(({ context, enqueue, event, self }) => {
        const childId = removeFailedChild(event, self, enqueue);
        enqueue.sendParent({ type: 'bucket.session_crashed', bucketId: context.bucketId, sessionId: childId.slice('session:'.length), reason: reasonOf((event as { error?: unknown }).error) } satisfies BucketParentEvent);
      }),
    },
  },
});

export type BucketActor = ActorRefFrom<typeof bucketMachine>;
