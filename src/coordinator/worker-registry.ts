import { CodegenError, invalidArgument } from '../domain/errors.js';
import { isSafeId, newRegistrationId } from '../domain/ids.js';
import { askNow } from '../runtime/ask.js';
import type { RegisterWorkerInput, WorkerLifecyclePort, WorkerStream, WorkerStreamLink } from '../runtime/port.js';
import type { CoordinatorActor, CoordinatorEmitted, CoordinatorEvent } from '../../machines/coordinator/coordinator.machine.js';
import type { StreamTable } from './streams.js';
import type { WorkerFigures } from '../metrics/coordinator-metrics.js';

export type KnownWorkerEvent = Extract<CoordinatorEvent, { workerId: string; registrationId: string }>;

/** Sends an event that names a registration to the root; true when it answered that it does not know it (`worker.unknown`). */
export function sendToKnownWorker(root: CoordinatorActor, event: KnownWorkerEvent): boolean {
  let unknown = false;
  const sub = root.on('worker.unknown', (e) => {
    if (e.workerId === event.workerId && e.registrationId === event.registrationId) unknown = true;
  });
  try {
    root.send(event);
  } finally {
    sub.unsubscribe();
  }
  return unknown;
}

/** The WorkerLifecycle front door's port: events into the coordinator's root, answers from what it emits. */
export class WorkerRegistry implements WorkerLifecyclePort {
  constructor(
    private readonly root: CoordinatorActor,
    private readonly streams: StreamTable,
    private readonly timing: { heartbeatIntervalMs: number; heartbeatTimeoutMs: number },
    /** A known worker's figures from its heartbeat (for /metrics). */
    private readonly onFigures: (workerId: string, figures: WorkerFigures) => void = () => {},
  ) {}

  register(input: RegisterWorkerInput): { registrationId: string; heartbeatIntervalMs: number; heartbeatTimeoutMs: number } {
    if (!isSafeId(input.workerId)) throw invalidArgument('worker_id', 'letters, digits, ".", "_" and "-" only, 1 to 128 characters');
    if (input.workerId === 'coordinator') throw invalidArgument('worker_id', '"coordinator" names the coordinator itself in the live view and the inspector; choose another WORKER_ID');
    if (!Number.isInteger(input.maxSessions) || input.maxSessions < 1 || input.maxSessions > 10_000) throw invalidArgument('max_sessions', 'must be from 1 to 10000');
    const seen = new Set<string>();
    for (const [i, r] of input.sessions.entries()) {
      if (seen.has(r.description.sessionId)) throw invalidArgument(`sessions[${i}].session_id`, `${r.description.sessionId} is listed twice`);
      seen.add(r.description.sessionId);
    }
    const registrationId = newRegistrationId();
    const event: CoordinatorEvent = {
      type: 'worker.register',
      workerId: input.workerId,
      registration: { registrationId, instanceId: input.instanceId, maxSessions: input.maxSessions, isolation: input.isolation || 'unknown', hostname: input.hostname },
      sessions: input.sessions,
      atMs: Date.now(),
    };
    const answer = askNow(this.root, event, ['worker.registered', 'worker.refused'], (e) => {
      const a = e as CoordinatorEmitted;
      return (a.type === 'worker.registered' || a.type === 'worker.refused') && a.registrationId === registrationId ? a : undefined;
    });
    if (answer.type === 'worker.refused') throw CodegenError.from(answer.error);
    return { registrationId, ...this.timing };
  }

  heartbeat(workerId: string, registrationId: string, figures?: WorkerFigures): void {
    this.sendKnown({ type: 'worker.heartbeat', workerId, registrationId, atMs: Date.now() });
    if (figures) this.onFigures(workerId, figures);
  }

  deregister(workerId: string, registrationId: string, reason: string): void {
    this.sendKnown({ type: 'worker.deregister', workerId, registrationId, reason: reason || 'worker asked', atMs: Date.now() });
  }

  openStream(workerId: string, registrationId: string, stream: WorkerStream): WorkerStreamLink {
    const { streamId, link } = this.streams.add(stream);
    try {
      this.sendKnown({ type: 'stream.opened', workerId, registrationId, streamId, atMs: Date.now() });
    } catch (err) {
      this.streams.forget(streamId);
      throw err;
    }
    return link;
  }

  /** Sends, and turns the root's `worker.unknown` answer into NOT_FOUND (the worker then registers again). */
  private sendKnown(event: KnownWorkerEvent): void {
    const unknown = sendToKnownWorker(this.root, event);
    if (unknown) throw new CodegenError('NOT_FOUND', `worker ${event.workerId} with registration ${event.registrationId} is not registered; register again`);
  }
}
