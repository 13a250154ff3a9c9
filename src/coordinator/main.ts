import { createActor } from 'xstate';
import type { CoordinatorConfig } from '../config/coordinator.js';
import { startGrpcServer, stopGrpcServer } from '../grpc/server.js';
import { inspectionLogger } from '../log/inspection.js';
import type { Logger } from '../log/logger.js';
import type { CoordinatorPort } from '../runtime/port.js';
import { ResultStore } from '../runtime/result-store.js';
import { provideCoordinator } from './actors.js';
import { ActorCoordinatorPort } from './actor-port.js';
import { StreamTable } from './streams.js';
import { WorkerRegistry } from './worker-registry.js';

export interface RunningCoordinator {
  coordinator: CoordinatorPort;
  grpcPort: number;
  httpPort: number | undefined;
  /** Drains (new work refused, running tasks finish within the bound), then stops the front doors and the actors. */
  stop(): Promise<void>;
}

/** The coordinator's actor system and the ports over it (the front doors and the scale bench use these). */
export function coordinatorActors(config: CoordinatorConfig, logger: Logger) {
  const streams = new StreamTable();
  const results = new ResultStore();
  const machine = provideCoordinator({ streams, results, logger: logger.child({ component: 'actors' }) });
  const root = createActor(machine, {
    systemId: 'coordinator',
    input: {
      recoveryGraceMs: config.recoveryGraceMs,
      shard: { bucketSize: 100, createTimeoutMs: config.createTimeoutMs, destroyTimeoutMs: config.drainTimeoutMs + 60_000, heartbeatTimeoutMs: config.heartbeatTimeoutMs },
      supervision: { intensity: { maxRestarts: 5, windowMs: 60_000 }, backoff: { initialMs: 100, maxMs: 5_000, factor: 2 } },
      seed: Date.now() | 0,
    },
    inspect: inspectionLogger(logger.child({ component: 'inspect' })),
  });
  const coordinator = new ActorCoordinatorPort(root, { idleTimeoutMs: config.idleTimeoutMs, settleBoundMs: config.createTimeoutMs + config.drainTimeoutMs + 70_000, results });
  const registry = new WorkerRegistry(root, streams, { heartbeatIntervalMs: config.heartbeatIntervalMs, heartbeatTimeoutMs: config.heartbeatTimeoutMs });
  return { root, streams, results, coordinator, registry };
}

/** The coordinator's composition root: the actor system, then the front doors over it. */
export async function startCoordinator(config: CoordinatorConfig, logger: Logger): Promise<RunningCoordinator> {
  const { root, streams, coordinator, registry } = coordinatorActors(config, logger);
  // An errored root with no error observer would kill the process: report it instead.
  root.subscribe({ error: (err) => logger.fatal({ err }, 'coordinator supervisor failed') });
  root.on('coordinator.warning', (e) => logger.warn(e.details, e.message));
  root.start();

  const grpc = await startGrpcServer({ host: config.grpcHost, port: config.grpcPort, coordinator, registry, workerToken: config.workerToken, logger });
  logger.info({ port: grpc.port, host: config.grpcHost, recoveryGraceMs: config.recoveryGraceMs }, 'coordinator gRPC listening');

  let http: { port: number; close(): Promise<void> } | undefined;
  if (config.http.enabled) {
    const { startMcpHttp } = await import('../mcp/http.js');
    http = await startMcpHttp({
      coordinator,
      logger: logger.child({ component: 'mcp-http' }),
      host: config.http.host,
      port: config.http.port,
      token: config.http.token || undefined,
      allowedHosts: config.http.allowedHosts.length ? config.http.allowedHosts : undefined,
      allowedOrigins: config.http.allowedOrigins.length ? config.http.allowedOrigins : undefined,
      waitLimitMs: config.http.waitLimitMs,
      legacyToolNames: config.http.legacyToolNames,
    });
    logger.info({ port: http.port, host: config.http.host, path: '/mcp' }, 'coordinator MCP HTTP listening');
  }

  let stopping: Promise<void> | undefined;
  return {
    coordinator,
    grpcPort: grpc.port,
    httpPort: http?.port,
    stop: () =>
      (stopping ??= (async () => {
        // Drain: new work is refused with UNAVAILABLE while running tasks finish, within the bound.
        grpc.health.setStatus('', 'NOT_SERVING');
        root.send({ type: 'coordinator.drain' });
        const deadline = Date.now() + config.drainTimeoutMs;
        while (Date.now() < deadline && (await coordinator.listSessions()).some((s) => s.activeTasks > 0)) await new Promise((r) => setTimeout(r, 100));
        // Then the front doors in reverse start order, then the actors.
        await http?.close().catch(() => {});
        await stopGrpcServer(grpc.server, 3_000);
        streams.closeAll();
        root.stop();
      })()),
  };
}
