import * as grpc from '@grpc/grpc-js';
import { loadProtos } from './protos.js';

/** Raw grpc-js clients of the coordinator's three services, sharing one channel. */
export interface CoordinatorClients {
  sessions: grpc.Client & Record<string, any>;
  tasks: grpc.Client & Record<string, any>;
  workers: grpc.Client & Record<string, any>;
  close(): void;
}

export function connectCoordinator(address: string, options: grpc.ChannelOptions = {}): CoordinatorClients {
  const { services } = loadProtos();
  const credentials = grpc.credentials.createInsecure();
  const sessions = new services.SessionManagement(address, credentials, options) as CoordinatorClients['sessions'];
  const channelOverride = sessions.getChannel();
  const tasks = new services.TaskExecution(address, credentials, { ...options, channelOverride }) as CoordinatorClients['tasks'];
  const workers = new services.WorkerLifecycle(address, credentials, { ...options, channelOverride }) as CoordinatorClients['workers'];
  return {
    sessions,
    tasks,
    workers,
    close: () => {
      sessions.close();
    },
  };
}

/** Promise form of a unary call on one of the raw clients. */
export function unary<Res = any>(client: grpc.Client & Record<string, any>, method: string, request: unknown, options: { deadlineMs?: number; metadata?: grpc.Metadata } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + (options.deadlineMs ?? 120_000));
    const fn = client[method];
    if (typeof fn !== 'function') return reject(new Error(`no such method ${method}`));
    fn.call(client, request, options.metadata ?? new grpc.Metadata(), { deadline }, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
  });
}
