import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createActor, waitFor } from 'xstate';
import { packageVersion } from '../config/package-info.js';
import type { WorkerConfig } from '../config/worker.js';
import { loadProtos } from '../wire/protos.js';
import { inspectionLogger } from '../log/inspection.js';
import type { Logger } from '../log/logger.js';
import { namespaceProfile } from '../sandbox/isolation.js';
import { detectIsolation, setIsolation } from '../sandbox/launch.js';
import { coordinatorLinkMachine } from '../../machines/coordinator-link.machine.js';
import { sessionMachine } from '../../machines/session.machine.js';
import { taskMachine } from '../../machines/task.machine.js';
import { workerMachine, type WorkerActor } from '../../machines/worker.machine.js';
import { linkActors } from './link-actors.js';
import { workerSessionActors } from './session-actors.js';
import { Uplink } from './uplink.js';
import { WorkspaceLedger } from './workspace-ledger.js';
import { VenvPool, resolveBasePython } from './venv-pool.js';

export interface RunningWorker {
  root: WorkerActor;
  isolation: string;
  /** Drains sessions, deregisters, stops; resolves within the drain bound plus a few seconds. */
  stop(): Promise<void>;
}

/** The worker's composition root: sandbox, venv pool, the link and the session supervisor. */
export async function startWorker(config: WorkerConfig, logger: Logger): Promise<RunningWorker> {
  const isolation = await detectIsolation(config.sandbox);
  setIsolation(isolation);
  const namespaces = isolation === 'bwrap' ? namespaceProfile() : 'none';
  logger.info(
    { isolation, namespaces, requested: config.sandbox },
    isolation === 'bwrap'
      ? `sandbox: bubblewrap (own PID, network and mount namespaces${namespaces === 'root' ? '; no user namespace, as root with all capabilities dropped' : ''})`
      : 'sandbox: plain processes (no namespaces; set SANDBOX=bwrap to require bubblewrap)',
  );

  await mkdir(config.baseWorkspace, { recursive: true });
  const ledger = new WorkspaceLedger(config.baseWorkspace, config.workerId);
  const swept = await ledger.sweep();
  if (swept.length) logger.info({ sessions: swept }, 'removed the workspaces of sessions lost with this worker\'s previous run');
  const basePython = await resolveBasePython(config.python);
  // One pool folder per worker: scaled replicas can share a BASE_WORKSPACE volume, and each clears its own pool at start.
  const pool = new VenvPool({ root: path.join(config.baseWorkspace, '.pool', config.workerId), size: config.venvPoolSize, python: config.python, onError: (err) => logger.warn({ err }, 'venv pool refill failed') });
  pool.start();

  const { services } = loadProtos();
  const client = new services.WorkerLifecycle(config.coordinatorAddr, grpc.credentials.createInsecure(), {
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
    'grpc.initial_reconnect_backoff_ms': 250,
    'grpc.max_reconnect_backoff_ms': config.reconnectMaxMs,
  });

  const uplink = new Uplink(logger.child({ component: 'uplink' }));
  let root: WorkerActor | undefined;
  const link = linkActors({
    client,
    token: config.workerToken,
    maxSessions: config.maxSessions,
    isolation,
    version: packageVersion(),
    uplink,
    logger,
    sessionCount: () => root?.getSnapshot().context.sessionIds.length ?? 0,
  });
  const effects = workerSessionActors({
    workerId: config.workerId,
    baseWorkspace: config.baseWorkspace,
    checkpointDir: config.checkpointDir,
    pool,
    basePython,
    report: (sessionId, taskId, update) => uplink.taskUpdate(sessionId, taskId, update),
    warmPython: config.warmPython,
    ledger,
    warmLog: (message, details) => logger.warn(details, message),
  });

  const machine = workerMachine.provide({
    actors: {
      link: coordinatorLinkMachine.provide({ actors: link }),
      session: sessionMachine.provide({
        actors: {
          task: taskMachine.provide({ actors: { executor: effects.executor }, actions: { emitUpdate: effects.emitUpdate } }),
          prepareWorkspace: effects.prepareWorkspace,
          releaseWorkspace: effects.releaseWorkspace,
        },
      }),
    },
  });
  root = createActor(machine, {
    input: {
      workerId: config.workerId,
      maxSessions: config.maxSessions,
      drainTimeoutMs: config.drainTimeoutMs,
      backoff: { initialMs: 250, maxMs: config.reconnectMaxMs, factor: 2 },
      linkIntensity: { maxRestarts: 5, windowMs: 60_000 },
    },
    inspect: inspectionLogger(logger.child({ component: 'inspect' })),
  });
  const actor = root;
  actor.on('coordinator.reply', (e) => uplink.reply(e.requestId, e.reply));
  actor.on('task.error', (e) => uplink.taskError(e.sessionId, e.taskId, e.error));
  actor.subscribe({ error: (err) => logger.fatal({ err }, 'worker supervisor failed') });
  actor.start();
  logger.info({ coordinator: config.coordinatorAddr, maxSessions: config.maxSessions, baseWorkspace: config.baseWorkspace, warmPython: config.warmPython }, 'worker started');

  let stopping: Promise<void> | undefined;
  return {
    root: actor,
    isolation,
    stop: () =>
      (stopping ??= (async () => {
        actor.send({ type: 'worker.shutdown' });
        await waitFor(actor, (s) => s.status !== 'active', { timeout: config.drainTimeoutMs + 5_000 }).catch(() => logger.warn('worker did not drain in time; stopping anyway'));
        actor.stop();
        await effects.stop();
        await pool.stop();
        client.close();
      })()),
  };
}
