import type { Logger } from '../log/logger.js';
import type { ResultStore } from '../runtime/result-store.js';
import type { LiveRegistry } from '../live/registry.js';
import { bucketMachine } from '../../machines/coordinator/bucket.machine.js';
import { coordinatorMachine } from '../../machines/coordinator/coordinator.machine.js';
import { sessionProxyMachine } from '../../machines/coordinator/session-proxy.machine.js';
import { shardMachine } from '../../machines/coordinator/shard.machine.js';
import { taskProxyMachine, type KeptOutcome } from '../../machines/coordinator/task-proxy.machine.js';
import { workerConnectionMachine } from '../../machines/coordinator/worker-connection.machine.js';
import { supervisorMachine } from '../../machines/supervisor.machine.js';
import { workerStreamLogic, type StreamTable } from './streams.js';

export interface CoordinatorEffectsOptions {
  streams: StreamTable;
  results: ResultStore;
  logger: Logger;
  live?: LiveRegistry;
  /** Every task's end (the metrics and the audit log); must not throw. */
  onTaskEnded?: (ended: KeptOutcome) => void;
}

/**
 * The coordinator's tree with its effects provided: the one writer to each worker (the stream
 * logic), the result cache the task proxies fill, and the task-id check against it.
 */
export function provideCoordinator(opts: CoordinatorEffectsOptions) {
  const taskProxy = taskProxyMachine.provide({
    actions: {
      keepOutcome: (_, p) => {
        opts.results.put(p.taskId, p.sessionId, p.outcome);
        try {
          opts.onTaskEnded?.(p);
        } catch {
          // observers never fail a task
        }
      },
    },
  });
  const sessionProxy = sessionProxyMachine.provide({
    actors: { taskProxy },
    guards: {
      taskIdTakenElsewhere: (_, p) => {
        const owner = opts.results.sessionOf(p.taskId);
        return owner !== undefined && owner !== p.sessionId;
      },
    },
  });
  const bucket = bucketMachine.provide({ actors: { sessionProxy } });
  const connection = workerConnectionMachine.provide({ actors: { workerStream: workerStreamLogic({ streams: opts.streams, logger: opts.logger, ...(opts.live ? { live: opts.live } : {}) }) } });
  const shard = shardMachine.provide({ actors: { bucket, connection } });
  return coordinatorMachine.provide({ actors: { shardSupervisor: supervisorMachine.provide({ actors: { child: shard } }) } });
}
