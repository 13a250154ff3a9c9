import type * as grpc from '@grpc/grpc-js';
import { tokenMatches } from '../../auth/authenticator.js';
import { CodegenError, invalidArgument, toErrorInfo } from '../../domain/errors.js';
import { decodeReport } from '../../wire/worker-codecs.js';
import type { WorkerLifecyclePort, WorkerStreamLink } from '../../runtime/port.js';
import type { Logger } from '../../log/logger.js';
import type { CoordinatorMessage, WorkerLifecycleHandlers, WorkerMessage__Output } from '../../wire/messages.js';
import { WORKER_TOKEN_METADATA } from '../../wire/metadata.js';
import { toServiceError, unaryHandler } from '../../wire/status.js';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { blobStoreHandlers } from './blob-store.js';
import type { AuditLog } from '../../log/audit.js';
import { peerAddress } from '../../runtime/audited-port.js';

/** Constant-time comparison of the presented token with the coordinator's (it always has one: configured, or made at first start). */
export function checkWorkerToken(expected: string, metadata: grpc.Metadata): void {
  const presented = metadata.get(WORKER_TOKEN_METADATA)[0];
  if (typeof presented !== 'string' || presented === '') {
    throw new CodegenError('UNAUTHENTICATED', `worker token: none was sent; set WORKER_TOKEN on the worker to the coordinator's (or WORKER_TOKEN_FILE to a copy of its worker-token file)`);
  }
  if (!tokenMatches(presented, expected)) throw new CodegenError('UNAUTHENTICATED', `worker token: the one sent is wrong; set WORKER_TOKEN on the worker to the coordinator's`);
}

/** The names a verified client certificate gives its holder: the subject's CN and the DNS names of subjectAltName. */
export function certificateNames(cert: { subject?: Record<string, string | string[] | undefined>; subjectaltname?: string } | undefined): string[] {
  if (!cert) return [];
  const cn = cert.subject?.['CN'];
  const names = Array.isArray(cn) ? [...cn] : cn ? [cn] : [];
  for (const part of (cert.subjectaltname ?? '').split(',')) {
    const m = /^\s*DNS:(.+)$/.exec(part);
    if (m?.[1]) names.push(m[1].trim());
  }
  return names;
}

/**
 * With mutual TLS a worker's identity is its certificate: the worker_id it claims must be one of
 * the certificate's names (grpc-js shows a peer certificate only when the CA verified it).
 */
export function checkWorkerCertificate(call: { getAuthContext?: () => { sslPeerCertificate?: unknown } | null }, workerId: string): void {
  const cert = call.getAuthContext?.()?.sslPeerCertificate as Parameters<typeof certificateNames>[0];
  if (!cert) throw new CodegenError('UNAUTHENTICATED', 'worker certificate: none (or one not signed by TLS_CLIENT_CA) was presented; give the worker TLS_CERT and TLS_KEY');
  const names = certificateNames(cert);
  if (!names.includes(workerId)) throw new CodegenError('PERMISSION_DENIED', `worker_id: ${JSON.stringify(workerId)} is not a name of the worker's certificate (${names.join(', ') || 'none'}); set WORKER_ID to its CN`);
}

export interface WorkerAuthOptions {
  token: string;
  /** Mutual TLS: a worker proves who it is with its certificate instead of the token. */
  mutualTls: boolean;
}

export function workerLifecycleHandlers(workers: WorkerLifecyclePort, opts: WorkerAuthOptions & { logger: Logger; firstMessageTimeoutMs?: number; checkpoints: CheckpointStore; audit?: AuditLog }): WorkerLifecycleHandlers {
  const check = (call: Parameters<typeof checkWorkerCertificate>[0] & { metadata: grpc.Metadata }, workerId: string | undefined) => {
    if (!opts.mutualTls) checkWorkerToken(opts.token, call.metadata);
    else if (workerId !== undefined) checkWorkerCertificate(call, workerId);
  };
  const authed = <Req extends { worker_id?: string }, Res>(fn: (req: Req, peer: string) => Res | Promise<Res>) =>
    unaryHandler<Req, Res>((req, call) => {
      check(call, String(req.worker_id ?? ''));
      return fn(req, call.getPeer());
    });

  const taskStream = (call: grpc.ServerDuplexStream<WorkerMessage__Output, CoordinatorMessage>) => {
    let link: WorkerStreamLink | undefined;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      clearTimeout(timer);
      call.emit('error', toServiceError(err));
    };
    const timer = setTimeout(() => fail(invalidArgument('hello', 'the first message of the task stream must name the worker (WorkerHello)')), opts.firstMessageTimeoutMs ?? 10_000);
    try {
      check(call, undefined);
    } catch (err) {
      fail(err);
      return;
    }
    call.on('data', (msg: WorkerMessage__Output) => {
      if (link) {
        link.receive(msg);
        return;
      }
      if (failed) return;
      clearTimeout(timer);
      try {
        if (msg.body !== 'hello') throw invalidArgument('hello', 'the first message of the task stream must be a WorkerHello');
        const workerId = String(msg.hello?.worker_id ?? '');
        const registrationId = String(msg.hello?.registration_id ?? '');
        if (opts.mutualTls) checkWorkerCertificate(call, workerId);
        link = workers.openStream(workerId, registrationId, call);
        opts.logger.info({ workerId, registrationId }, 'worker task stream open');
      } catch (err) {
        link = undefined;
        fail(err);
      }
    });
    const closed = (why: string) => () => {
      clearTimeout(timer);
      link?.close(why);
    };
    call.on('end', closed('worker ended the stream'));
    call.on('error', (e: Error) => closed(`stream error: ${e.message}`)());
    call.on('cancelled', closed('stream cancelled (connection dropped)'));
    call.on('close', closed('stream closed'));
  };

  return {
    RegisterWorker: authed((req, peer) => {
      const who = { workerId: String(req.worker_id ?? ''), credential: opts.mutualTls ? 'worker certificate' : 'WORKER_TOKEN', peer: peerAddress(peer) };
      let r;
      let sessions;
      try {
        sessions = (req.sessions ?? []).map((s, i) => decodeReport(s, `sessions[${i}]`));
        r = workers.register({ workerId: String(req.worker_id ?? ''), instanceId: String(req.instance_id ?? ''), maxSessions: Number(req.max_sessions ?? 0), isolation: String(req.isolation ?? ''), hostname: String(req.hostname ?? ''), sessions });
      } catch (err) {
        opts.logger.warn({ workerId: req.worker_id, err: toErrorInfo(err) }, 'worker registration refused');
        opts.audit?.record('worker.register', who, { instanceId: String(req.instance_id ?? ''), hostname: String(req.hostname ?? ''), ok: false, error: err instanceof CodegenError ? err.code : 'INTERNAL' });
        throw err;
      }
      opts.logger.info({ workerId: req.worker_id, registrationId: r.registrationId, maxSessions: req.max_sessions, isolation: req.isolation, sessions: sessions.length }, 'worker registered');
      opts.audit?.record('worker.register', who, { instanceId: String(req.instance_id ?? ''), hostname: String(req.hostname ?? ''), registrationId: r.registrationId, maxSessions: Number(req.max_sessions ?? 0), sessions: sessions.length, ok: true });
      return { registration_id: r.registrationId, heartbeat_interval_ms: r.heartbeatIntervalMs, heartbeat_timeout_ms: r.heartbeatTimeoutMs };
    }),
    Heartbeat: authed((req) => {
      const f = req.figures;
      const figures = f ? { instanceId: String(f.instance_id ?? ''), sandboxKills: { timeout: Number(f.sandbox_kills_timeout ?? 0), cancel: Number(f.sandbox_kills_cancel ?? 0), limit: Number(f.sandbox_kills_limit ?? 0) } } : undefined;
      workers.heartbeat(String(req.worker_id ?? ''), String(req.registration_id ?? ''), figures);
      return { heartbeat_interval_ms: 0 };
    }),
    DeregisterWorker: authed((req) => {
      workers.deregister(String(req.worker_id ?? ''), String(req.registration_id ?? ''), String(req.reason ?? ''));
      opts.logger.info({ workerId: req.worker_id }, 'worker deregistered');
      return { deregistered: true };
    }),
    TaskStream: taskStream,
    // With mutual TLS a blob call needs a certificate the CA verified (any worker's: blobs belong to no one worker).
    ...blobStoreHandlers(opts.checkpoints, (call) => {
      if (!opts.mutualTls) checkWorkerToken(opts.token, call.metadata);
      else if (!(call as Parameters<typeof checkWorkerCertificate>[0]).getAuthContext?.()?.sslPeerCertificate) {
        throw new CodegenError('UNAUTHENTICATED', 'worker certificate: none (or one not signed by TLS_CLIENT_CA) was presented; give the worker TLS_CERT and TLS_KEY');
      }
    }),
  };
}
