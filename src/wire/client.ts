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

export function connectCoordinator(address: string, options: grpc.ChannelOptions = {}): CoordinatorClients {
  const { services } = loadProtos();
  const credentials = grpc.credentials.createInsecure();
  const sessions = new services.SessionManagement(address, credentials, options);
  const channelOverride = sessions.getChannel();
  const tasks = new services.TaskExecution(address, credentials, { ...options, channelOverride });
  const workers = new services.WorkerLifecycle(address, credentials, { ...options, channelOverride });
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
