import type * as grpc from '@grpc/grpc-js';
import { CodegenError, invalidArgument } from '../../domain/errors.js';
import { isSha256 } from '../../checkpoints/manifest.js';
import type { CheckpointStore } from '../../checkpoints/store.js';
import type { BlobChunk, BlobChunk__Output, GetBlobRequest__Output, MissingBlobsRequest__Output, MissingBlobsResponse, PutBlobResponse } from '../../wire/messages.js';
import { toServiceError, unaryHandler } from '../../wire/status.js';

/** Resolves when the stream can take more, or when it closed (its reader went away): never waits forever. */
function drainOrClose(s: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      s.off('drain', done);
      s.off('close', done);
      s.off('cancelled', done);
      s.off('error', done);
      resolve();
    };
    s.once('drain', done);
    s.once('close', done);
    s.once('cancelled', done);
    s.once('error', done);
  });
}

/** Data per chunk, both ways: bounded, so a 1 GB file is a thousand messages, never one. */
export const BLOB_CHUNK_BYTES = 1024 * 1024;
const MAX_MISSING_PER_CALL = 10_000;

/**
 * The checkpoint store's calls for workers (WorkerLifecycle.MissingBlobs/PutBlob/GetBlob), each
 * behind `check` (the worker token or certificate). The store checks what it takes.
 */
export { drainOrClose };

export function blobStoreHandlers(store: CheckpointStore, check: (call: { metadata: grpc.Metadata; getAuthContext?: () => unknown }) => void) {
  const MissingBlobs = unaryHandler<MissingBlobsRequest__Output, MissingBlobsResponse>(async (req, call) => {
    check(call);
    const shas = (req.sha256 ?? []).map(String);
    if (shas.length > MAX_MISSING_PER_CALL) throw invalidArgument('sha256', `at most ${MAX_MISSING_PER_CALL} per call`);
    shas.forEach((s, i) => {
      if (!isSha256(s)) throw invalidArgument(`sha256[${i}]`, 'is not a sha256 (64 lowercase hex digits)');
    });
    return { sha256: await store.missing(shas) };
  });

  const PutBlob = (call: grpc.ServerReadableStream<BlobChunk__Output, PutBlobResponse>, callback: grpc.sendUnaryData<PutBlobResponse>) => {
    let answered = false;
    const answer = (err: unknown, res?: PutBlobResponse) => {
      if (answered) return;
      answered = true;
      if (err) callback(toServiceError(err) as grpc.ServiceError, null);
      else callback(null, res!);
    };
    try {
      check(call);
    } catch (err) {
      answer(err);
      call.destroy();
      return;
    }
    // The first chunk names the blob; the store hashes what follows and keeps it only when it matches.
    const chunks = call[Symbol.asyncIterator]();
    void (async () => {
      const first = await chunks.next();
      if (first.done) throw invalidArgument('sha256', 'the stream ended before its first chunk named the blob');
      const head = first.value as BlobChunk__Output;
      const sha = String(head.sha256 ?? '');
      const size = Number(head.size_bytes ?? 0);
      if (!isSha256(sha)) throw invalidArgument('sha256', 'the first chunk must name the blob by its sha256');
      async function* data(): AsyncIterable<Buffer> {
        const firstData = Buffer.from(head.data ?? []);
        if (firstData.length > BLOB_CHUNK_BYTES) throw invalidArgument('data', `a chunk may carry at most ${BLOB_CHUNK_BYTES} bytes`);
        if (firstData.length > 0) yield firstData;
        for (;;) {
          const next = await chunks.next();
          if (next.done) return;
          const d = Buffer.from((next.value as BlobChunk__Output).data ?? []);
          if (d.length > BLOB_CHUNK_BYTES) throw invalidArgument('data', `a chunk may carry at most ${BLOB_CHUNK_BYTES} bytes`);
          yield d;
        }
      }
      const r = await store.putBlob(sha, size, data());
      return { added: r.added, size_bytes: r.sizeBytes };
    })().then(
      (res) => answer(null, res),
      (err) => answer(err),
    );
  };

  const GetBlob = (call: grpc.ServerWritableStream<GetBlobRequest__Output, BlobChunk>) => {
    void (async () => {
      check(call);
      const sha = String(call.request.sha256 ?? '');
      if (!isSha256(sha)) throw invalidArgument('sha256', 'is not a sha256 (64 lowercase hex digits)');
      let first = true;
      for await (const piece of await store.readBlob(sha)) {
        for (let at = 0; at < piece.length || (first && piece.length === 0); at += BLOB_CHUNK_BYTES) {
          const msg: BlobChunk = first ? { sha256: sha, data: piece.subarray(at, at + BLOB_CHUNK_BYTES) } : { data: piece.subarray(at, at + BLOB_CHUNK_BYTES) };
          first = false;
          if (call.cancelled) throw new CodegenError('CANCELLED', 'the worker went away');
          if (!call.write(msg)) await drainOrClose(call);
          if (piece.length === 0) break;
        }
      }
      call.end();
    })().catch((err) => {
      if (!call.cancelled) call.emit('error', toServiceError(err));
    });
  };

  return { MissingBlobs, PutBlob, GetBlob };
}
