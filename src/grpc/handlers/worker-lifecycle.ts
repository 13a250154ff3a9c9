import { timingSafeEqual } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { CodegenError, invalidArgument, toErrorInfo } from '../../domain/errors.js';
import { decodeReport } from '../../wire/worker-codecs.js';
import type { WorkerLifecyclePort, WorkerStreamLink } from '../../runtime/port.js';
import type { Logger } from '../../log/logger.js';
import type { CoordinatorMessage, WorkerLifecycleHandlers, WorkerMessage__Output } from '../../wire/messages.js';
import { WORKER_TOKEN_METADATA } from '../../wire/metadata.js';
import { toServiceError, unaryHandler } from '../../wire/status.js';

/** Constant-time comparison of the presented token with the configured one (none configured: open). */
export function checkWorkerToken(expected: string, metadata: grpc.Metadata): void {
  if (!expected) return;
  const presented = metadata.get(WORKER_TOKEN_METADATA)[0];
  const a = Buffer.from(typeof presented === 'string' ? presented : '');
  const b = Buffer.from(expected);
  if (a.length !== b.length || !timingSafeEqual(a, b)) {
    throw new CodegenError('UNAUTHENTICATED', `missing or wrong worker token: set WORKER_TOKEN on the worker to the coordinator's`);
  }
}

export function workerLifecycleHandlers(workers: WorkerLifecyclePort, opts: { token: string; logger: Logger; firstMessageTimeoutMs?: number }): WorkerLifecycleHandlers {
  const authed = <Req, Res>(fn: (req: Req) => Res | Promise<Res>) =>
    unaryHandler<Req, Res>((req, call) => {
      checkWorkerToken(opts.token, call.metadata);
      return fn(req);
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
      checkWorkerToken(opts.token, call.metadata);
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
    RegisterWorker: authed((req) => {
      let r;
      let sessions;
      try {
        sessions = (req.sessions ?? []).map((s, i) => decodeReport(s, `sessions[${i}]`));
        r = workers.register({ workerId: String(req.worker_id ?? ''), instanceId: String(req.instance_id ?? ''), maxSessions: Number(req.max_sessions ?? 0), isolation: String(req.isolation ?? ''), hostname: String(req.hostname ?? ''), sessions });
      } catch (err) {
        opts.logger.warn({ workerId: req.worker_id, err: toErrorInfo(err) }, 'worker registration refused');
        throw err;
      }
      opts.logger.info({ workerId: req.worker_id, registrationId: r.registrationId, maxSessions: req.max_sessions, isolation: req.isolation, sessions: sessions.length }, 'worker registered');
      return { registration_id: r.registrationId, heartbeat_interval_ms: r.heartbeatIntervalMs, heartbeat_timeout_ms: r.heartbeatTimeoutMs };
    }),
    Heartbeat: authed((req) => {
      workers.heartbeat(String(req.worker_id ?? ''), String(req.registration_id ?? ''));
      return { heartbeat_interval_ms: 0 };
    }),
    DeregisterWorker: authed((req) => {
      workers.deregister(String(req.worker_id ?? ''), String(req.registration_id ?? ''), String(req.reason ?? ''));
      opts.logger.info({ workerId: req.worker_id }, 'worker deregistered');
      return { deregistered: true };
    }),
    TaskStream: taskStream,
  };
}
