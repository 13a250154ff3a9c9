import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createActor, waitFor } from 'xstate';
import { packageVersion } from '../config/package-info.js';
import type { WorkerConfig } from '../config/worker.js';
import type { SessionDescription, SessionLimitsView } from '../domain/sessions.js';
import { processInspection } from '../inspection/attach.js';
import { forwardLiveRecords } from '../live/forwarder.js';
import { componentLogger, type Logger } from '../log/logger.js';
import { namespaceProfile } from '../sandbox/isolation.js';
import { detectEnforcement, type SessionLimits } from '../sandbox/enforcement.js';
import { detectIsolation, setIsolation } from '../sandbox/launch.js';
import { readTokenFile } from '../auth/secrets.js';
import { ConfigError } from '../config/load.js';
import { channelCredentials } from '../wire/client.js';
import { loadProtos } from '../wire/protos.js';
import { coordinatorLinkMachine } from '../../machines/worker/coordinator-link.machine.js';
import { sessionMachine } from '../../machines/worker/session.machine.js';
import { taskMachine } from '../../machines/worker/task.machine.js';
import { workerMachine, type WorkerActor } from '../../machines/worker/worker.machine.js';
import { supervisorMachine } from '../../machines/supervisor.machine.js';
import { linkActors } from './link-actors.js';
import { venvPoolActor } from './pool-actor.js';
import { fromStored, limitsFor, workerSessionActors } from './session-actors.js';
import { SessionLocks } from './session-locks.js';
import { SessionStore } from './session-store.js';
import { Uplink } from './uplink.js';
import { grpcBlobTransport } from './blob-transport.js';
import { UsageMeter } from './usage.js';
import { detectDiskQuota } from './disk-quota.js';
import { VenvPool, resolveBasePython } from './venv-pool.js';
import { MAX_MESSAGE_BYTES } from '../wire/protos.js';

export interface RunningWorker {
  root: WorkerActor;
  isolation: string;
  /** Drains sessions, deregisters, stops; resolves within the drain bound plus a few seconds. */
  stop(): Promise<void>;
  /** Test hook (CODEGEN_TEST_FAULTS): crash every session actor. */
  injectFault(): void;
  /** Resolves with the exit status the worker should end with once its root has stopped (1: escalated). */
  finished: Promise<number>;
}

/**
 * The sessions this worker adopts at start: every description on disk whose lock it can take
 * (a lock taken means its owner process is gone). Locks of sessions with no description are
 * leftovers of a create or destroy that died halfway: removed, as SessionStore documents.
 */
async function adoptFromDisk(store: SessionStore, locks: SessionLocks, logger: Logger): Promise<SessionDescription[]> {
  const listing = await store.list();
  for (const p of listing.problems) logger.warn(p, 'a file in the sessions folder is not a session description; left as it is');
  const adopted: SessionDescription[] = [];
  let held = 0;
  for (const found of listing.sessions) {
    if (!(await locks.tryLock(found.sessionId))) {
      held += 1;
      continue;
    }
    const now = await store.read(found.sessionId).catch(() => undefined);
    if (now) adopted.push(fromStored(now));
    else await locks.unlock(found.sessionId, { removeFile: true });
  }
  for (const id of listing.strayLocks) {
    if (!(await locks.tryLock(id))) continue;
    if (await store.read(id).catch(() => undefined)) await locks.unlock(id);
    else await locks.unlock(id, { removeFile: true });
  }
  if (adopted.length || held) logger.info({ adopted: adopted.map((d) => d.sessionId), heldByOthers: held }, 'adopted the sessions found on disk');
  return adopted;
}

/** The worker's composition root: sandbox, venv pool, the link and the session supervisor. */
/** WORKER_TOKEN, else the token file a coordinator on this host made (mutual TLS needs neither: the certificate is the credential). */
function workerTokenOf(config: WorkerConfig): string {
  if (config.workerToken) return config.workerToken;
  const fromFile = readTokenFile(config.workerTokenFile);
  if (fromFile) return fromFile;
  if (config.tls.cert) return '';
  throw new ConfigError([`WORKER_TOKEN: not set, and no token file at ${config.workerTokenFile}; set WORKER_TOKEN to the coordinator's worker token (the coordinator writes it to worker-token in its state folder, CODEGEN_STATE_DIR), or WORKER_TOKEN_FILE to a copy of that file`]);
}

export async function startWorker(config: WorkerConfig, logger: Logger): Promise<RunningWorker> {
  // Credentials first: a worker that cannot register must fail before it starts anything.
  const workerToken = workerTokenOf(config);
  const basePython = await resolveBasePython(config.python);
  // What the sandbox enforces here (before the first sandboxed launch: it fixes the mounts and the cgroups).
  const enforcement = detectEnforcement({ pythons: [basePython] });
  const isolation = await detectIsolation(config.sandbox);
  setIsolation(isolation);
  const namespaces = isolation === 'bwrap' ? namespaceProfile() : 'none';
  logger.info(
    { isolation, namespaces, requested: config.sandbox },
    isolation === 'bwrap'
      ? `sandbox: bubblewrap (own PID, network and mount namespaces${namespaces === 'root' ? '; no user namespace, as root with all capabilities dropped' : ''})`
      : 'sandbox: plain processes (no namespaces; set SANDBOX=bwrap to require bubblewrap)',
  );

  logger.info(
    { limits: config.limits, memory: enforcement.memory, processes: enforcement.processes, cpuTime: enforcement.cpuTime, seccomp: enforcement.seccomp, mounts: enforcement.mounts },
    `what the sandbox allows and enforces:\n${enforcement.describe()}`,
  );
  await mkdir(config.baseWorkspace, { recursive: true });
  const diskQuota = await detectDiskQuota(config.baseWorkspace, config.maxDiskPerSession);
  logger.info({ diskQuota: { mode: diskQuota.mode, bytes: diskQuota.bytes, reason: diskQuota.reason } }, diskQuota.mode === 'loop' ? `disk quota: ${diskQuota.bytes} bytes per session, ${diskQuota.reason}` : `disk quota: none (${diskQuota.reason})`);
  const store = new SessionStore(config.baseWorkspace);
  let onLocksLost: (reason: string) => void = () => {};
  const locks = new SessionLocks({ dir: store.dir, python: basePython, onLost: (reason) => onLocksLost(reason) });
  await locks.start();
  const adopt = await adoptFromDisk(store, locks, logger);
  // One pool folder per worker: scaled replicas can share a BASE_WORKSPACE volume, and each clears its own pool at start.
  const pool = new VenvPool({ root: path.join(config.baseWorkspace, '.pool', config.workerId), size: config.venvPoolSize, python: config.python, onError: (err) => logger.warn({ err }, 'venv pool refill failed') });

  const { services } = loadProtos();
  const tls = channelCredentials(config.tls.ca ? { ca: config.tls.ca, cert: config.tls.cert, key: config.tls.key, serverName: config.tls.serverName } : undefined);
  const client = new services.WorkerLifecycle(config.coordinatorAddr, tls.credentials, {
    ...tls.options,
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    // A larger HTTP/2 window than the 64 KB default: checkpoint blobs come down several times faster.
    'grpc-node.flow_control_window': 16 * 1024 * 1024,
    'grpc.initial_reconnect_backoff_ms': 250,
    'grpc.max_reconnect_backoff_ms': config.reconnectMaxMs,
  });

  const uplink = new Uplink(componentLogger(logger, 'uplink'));
  let root: WorkerActor | undefined;
  const instanceId = `inst-${randomBytes(8).toString('hex')}`;
  const link = linkActors({
    client,
    instanceId,
    token: workerToken,
    maxSessions: config.maxSessions,
    isolation,
    version: packageVersion(),
    uplink,
    logger,
    sessionCount: () => Object.keys(root?.getSnapshot().context.held ?? {}).length,
  });
  const effects = workerSessionActors({
    workerId: config.workerId,
    baseWorkspace: config.baseWorkspace,
    checkpointDir: config.checkpointDir,
    checkpoints: grpcBlobTransport(client, workerToken),
    secretDirs: [config.stateDir],
    sessionLimits: config.limits,
    diskQuota,
    pool,
    store,
    locks,
    basePython,
    report: (sessionId, taskId, update) => uplink.taskUpdate(sessionId, taskId, update),
    warmPython: config.warmPython,
    warmLog: (message, details) => logger.warn(details, message),
    interpreterLog: (message, details) => logger.warn(details, message),
    saveLog: (err, sessionId) => logger.warn({ err, sessionId }, 'could not save the session description; retried at the next change'),
  });

  const session = sessionMachine.provide({
    actors: {
      task: taskMachine.provide({ actors: { executor: effects.executor }, actions: { emitUpdate: effects.emitUpdate } }),
      prepareWorkspace: effects.prepareWorkspace,
      releaseWorkspace: effects.releaseWorkspace,
      persist: effects.persist,
      ...(effects.warmInterpreter ? { warmSupervisor: supervisorMachine.provide({ actors: { child: effects.warmInterpreter } }) } : {}),
      interpreterSupervisor: supervisorMachine.provide({ actors: { child: effects.interpreter } }),
    },
  });
  const machine = workerMachine.provide({
    actors: {
      sessionSupervisor: supervisorMachine.provide({ actors: { child: session } }),
      discardSession: effects.discardSession,
      linkSupervisor: supervisorMachine.provide({ actors: { child: coordinatorLinkMachine.provide({ actors: link }) } }),
      poolSupervisor: supervisorMachine.provide({ actors: { child: venvPoolActor(pool) } }),
    },
  });
  const backoff = { initialMs: 250, maxMs: config.reconnectMaxMs, factor: 2 };
  const inspection = processInspection({ logger, statelyUrl: config.inspectUrl, processName: config.workerId, forwarding: true });
  root = createActor(machine, {
    systemId: 'worker',
    input: {
      workerId: config.workerId,
      instanceId,
      maxSessions: config.maxSessions,
      drainTimeoutMs: config.drainTimeoutMs,
      adopt,
      link: { intensity: { maxRestarts: 5, windowMs: 60_000 }, backoff, shutdownTimeoutMs: 5_000 },
      sessions: { intensity: { maxRestarts: 3, windowMs: 60_000 }, backoff: { initialMs: 100, maxMs: 5_000, factor: 2 } },
      pool: { intensity: { maxRestarts: 5, windowMs: 60_000 }, backoff: { initialMs: 1_000, maxMs: 30_000, factor: 2 } },
      ...(config.warmPython ? { warm: { intensity: { maxRestarts: 3, windowMs: 60_000 }, backoff: { initialMs: 500, maxMs: 10_000, factor: 2 } } } : {}),
      interpreter: { intensity: { maxRestarts: 5, windowMs: 60_000 }, backoff: { initialMs: 250, maxMs: 10_000, factor: 2 } },
      seed: randomBytes(4).readInt32LE(0),
      faults: config.testFaults,
    },
    inspect: inspection.hub.observe,
  });
  const actor = root;
  actor.on('coordinator.reply', (e) => uplink.reply(e.reply));
  /** What is really enforced on a session here: a limit this host cannot enforce shows 0. */
  const enforcedLimits = (l: Partial<SessionLimits>): SessionLimitsView => {
    const on = (m: { mode: string }, v: number | undefined) => (m.mode === 'none' ? 0 : (v ?? 0));
    return {
      memoryBytes: on(enforcement.memory, l.memoryBytes),
      maxProcesses: on(enforcement.processes, l.maxProcesses),
      cpuSecondsPerTask: on(enforcement.cpuTime, l.cpuSecondsPerTask),
      cpuMillicores: on(enforcement.cpuShare, l.cpuMillicores),
      diskBytes: diskQuota.mode === 'loop' ? diskQuota.bytes : 0,
    };
  };
  const usage = new UsageMeter(undefined, (id) => diskQuota.usedBytes(path.join(config.baseWorkspace, id)));
  actor.on('session.report', (e) => {
    const id = e.report.description.sessionId;
    if (e.report.gone) usage.forget(id);
    if (e.report.gone) {
      uplink.report(e.report);
      return;
    }
    const now = usage.usageOf(id);
    uplink.report({ ...e.report, ...(now ? { usage: now } : {}), limits: enforcedLimits(limitsFor(config.limits, e.report.description.config.limits)) });
  });
  actor.on('task.error', (e) => uplink.taskError(e.sessionId, e.taskId, e.error));
  actor.on('worker.warning', (e) => logger.warn(e.details, e.message));
  actor.on('worker.fatal', (e) => logger.error(e.message));
  actor.subscribe({ error: (err) => logger.fatal({ err }, 'worker supervisor failed') });
  const finished = new Promise<number>((resolve) => actor.subscribe({ complete: () => resolve(actor.getSnapshot().context.escalation ? 1 : 0), error: () => resolve(1) }));
  // Without its locks another worker could adopt our sessions: stop serving them, and exit for our supervisor to restart us.
  onLocksLost = (reason) => {
    logger.error({ reason }, 'the session lock helper died: this worker no longer holds its sessions; shutting down');
    actor.send({ type: 'worker.shutdown', atMs: Date.now() });
  };
  actor.start();
  const stopForwarding = forwardLiveRecords(inspection.live, uplink);
  logger.info({ coordinator: config.coordinatorAddr, maxSessions: config.maxSessions, baseWorkspace: config.baseWorkspace, warmPython: config.warmPython, adopted: adopt.length }, 'worker started');

  let stopping: Promise<void> | undefined;
  return {
    root: actor,
    isolation,
    finished,
    injectFault: () => actor.send({ type: 'worker.fault' }),
    stop: () =>
      (stopping ??= (async () => {
        // A root that already stopped on its own (an escalation, a refused credential) takes no more events.
        if (actor.getSnapshot().status === 'active') actor.send({ type: 'worker.shutdown', atMs: Date.now() });
        await waitFor(actor, (s) => s.status !== 'active', { timeout: config.drainTimeoutMs + 10_000 }).catch(() => logger.warn('worker did not drain in time; stopping anyway'));
        actor.stop();
        await effects.stop();
        await pool.stop();
        await locks.stop();
        client.close();
        inspection.stop();
        stopForwarding();
      })()),
  };
}
