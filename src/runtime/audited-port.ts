/**
 * A caller's port with the audit log over it: sessions made, destroyed, checkpointed and
 * restored, and checkpoints deleted, each recorded with who asked and how it ended. Tasks carry
 * who submitted them into the actors (SubmitTaskInput.origin) and are recorded when they end
 * there, so a task is audited once whoever follows it and however long it runs.
 */
import { CodegenError } from '../domain/errors.js';
import type { AuditEvent, AuditLog, AuditWho } from '../log/audit.js';
import { whoToOrigin } from '../log/audit.js';
import type { CoordinatorPort, SubmitTaskInput, TaskHandle } from './port.js';
import type { TaskUpdate } from '../domain/tasks.js';

const codeOf = (err: unknown): string => (err instanceof CodegenError ? err.code : 'INTERNAL');

export function auditedPort(port: CoordinatorPort, audit: AuditLog, who: AuditWho): CoordinatorPort {
  if (!audit.enabled) return port;
  const recorded = async <T>(event: AuditEvent, fields: Record<string, unknown>, call: () => Promise<T>, after: (r: T) => Record<string, unknown>): Promise<T> => {
    const began = Date.now();
    try {
      const r = await call();
      audit.record(event, who, { ...fields, ...after(r), ok: true, durationMs: Date.now() - began });
      return r;
    } catch (err) {
      audit.record(event, who, { ...fields, ok: false, error: codeOf(err), durationMs: Date.now() - began });
      throw err;
    }
  };
  const origin = whoToOrigin(who);
  const overrides: Partial<CoordinatorPort> = {
    createSession: (input: Parameters<CoordinatorPort['createSession']>[0]) =>
      recorded('session.create', { workerId: input.workerId ?? '', workspaceId: input.workspaceId ?? '' }, () => port.createSession(input), (v) => ({ sessionId: v.sessionId, workerId: v.workerId })),
    destroySession: (sessionId: string, options?: Parameters<CoordinatorPort['destroySession']>[1]) =>
      recorded('session.destroy', { sessionId, force: Boolean(options?.force), saveCheckpoint: Boolean(options?.saveCheckpoint) }, () => port.destroySession(sessionId, options), (r) => ({ destroyed: r.destroyed, checkpointId: r.checkpointId })),
    checkpointSession: (sessionId: string, options?: { name?: string }) =>
      recorded('session.checkpoint', { sessionId }, () => port.checkpointSession(sessionId, options), (c) => ({ checkpointId: c.checkpointId, sizeBytes: c.sizeBytes, fileCount: c.fileCount })),
    restoreCheckpoint: (checkpointId: string, options?: Parameters<CoordinatorPort['restoreCheckpoint']>[1]) =>
      recorded('session.restore', { checkpointId, createNew: Boolean(options?.createNew) }, () => port.restoreCheckpoint(checkpointId, options), (r) => ({ sessionId: r.session.sessionId, workerId: r.session.workerId })),
    deleteCheckpoint: (checkpointId: string) => recorded('checkpoint.delete', { checkpointId }, () => port.deleteCheckpoint(checkpointId), (deleted) => ({ deleted })),
    submitTask: (input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle> => port.submitTask({ ...input, origin }, onUpdate),
  };
  // Everything else goes to the caller's port as it is (bound to it, so its own fields stay its own).
  return new Proxy(port, {
    get: (target, prop, receiver) => {
      if (prop in overrides) return overrides[prop as keyof CoordinatorPort];
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** A gRPC peer ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000") as an address. */
export const peerAddress = (peer: string | undefined): string => (peer ?? '').replace(/^(ipv4|ipv6|unix):/, '');
