import * as grpc from '@grpc/grpc-js';
import type { BlobTransport } from '../checkpoints/snapshot.js';
import { BLOB_CHUNK_BYTES, drainOrClose } from '../grpc/handlers/blob-store.js';
import { unary } from '../wire/client.js';
import type { BlobChunk, BlobChunk__Output, PutBlobResponse__Output, WorkerLifecycleClient } from '../wire/messages.js';
import { WORKER_TOKEN_METADATA } from '../wire/metadata.js';
import { remoteError } from '../wire/status.js';

/**
 * The checkpoint store as a worker reaches it: the coordinator's blob calls on the same channel
 * as its registration, in chunks of at most BLOB_CHUNK_BYTES both ways.
 */
export function grpcBlobTransport(client: WorkerLifecycleClient, token: string): BlobTransport {
  const md = () => {
    const m = new grpc.Metadata();
    if (token) m.set(WORKER_TOKEN_METADATA, token);
    return m;
  };
  const peer = 'the coordinator (checkpoint store)';
  return {
    async missing(sha256s) {
      const out: string[] = [];
      for (let at = 0; at < sha256s.length; at += 5_000) {
        const part = sha256s.slice(at, at + 5_000);
        try {
          const res = await unary(client, 'MissingBlobs', { sha256: part }, { deadlineMs: 60_000, metadata: md() });
          out.push(...(res.sha256 ?? []).map(String));
        } catch (err) {
          throw remoteError(err, peer);
        }
      }
      return out;
    },

    put(sha256, sizeBytes, open) {
      return new Promise((resolve, reject) => {
        let answered = false;
        let wake = () => {};
        const call = client.PutBlob(md(), (err: grpc.ServiceError | null, res?: PutBlobResponse__Output) => {
          answered = true;
          wake();
          if (err) reject(remoteError(err, peer));
          else resolve({ added: Boolean(res?.added) });
        });
        void (async () => {
          call.write({ sha256, size_bytes: sizeBytes } satisfies BlobChunk);
          for await (const piece of open()) {
            for (let at = 0; at < piece.length; at += BLOB_CHUNK_BYTES) {
              // An early answer (a refusal) ends the upload: nothing waits for a drain that will not come.
              if (answered) return;
              if (!call.write({ data: piece.subarray(at, at + BLOB_CHUNK_BYTES) } satisfies BlobChunk)) {
                await Promise.race([drainOrClose(call), new Promise<void>((r) => (wake = r))]);
              }
            }
          }
          call.end();
        })().catch((err) => {
          call.cancel();
          reject(err);
        });
      });
    },

    async get(sha256) {
      const call = client.GetBlob({ sha256 }, md());
      async function* chunks(): AsyncIterable<Buffer> {
        try {
          for await (const c of call as AsyncIterable<BlobChunk__Output>) yield Buffer.from(c.data ?? []);
        } catch (err) {
          throw remoteError(err, peer);
        } finally {
          call.cancel();
        }
      }
      // The first message (or the error: NOT_FOUND) comes before the caller writes anything.
      const it = chunks()[Symbol.asyncIterator]();
      const first = await it.next();
      return (async function* () {
        // A reader that stops early (abort, a bad blob) ends the call too: finally returns the inner iterator.
        try {
          if (!first.done) yield first.value;
          for (;;) {
            const n = await it.next();
            if (n.done) return;
            yield n.value;
          }
        } finally {
          await it.return?.(undefined);
        }
      })();
    },
  };
}
