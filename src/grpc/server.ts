import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import * as protoLoader from '@grpc/proto-loader';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { readFileSync } from 'node:fs';
import type { TlsFiles } from '../config/tls.js';
import type { WorkerLifecyclePort } from '../runtime/port.js';
import type { ClientAccess } from './client-access.js';
import type { CheckpointStore } from '../checkpoints/store.js';
import type { AuditLog } from '../log/audit.js';
import { componentLogger, type Logger } from '../log/logger.js';
import { isAddressInUse, PortInUseError } from '../runtime/port-in-use.js';
import { loadProtos, protoLoaderOptions } from '../wire/protos.js';
import { preEncodedListing } from './session-listing.js';
import { sessionManagementHandlers } from './handlers/session-management.js';
import { taskExecutionHandlers } from './handlers/task-execution.js';
import { workerLifecycleHandlers } from './handlers/worker-lifecycle.js';
import { MAX_MESSAGE_BYTES } from '../wire/protos.js';

export { MAX_MESSAGE_BYTES };

export interface GrpcServerOptions {
  host: string;
  port: number;
  /** Which port each client call uses (its credential names the tenant). */
  access: ClientAccess;
  registry: WorkerLifecyclePort;
  workerToken: string;
  /** PEM paths; no cert: plaintext. With clientCa, workers prove who they are with certificates. */
  tls: Pick<TlsFiles, 'cert' | 'key' | 'clientCa'>;
  logger: Logger;
  /** The checkpoint store workers send blobs to and fetch them from. */
  checkpoints: CheckpointStore;
  /** Worker registrations are recorded here. */
  audit?: AuditLog;
}

/**
 * A certificate provider that always has the same files (the process restarts to take new ones).
 * It answers a listener on the next tick: grpc-js registers its watcher only after adding the listener.
 */
function fixedProvider(ca: Buffer | null, identity: { certificate: Buffer; privateKey: Buffer } | null): grpc.experimental.CertificateProvider {
  return {
    addCaCertificateListener: (listener) => queueMicrotask(() => listener(ca ? { caCertificate: ca } : null)),
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener: (listener) => queueMicrotask(() => listener(identity)),
    removeIdentityCertificateListener: () => {},
  };
}

/**
 * TLS when given a certificate. Mutual TLS asks every peer for a certificate but does not require
 * one: workers must show one (WorkerLifecycle checks it), clients may use their bearer key alone.
 */
export function serverCredentials(tls: GrpcServerOptions['tls']): grpc.ServerCredentials {
  if (!tls.cert) return grpc.ServerCredentials.createInsecure();
  const identity = { certificate: readFileSync(tls.cert), privateKey: readFileSync(tls.key) };
  if (!tls.clientCa) return grpc.ServerCredentials.createSsl(null, [{ cert_chain: identity.certificate, private_key: identity.privateKey }], false);
  // One provider for both roles: grpc-js 1.14's factory and constructor name their two provider arguments in opposite orders.
  const provider = fixedProvider(readFileSync(tls.clientCa), identity);
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

/** The coordinator's gRPC front door: the three codegen.v1 services, health and reflection. */
export async function startGrpcServer(opts: GrpcServerOptions): Promise<{ server: grpc.Server; port: number; health: HealthImplementation }> {
  // grpc-js writes its own errors to stderr (a busy port is "No address added…" there, before the
  // error we raise about it): they go to the process's log instead, as warnings.
  const grpcLog = componentLogger(opts.logger, 'grpc-js');
  grpc.setLogger({ error: (...args: unknown[]) => grpcLog.warn(args.map(String).join(' ')) });
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
  server.addService(listing.service, sessionManagementHandlers(opts.access, listing.encodeListing));
  server.addService(services.TaskExecution.service, taskExecutionHandlers(opts.access));
  server.addService(services.WorkerLifecycle.service, workerLifecycleHandlers(opts.registry, { token: opts.workerToken, mutualTls: Boolean(opts.tls.clientCa), logger: componentLogger(opts.logger, 'worker-lifecycle'), checkpoints: opts.checkpoints, ...(opts.audit ? { audit: opts.audit } : {}) }));
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
    server.bindAsync(`${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`, serverCredentials(opts.tls), (err, p) => (err ? reject(isAddressInUse(err) ? new PortInUseError('GRPC_PORT', opts.host, opts.port) : err) : resolve(p)));
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
