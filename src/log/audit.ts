/**
 * The audit log (AUDIT_LOG: a file path, or `stdout`): one JSON line per session create,
 * destroy, checkpoint and restore, per ended task (tool, duration, status: never its contents)
 * and per worker registration, each naming who did it. A separate pino destination, so the
 * operational log's level and format never hide or mix with it.
 *
 *   {"time":"2026-12-02T12:00:00.000Z","event":"task","who":{"tenant":"default","credential":"CLIENT_TOKEN","peer":"127.0.0.1:50312"},"sessionId":"…","taskId":"…","tool":"run_python","status":"SUCCESS","durationMs":41}
 */
import path from 'node:path';
import pino from 'pino';

/** Who made a call: the authenticated client (tenant and which credential), and the peer address it came from. */
export interface AuditWho {
  tenant?: string;
  credential?: string;
  peer?: string;
  /** A worker registering. */
  workerId?: string;
}

export type AuditEvent = 'session.create' | 'session.destroy' | 'session.checkpoint' | 'session.restore' | 'checkpoint.delete' | 'task' | 'worker.register';

export interface AuditLog {
  record(event: AuditEvent, who: AuditWho | undefined, fields: Record<string, unknown>): void;
  readonly enabled: boolean;
  close(): void;
}

export const noAudit: AuditLog = { record: () => {}, enabled: false, close: () => {} };

export function openAuditLog(destination: string): AuditLog {
  if (!destination) return noAudit;
  let dest;
  if (destination === 'stdout') dest = pino.destination({ fd: 1, sync: true });
  else {
    dest = pino.destination({ dest: path.resolve(destination), sync: true, mkdir: true });
  }
  // Lines written whole to the destination: the audit format is ours alone (no level, pid or msg keys).
  return {
    enabled: true,
    record: (event, who, fields) => {
      try {
        dest.write(`${JSON.stringify({ time: new Date().toISOString(), event, who: who ?? {}, ...fields })}\n`);
      } catch {
        // the audit log must never fail a call
      }
    },
    close: () => dest.end(),
  };
}

/** The "who" string carried with a task through the actors, and back. */
export const whoToOrigin = (who: AuditWho | undefined): string => (who ? JSON.stringify(who) : '');
export const originToWho = (origin: string | undefined): AuditWho | undefined => {
  if (!origin) return undefined;
  try {
    return JSON.parse(origin) as AuditWho;
  } catch {
    return undefined;
  }
};
