import { CodegenError, invalidArgument } from '../domain/errors.js';
import { isSafeId, newRegistrationId } from '../domain/ids.js';
import type { Logger } from '../log/logger.js';
import type { CoordinatorActor } from '../../machines/coordinator.machine.js';
import type { StreamHandle } from '../../machines/worker-connection.machine.js';
import type { RegisterWorkerInput, WorkerLifecyclePort, WorkerStream, WorkerStreamLink } from './port.js';
import { WorkerChannel } from './worker-channel.js';

/** The WorkerLifecycle front door's port: events into the coordinator root, answers from what it emits. */
export class WorkerRegistry implements WorkerLifecyclePort {
  constructor(
    private readonly root: CoordinatorActor,
    private readonly timing: { heartbeatIntervalMs: number; heartbeatTimeoutMs: number },
    private readonly log: Logger,
  ) {}

  register(input: RegisterWorkerInput): { registrationId: string; heartbeatIntervalMs: number; heartbeatTimeoutMs: number } {
    if (!isSafeId(input.workerId)) throw invalidArgument('worker_id', 'letters, digits, ".", "_" and "-" only, 1 to 128 characters');
    if (!Number.isInteger(input.maxSessions) || input.maxSessions < 1 || input.maxSessions > 10_000) throw invalidArgument('max_sessions', 'must be from 1 to 10000');
    const registrationId = newRegistrationId();
    this.root.send({ type: 'worker.register', workerId: input.workerId, registrationId, maxSessions: input.maxSessions, isolation: input.isolation || 'unknown', hostname: input.hostname });
    return { registrationId, ...this.timing };
  }

  heartbeat(workerId: string, registrationId: string): void {
    this.sendKnown({ type: 'worker.heartbeat', workerId, registrationId });
  }

  deregister(workerId: string, registrationId: string, reason: string): void {
    this.sendKnown({ type: 'worker.deregister', workerId, registrationId, reason: reason || 'worker asked' });
  }

  openStream(workerId: string, registrationId: string, stream: WorkerStream): WorkerStreamLink {
    const channel = new WorkerChannel(workerId, registrationId, stream, this.log.child({ workerId }));
    this.sendKnown({ type: 'stream.opened', workerId, registrationId, stream: channel as unknown as StreamHandle });
    return channel;
  }

  /** Sends, and turns the root's `worker.unknown` answer into NOT_FOUND (the worker then registers again). */
  private sendKnown(event: Parameters<CoordinatorActor['send']>[0] & { workerId: string; registrationId: string }): void {
    let unknown = false;
    const sub = this.root.on('worker.unknown', (e) => {
      if (e.workerId === event.workerId && e.registrationId === event.registrationId) unknown = true;
    });
    try {
      this.root.send(event);
    } finally {
      sub.unsubscribe();
    }
    if (unknown) throw new CodegenError('NOT_FOUND', `worker ${event.workerId} with registration ${event.registrationId} is not registered; register again`);
  }
}
