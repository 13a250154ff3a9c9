import { createActor } from 'xstate';
import type { CoordinatorConfig } from '../config/coordinator.js';
import { startGrpcServer, stopGrpcServer } from '../grpc/server.js';
import { inspectionLogger } from '../log/inspection.js';
import type { Logger } from '../log/logger.js';
import { provideCoordinator } from './actors.js';
import { ActorCoordinatorPort } from './coordinator-port.js';
import type { CoordinatorPort } from './port.js';
import { WorkerLinks } from './worker-channel.js';
import { WorkerRegistry } from './worker-registry.js';

export interface RunningCoordinator {
  coordinator: CoordinatorPort;
  grpcPort: number;
  httpPort: number | undefined;
  stop(): Promise<void>;
}

/** The coordinator's composition root: the actor system, then the front doors over it. */
export async function startCoordinator(config: CoordinatorConfig, logger: Logger): Promise<RunningCoordinator> {
  const links = new WorkerLinks();
  const machine = provideCoordinator({ links, logger: logger.child({ component: 'actors' }), commandTimeoutMs: 60_000 });
  const root = createActor(machine, {
    input: { idleTimeoutMs: config.idleTimeoutMs, heartbeatTimeoutMs: config.heartbeatTimeoutMs, drainTimeoutMs: config.drainTimeoutMs },
    inspect: inspectionLogger(logger.child({ component: 'inspect' })),
  });
  // An errored root with no error observer would kill the process: report it instead.
  root.subscribe({ error: (err) => logger.fatal({ err }, 'coordinator supervisor failed') });
  root.start();

  const coordinator = new ActorCoordinatorPort(root, { createTimeoutMs: config.createTimeoutMs, destroyTimeoutMs: config.drainTimeoutMs + 60_000 });
  const registry = new WorkerRegistry(root, { heartbeatIntervalMs: config.heartbeatIntervalMs, heartbeatTimeoutMs: config.heartbeatTimeoutMs }, logger.child({ component: 'worker-lifecycle' }));
  const grpc = await startGrpcServer({ host: config.grpcHost, port: config.grpcPort, coordinator, registry, workerToken: config.workerToken, logger });
  logger.info({ port: grpc.port, host: config.grpcHost }, 'coordinator gRPC listening');

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
        grpc.health.setStatus('', 'NOT_SERVING');
        await http?.close().catch(() => {});
        links.closeAll('coordinator shutting down');
        await stopGrpcServer(grpc.server, 3_000);
        root.stop();
      })()),
  };
}
