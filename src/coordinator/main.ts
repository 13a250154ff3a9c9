import { createActor } from 'xstate';
import type { CoordinatorConfig } from '../config/coordinator.js';
import { ClientAuthenticator } from '../auth/authenticator.js';
import { ensureTokenFile } from '../auth/secrets.js';
import { clientAccess } from '../grpc/client-access.js';
import { startGrpcServer, stopGrpcServer } from '../grpc/server.js';
import { Tenancy } from '../runtime/tenancy.js';
import { processInspection } from '../inspection/attach.js';
import { openAuditLog, originToWho } from '../log/audit.js';
import { CoordinatorMetrics, statusLabelOf } from '../metrics/coordinator-metrics.js';
import { auditedPort } from '../runtime/audited-port.js';
import { liveRoutes } from '../live/http.js';
import type { KeptOutcome } from '../../machines/coordinator/task-proxy.machine.js';
import { componentLogger, type Logger } from '../log/logger.js';
import type { CoordinatorPort } from '../runtime/port.js';
import { ResultStore } from '../runtime/result-store.js';
import { provideCoordinator } from './actors.js';
import { checkpointStoreFor } from '../checkpoints/open-store.js';
import { CheckpointPolicies } from './checkpoint-policies.js';
import type { EvictedSession } from '../../machines/coordinator/coordinator.machine.js';

/** An evicted session as the store gives it back (written by this coordinator; checked anyway). */
const isEvictedSession = (v: unknown): v is EvictedSession => {
  const e = v as Partial<EvictedSession> | null;
  return Boolean(e && typeof e.description?.sessionId === 'string' && typeof e.restore?.checkpointId === 'string' && typeof e.restore?.manifestSha256 === 'string' && typeof e.fromWorker === 'string');
};
import { ActorCoordinatorPort } from './actor-port.js';
import { StreamTable } from './streams.js';
import { WorkerRegistry } from './worker-registry.js';

export interface RunningCoordinator {
  /** The actors' port, with no tenancy: every session (for the process itself and tests). */
  coordinator: CoordinatorPort;
  /** Tenant-scoped ports (what the front doors use). */
  tenancy: Tenancy;
  grpcPort: number;
  httpPort: number | undefined;
  /** Drains (new work refused, running tasks finish within the bound), then stops the front doors and the actors. */
  stop(): Promise<void>;
}

/** The coordinator's actor system and the ports over it (the front doors and the scale bench use these). */
export function coordinatorActors(config: CoordinatorConfig, logger: Logger) {
  const streams = new StreamTable();
  const results = new ResultStore();
  const audit = openAuditLog(config.auditLog);
  const inspection = processInspection({ logger, statelyUrl: config.inspectUrl, processName: 'coordinator' });
  // Made once the port exists (its gauges read the actors); tasks end only after the root starts.
  let metrics: CoordinatorMetrics | undefined;
  const onTaskEnded = (e: KeptOutcome) => {
    metrics?.taskEnded(e.tool, e.outcome);
    if (audit.enabled) {
      const o = e.outcome;
      audit.record('task', originToWho(e.origin), { sessionId: e.sessionId, taskId: e.taskId, tool: e.tool, status: statusLabelOf(o), durationMs: o.type === 'result' ? o.metadata.durationMs : 0, ...(o.type === 'result' ? { workerId: o.metadata.workerId } : {}) });
    }
  };
  const machine = provideCoordinator({ streams, results, logger: componentLogger(logger, 'actors'), onTaskEnded, live: inspection.live });
  const root = createActor(machine, {
    systemId: 'coordinator',
    input: {
      recoveryGraceMs: config.recoveryGraceMs,
      shard: { bucketSize: 100, createTimeoutMs: config.createTimeoutMs, destroyTimeoutMs: config.drainTimeoutMs + 60_000, heartbeatTimeoutMs: config.heartbeatTimeoutMs },
      supervision: { intensity: { maxRestarts: 5, windowMs: 60_000 }, backoff: { initialMs: 100, maxMs: 5_000, factor: 2 } },
      seed: Date.now() | 0,
    },
    inspect: inspection.hub.observe,
  });
  const checkpoints = checkpointStoreFor(config.checkpoints);
  const onSweep = (r: { removed: number; freedBytes: number } | Error) =>
    r instanceof Error ? logger.warn({ err: r }, 'checkpoint store sweep failed') : r.removed > 0 && logger.info(r, 'checkpoint store swept: blobs no checkpoint names removed');
  const coordinator = new ActorCoordinatorPort(root, { idleTimeoutMs: config.idleTimeoutMs, settleBoundMs: config.createTimeoutMs + config.drainTimeoutMs + 70_000, results, checkpoints, onSweep, onCheckpointAdded: (bytes) => metrics?.checkpointAdded(bytes) });
  metrics = new CoordinatorMetrics({ listSessions: () => coordinator.listSessions(), listWorkers: () => coordinator.listWorkers(), queuedTasks: () => coordinator.queuedTasks() });
  const registry = new WorkerRegistry(root, streams, { heartbeatIntervalMs: config.heartbeatIntervalMs, heartbeatTimeoutMs: config.heartbeatTimeoutMs }, (workerId, figures) => metrics.workerFigures(workerId, figures));
  return { root, streams, results, coordinator, registry, checkpoints, inspection, metrics, audit };
}

/**
 * The client and worker tokens: configured, else read from their files in the state folder, made
 * there (mode 0600) at first start. The coordinator never runs without credentials.
 */
function credentialsAtStart(config: CoordinatorConfig, logger: Logger): { clientToken: string; workerToken: string } {
  const resolve = (configured: string, file: string, what: string, variable: string): string => {
    if (configured) return configured;
    const { token, generated } = ensureTokenFile(file);
    logger.info({ file, generated }, generated ? `${what} made at first start and written to ${file} (mode 0600); set ${variable} to choose your own` : `${what} read from ${file}`);
    return token;
  };
  return {
    clientToken: resolve(config.clientToken, config.clientTokenFile, 'client token (default tenant, admin)', 'CLIENT_TOKEN'),
    workerToken: resolve(config.workerToken, config.workerTokenFile, 'worker token', 'WORKER_TOKEN'),
  };
}

const tlsMode = (config: CoordinatorConfig): string => (config.tls.cert ? (config.tls.clientCa ? 'mutual (workers present certificates)' : 'server') : 'off');

/** The coordinator's composition root: the actor system, then the front doors over it. */
export async function startCoordinator(config: CoordinatorConfig, logger: Logger): Promise<RunningCoordinator> {
  const { root, streams, coordinator, registry, checkpoints, inspection, metrics, audit } = coordinatorActors(config, logger);
  await checkpoints.open();
  // Evicted sessions live in the store between coordinator runs; the root keeps them while it runs.
  // One queue per session: a keep and the unkeep right after it (a recovery) reach the store in that order.
  const evictedWrites = new Map<string, Promise<void>>();
  const inOrder = (sessionId: string, write: () => Promise<void>) => {
    const next = (evictedWrites.get(sessionId) ?? Promise.resolve()).then(write).catch((err: unknown) => logger.warn({ err, sessionId }, 'could not update an evicted session in the checkpoint store'));
    evictedWrites.set(sessionId, next);
    void next.then(() => {
      if (evictedWrites.get(sessionId) === next) evictedWrites.delete(sessionId);
    });
  };
  root.on('session.kept', (e) => inOrder(e.session.description.sessionId, () => checkpoints.putEvicted(e.session.description.sessionId, e.session)));
  root.on('session.unkept', (e) => inOrder(e.sessionId, () => checkpoints.deleteEvicted(e.sessionId)));
  const evicted = (await checkpoints.listEvicted()).filter(isEvictedSession);
  for (const session of evicted) root.send({ type: 'session.keep', session });
  logger.info({ store: checkpoints.url, maxBytes: config.checkpoints.maxBytes, evictedSessions: evicted.length }, 'checkpoint store ready');
  // An errored root with no error observer would kill the process: report it instead.
  root.subscribe({ error: (err) => logger.fatal({ err }, 'coordinator supervisor failed') });
  root.on('coordinator.warning', (e) => logger.warn(e.details, e.message));
  root.start();

  const secrets = credentialsAtStart(config, logger);
  const auth = new ClientAuthenticator({ token: secrets.clientToken, keysFile: config.clientKeysFile, logger: componentLogger(logger, 'auth') });
  const tenancy = new Tenancy(coordinator, config.quotas);
  const access = clientAccess(auth, tenancy, audit);
  const grpc = await startGrpcServer({ host: config.grpcHost, port: config.grpcPort, access, registry, workerToken: secrets.workerToken, tls: config.tls, logger, checkpoints, audit });
  logger.info({ port: grpc.port, host: config.grpcHost, tls: tlsMode(config), recoveryGraceMs: config.recoveryGraceMs, quotas: config.quotas, clientKeys: auth.describe() }, 'coordinator gRPC listening');

  const policies = new CheckpointPolicies(coordinator, {
    onIdle: config.checkpoints.onIdle,
    evictAfterMs: config.checkpoints.evictAfterMs,
    recoveryMs: config.checkpoints.recoveryMs,
    retentionMs: config.checkpoints.retentionMs,
    intervalMs: 2_000,
    retentionIntervalMs: 3_600_000,
    logger: componentLogger(logger, 'checkpoint-policies'),
  });
  policies.start();

  let http: { port: number; close(): Promise<void> } | undefined;
  let resourceWatch: { close(): void } | undefined;
  if (config.http.enabled) {
    const { startMcpHttp } = await import('../mcp/http.js');
    const { ResourceWatch } = await import('../mcp/resource-watch.js');
    // One watch for every MCP connection: a file one of them changes is news to the others watching it.
    const watch = new ResourceWatch({ logger: componentLogger(logger, 'mcp-resources') });
    resourceWatch = watch;
    http = await startMcpHttp({
      coordinator,
      logger,
      resourceWatch: watch,
      host: config.http.host,
      port: config.http.port,
      access: { authenticate: (header) => auth.authenticate(header), portFor: (principal, peer) => auditedPort(tenancy.portFor(principal), audit, { tenant: principal.tenant, credential: principal.credential, peer: peer ?? '' }) },
      metrics,
      live: liveRoutes(inspection.live),
      tls: config.tls.cert ? { cert: config.tls.cert, key: config.tls.key } : undefined,
      maxSessions: config.http.maxSessions,
      maxSessionsPerTenant: config.http.maxSessionsPerTenant,
      readiness: async () => {
        const snap = root.getSnapshot();
        if (snap.matches('draining')) return { ready: false, reason: 'the coordinator is shutting down' };
        const online = (await coordinator.listWorkers()).filter((w) => w.state === 'online').length;
        if (online === 0) return { ready: false, reason: 'no worker is online' };
        // Recovering still takes new sessions and tasks; only ids not reported yet answer UNAVAILABLE.
        const recovering = snap.matches('recovering') ? "; recovering: sessions not reported again yet answer UNAVAILABLE" : '';
        return { ready: true, reason: `${online} worker(s) online${recovering}` };
      },
      sessionIdleMs: config.http.sessionIdleMs,
      allowedHosts: config.http.allowedHosts.length ? config.http.allowedHosts : undefined,
      allowedOrigins: config.http.allowedOrigins.length ? config.http.allowedOrigins : undefined,
      waitLimitMs: config.http.waitLimitMs,
      legacyToolNames: config.http.legacyToolNames,
    });
    logger.info({ port: http.port, host: config.http.host, path: '/mcp', tls: Boolean(config.tls.cert) }, 'coordinator MCP HTTP listening');
  }

  let stopping: Promise<void> | undefined;
  return {
    coordinator,
    tenancy,
    grpcPort: grpc.port,
    httpPort: http?.port,
    stop: () =>
      (stopping ??= (async () => {
        // Drain: new work is refused with UNAVAILABLE while running tasks finish, within the bound.
        grpc.health.setStatus('', 'NOT_SERVING');
        policies.stop();
        root.send({ type: 'coordinator.drain' });
        const deadline = Date.now() + config.drainTimeoutMs;
        while (Date.now() < deadline && (await coordinator.listSessions()).some((s) => s.activeTasks > 0)) await new Promise((r) => setTimeout(r, 100));
        // Then the front doors in reverse start order, then the actors.
        await http?.close().catch(() => {});
        resourceWatch?.close();
        await stopGrpcServer(grpc.server, 3_000);
        streams.closeAll();
        root.stop();
        inspection.stop();
        audit.close();
      })()),
  };
}
