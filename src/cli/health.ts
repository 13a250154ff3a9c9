import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import { channelCredentials, type ConnectOptions } from '../wire/client.js';

/** Asks grpc.health.v1 at `address`; resolves with the serving status name. */
export function checkHealth(address: string, service = '', timeoutMs = 3_000, tls?: ConnectOptions['tls']): Promise<string> {
  const def = protoLoader.loadSync(protoPath, { keepCase: true, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as any;
  const { credentials, options } = channelCredentials(tls);
  const client = new pkg.grpc.health.v1.Health(address, credentials, options);
  return new Promise((resolve, reject) => {
    client.Check({ service }, { deadline: new Date(Date.now() + timeoutMs) }, (err: grpc.ServiceError | null, res: { status: string }) => {
      client.close();
      if (err) reject(new Error(`${address}: ${err.details || err.message}`));
      else resolve(res.status);
    });
  });
}
