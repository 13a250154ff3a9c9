import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { SessionManagementClient, TaskExecutionClient, WorkerLifecycleClient } from './messages.js';
import { loadProtos } from './protos.js';

/** Raw grpc-js clients of the coordinator's three services, sharing one channel. */
export interface CoordinatorClients {
  sessions: SessionManagementClient;
  tasks: TaskExecutionClient;
  workers: WorkerLifecycleClient;
  close(): void;
}

/** How a client reaches the coordinator: TLS files (PEM paths; no ca = plaintext) and the bearer credential. */
export interface ConnectOptions {
  /** Sent as `authorization: Bearer <token>` on every call ('' or absent: none). */
  token?: string;
  /** More metadata on every call (a worker's token, for tools that act as one). */
  metadata?: Record<string, string>;
  tls?: { ca: string; cert?: string; key?: string; serverName?: string };
}

/** Channel credentials (TLS when a CA is given) and the options that go with them. */
export function channelCredentials(tls: ConnectOptions['tls']): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  if (!tls?.ca) return { credentials: grpc.credentials.createInsecure(), options: {} };
  const credentials = grpc.credentials.createSsl(readFileSync(tls.ca), tls.key ? readFileSync(tls.key) : null, tls.cert ? readFileSync(tls.cert) : null);
  return { credentials, options: tls.serverName ? { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName } : {} };
}

/** A client interceptor that adds these entries to every call's metadata. */
export function metadataInterceptor(entries: Record<string, string>): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        for (const [k, v] of Object.entries(entries)) if (!metadata.get(k).length) metadata.set(k, v);
        next(metadata, listener);
      },
    });
}

export function connectCoordinator(address: string, options: grpc.ChannelOptions = {}, connect: ConnectOptions = {}): CoordinatorClients {
  const { services } = loadProtos();
  const { credentials, options: tlsOptions } = channelCredentials(connect.tls);
  const entries = { ...(connect.metadata ?? {}), ...(connect.token ? { authorization: `Bearer ${connect.token}` } : {}) };
  const base: grpc.ClientOptions = { ...tlsOptions, ...options, ...(Object.keys(entries).length ? { interceptors: [metadataInterceptor(entries)] } : {}) };
  const sessions = new services.SessionManagement(address, credentials, base);
  const channelOverride = sessions.getChannel();
  const tasks = new services.TaskExecution(address, credentials, { ...base, channelOverride });
  const workers = new services.WorkerLifecycle(address, credentials, { ...base, channelOverride });
  return {
    sessions,
    tasks,
    workers,
    close: () => {
      sessions.close();
    },
  };
}

/** A generated unary method's request and response, read off its last overload `(argument, callback)`; never for streaming methods and the rest. */
type UnaryTypes<F> = F extends (...args: infer P) => grpc.ClientUnaryCall ? (P extends [infer Req, grpc.requestCallback<infer Res>] ? { req: Req; res: Res } : never) : never;

/** The names of a client's unary methods, and their message types. */
export type UnaryMethod<C> = { [K in keyof C & string]: [UnaryTypes<C[K]>] extends [never] ? never : K }[keyof C & string];
export type RequestOf<C, M extends keyof C> = UnaryTypes<C[M]>['req'];
export type ResponseOf<C, M extends keyof C> = UnaryTypes<C[M]>['res'];

/** Promise form of a unary call on one of the raw clients. */
export function unary<C extends grpc.Client, M extends UnaryMethod<C>>(
  client: C,
  method: M,
  request: RequestOf<C, M>,
  options: { deadlineMs?: number; metadata?: grpc.Metadata } = {},
): Promise<ResponseOf<C, M>> {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + (options.deadlineMs ?? 120_000));
    const fn: unknown = client[method];
    if (typeof fn !== 'function') return reject(new Error(`no such method ${method}`));
    // The full overload (request, metadata, options, callback) that every generated unary method has.
    const call = fn as (argument: RequestOf<C, M>, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<ResponseOf<C, M>>) => grpc.ClientUnaryCall;
    call.call(client, request, options.metadata ?? new grpc.Metadata(), { deadline }, (err, res) => (err ? reject(err) : resolve(res as ResponseOf<C, M>)));
  });
}
