import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import * as protoLoader from '@grpc/proto-loader';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import type { CoordinatorPort, WorkerLifecyclePort } from '../runtime/port.js';
import type { Logger } from '../log/logger.js';
import { loadProtos, protoLoaderOptions } from '../wire/protos.js';
import { preEncodedListing } from './session-listing.js';
import { sessionManagementHandlers } from './handlers/session-management.js';
import { taskExecutionHandlers } from './handlers/task-execution.js';
import { workerLifecycleHandlers } from './handlers/worker-lifecycle.js';

export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export interface GrpcServerOptions {
  host: string;
  port: number;
  coordinator: CoordinatorPort;
  registry: WorkerLifecyclePort;
  workerToken: string;
  logger: Logger;
}

/** The coordinator's gRPC front door: the three codegen.v1 services, health and reflection. */
export async function startGrpcServer(opts: GrpcServerOptions): Promise<{ server: grpc.Server; port: number; health: HealthImplementation }> {
  const { definition, services } = loadProtos();
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    // Dead worker connections are noticed within seconds, not at the next TCP timeout.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  });
  const listing = preEncodedListing(services.SessionManagement.service);
  server.addService(listing.service, sessionManagementHandlers(opts.coordinator, listing.encodeListing));
  server.addService(services.TaskExecution.service, taskExecutionHandlers(opts.coordinator));
  server.addService(services.WorkerLifecycle.service, workerLifecycleHandlers(opts.registry, { token: opts.workerToken, logger: opts.logger.child({ component: 'worker-lifecycle' }) }));
  const health = new HealthImplementation({
    '': 'SERVING',
    'codegen.v1.SessionManagement': 'SERVING',
    'codegen.v1.TaskExecution': 'SERVING',
    'codegen.v1.WorkerLifecycle': 'SERVING',
  });
  health.addToServer(server);
  // Reflection lists health too, so standard tools (grpcurl, grpc_health_probe) can describe it.
  const healthDefinition = protoLoader.loadSync(healthProtoPath, protoLoaderOptions);
  new ReflectionService({ ...definition, ...healthDefinition }).addToServer(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return { server, port, health };
}

export function stopGrpcServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
