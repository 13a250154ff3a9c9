import { sandboxKills } from '../sandbox/kill-counts.js';
import { hostname } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { fromCallback, fromPromise, type EventObject } from 'xstate';
import { CodegenError, toErrorInfo } from '../domain/errors.js';
import type { SessionReport } from '../domain/sessions.js';
import type { Logger } from '../log/logger.js';
import { unary, type RequestOf, type ResponseOf, type UnaryMethod } from '../wire/client.js';
import type { CoordinatorMessage__Output, WorkerLifecycleClient } from '../wire/messages.js';
import { decodeCommand, encodeReport } from '../wire/worker-codecs.js';
import { WORKER_TOKEN_METADATA } from '../wire/metadata.js';
import { remoteError } from '../wire/status.js';
import { isCredentialRefusal, type CoordinatorLinkEvent, type LinkRegistration } from '../../machines/worker/coordinator-link.machine.js';
import type { Uplink } from './uplink.js';

export interface LinkEffectsOptions {
  client: WorkerLifecycleClient;
  /** Random per process start: tells the coordinator a restarted worker from a second one with the same id. */
  instanceId: string;
  token: string;
  maxSessions: number;
  isolation: string;
  version: string;
  uplink: Uplink;
  logger: Logger;
  /** Session states for heartbeats. */
  sessionCount: () => number;
}

function metadata(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token) md.set(WORKER_TOKEN_METADATA, token);
  return md;
}

async function unaryCall<M extends UnaryMethod<WorkerLifecycleClient>>(client: WorkerLifecycleClient, method: M, req: RequestOf<WorkerLifecycleClient, M>, token: string, deadlineMs: number): Promise<ResponseOf<WorkerLifecycleClient, M>> {
  try {
    return await unary(client, method, req, { deadlineMs, metadata: metadata(token) });
  } catch (err) {
    throw remoteError(err, 'the coordinator');
  }
}

/** The coordinator link's effects: registration, heartbeats, the task stream, deregistration. */
export function linkActors(opts: LinkEffectsOptions) {
  const { client, token, logger } = opts;

  const register = fromPromise<LinkRegistration, { workerId: string; attempt: number; sessions: SessionReport[] }>(async ({ input }) => {
    try {
      const res = await unaryCall(
        client,
        'RegisterWorker',
        {
          worker_id: input.workerId,
          instance_id: opts.instanceId,
          max_sessions: opts.maxSessions,
          hostname: hostname(),
          version: opts.version,
          isolation: opts.isolation,
          capabilities: ['python', 'venv', 'pip'],
          sessions: input.sessions.map(encodeReport),
        },
        token,
        10_000,
      );
      const registration = { registrationId: String(res.registration_id), heartbeatIntervalMs: Number(res.heartbeat_interval_ms) || 5_000, atMs: Date.now() };
      logger.info({ registrationId: registration.registrationId, sessions: input.sessions.length }, 'Successfully registered with coordinator');
      return registration;
    } catch (err) {
      const info = toErrorInfo(err);
      // A refused credential is not retried: the worker machine stops the worker and says why.
      if (!isCredentialRefusal(info.code)) {
        const level = input.attempt === 0 || input.attempt % 10 === 0 ? 'warn' : 'debug';
        logger[level]({ err: info, attempt: input.attempt }, 'registration with coordinator failed; retrying with backoff');
      }
      throw err;
    }
  });

  const heartbeats = fromCallback<EventObject, { workerId: string; registrationId: string; intervalMs: number }>(({ input, sendBack }) => {
    let failures = 0;
    let stopped = false;
    const beat = () => {
      unaryCall(
        client,
        'Heartbeat',
        {
          worker_id: input.workerId,
          registration_id: input.registrationId,
          active_sessions: opts.sessionCount(),
          figures: { instance_id: opts.instanceId, sandbox_kills_timeout: sandboxKills.timeout, sandbox_kills_cancel: sandboxKills.cancel, sandbox_kills_limit: sandboxKills.limit },
        }, token, Math.max(1_000, input.intervalMs)).then(
        () => {
          failures = 0;
        },
        (err: CodegenError) => {
          if (stopped) return;
          failures += 1;
          // The coordinator forgot us (restarted) or refused us: register again now. Otherwise allow one miss.
          if (err.code === 'NOT_FOUND' || err.code === 'UNAUTHENTICATED' || failures >= 2) {
            sendBack({ type: 'link.failed', reason: `heartbeat failed: ${err.message}` } satisfies CoordinatorLinkEvent);
          }
        },
      );
    };
    const timer = setInterval(beat, input.intervalMs);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  });

  const taskStream = fromCallback<EventObject, { workerId: string; registrationId: string }>(({ input, sendBack }) => {
    const back = (e: CoordinatorLinkEvent) => sendBack(e);
    const call = client.TaskStream(metadata(token));
    let closed = false;
    const lost = (reason: string) => {
      if (closed) return;
      closed = true;
      opts.uplink.detach(call);
      back({ type: 'link.failed', reason });
    };
    call.on('data', (msg: CoordinatorMessage__Output) => {
      try {
        back(decodeCommand(msg, Date.now()));
      } catch (err) {
        // A task that cannot be decoded still ends, with the reason; anything else is logged and dropped.
        const task = msg.command === 'assign_task' ? msg.assign_task?.task : undefined;
        if (task?.task_id) opts.uplink.taskError(String(task.session_id ?? ''), String(task.task_id), toErrorInfo(err));
        logger.warn({ err: toErrorInfo(err), command: msg.command }, 'dropped a malformed command from the coordinator');
      }
    });
    call.on('error', (err: grpc.ServiceError) => lost(`task stream failed: ${err.details || err.message}`));
    call.on('end', () => lost('coordinator ended the task stream'));
    // The hello goes first: the coordinator takes nothing else before it; then what waited to be sent.
    call.write({ hello: { worker_id: input.workerId, registration_id: input.registrationId } });
    opts.uplink.attach(call);
    return () => {
      closed = true;
      opts.uplink.detach(call);
      call.cancel();
    };
  });

  const deregister = fromPromise<void, { workerId: string; registrationId: string; reason: string }>(async ({ input }) => {
    if (!input.registrationId) return;
    await unaryCall(client, 'DeregisterWorker', { worker_id: input.workerId, registration_id: input.registrationId, reason: input.reason }, token, 3_000).catch((err) =>
      logger.warn({ err: toErrorInfo(err) }, 'deregistration failed'),
    );
  });

  return { register, heartbeats, taskStream, deregister };
}
