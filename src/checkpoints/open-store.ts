import { invalidArgument } from '../domain/errors.js';
import { LocalCheckpointStore } from './local-store.js';
import { S3CheckpointStore } from './s3-store.js';

export interface CheckpointStoreConfig {
  dir: string;
  /** '' (the folder `dir`) or s3://bucket/prefix. */
  store: string;
  s3Endpoint: string;
  s3Region: string;
  maxBytes: number;
}

/** The store the configuration names; `open()` it before use (it checks the store answers). */
export function checkpointStoreFor(c: CheckpointStoreConfig): LocalCheckpointStore | S3CheckpointStore {
  if (c.store === '' || c.store.startsWith('file:')) return new LocalCheckpointStore({ dir: c.store ? new URL(c.store).pathname : c.dir, maxBytes: c.maxBytes });
  if (c.store.startsWith('s3://')) return new S3CheckpointStore({ url: c.store, ...(c.s3Endpoint ? { endpoint: c.s3Endpoint } : {}), ...(c.s3Region ? { region: c.s3Region } : {}), maxBytes: c.maxBytes });
  throw invalidArgument('CHECKPOINT_STORE', `${JSON.stringify(c.store)}: use s3://bucket/prefix, or leave it empty for CHECKPOINT_DIR`);
}
