import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { CodegenError, invalidArgument } from '../domain/errors.js';
import { isSafeId } from '../domain/ids.js';
import { eachLimited } from './snapshot.js';
import { BlobCheck, checkBlobName, checkStoreId, drainBounded, RecordIndex, recordFrom, storeFull, type BlobWrite, type CheckpointRecord, type CheckpointStore } from './store.js';

/**
 * The checkpoint store in S3-compatible object storage (CHECKPOINT_STORE=s3://bucket/prefix),
 * through the official AWS SDK v3:
 *   <prefix>/blobs/<sha256>            file contents and manifests
 *   <prefix>/checkpoints/<id>.json     one record per checkpoint
 *   <prefix>/tmp/<random>              an upload being checked
 * A blob is uploaded under tmp/, hashed on the way, and copied to its name only when its bytes
 * match it; a record is one PutObject (S3 writes an object whole or not at all), written after
 * its blobs. One coordinator owns a prefix: the listing of records is kept in memory after the
 * first read.
 */
export interface S3StoreOptions {
  /** s3://bucket/prefix */
  url: string;
  /** An S3-compatible server's URL (MinIO, s3rver…); absent: AWS's own endpoint for the region. */
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  maxBytes?: number;
  /** Extra client settings (tests: credentials). */
  client?: Partial<S3ClientConfig>;
}

export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw invalidArgument('CHECKPOINT_STORE', `${JSON.stringify(url)} is not s3://bucket/prefix (a bucket name is 3 to 63 lowercase letters, digits, "." and "-")`);
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix.split('/').some((p) => p === '..' || p === '.')) throw invalidArgument('CHECKPOINT_STORE', 'the prefix must not contain "." or ".." parts');
  return { bucket: m[1]!, prefix };
}

const isMissingKey = (err: unknown): boolean => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
};

const unavailable = (what: string, err: unknown): CodegenError =>
  new CodegenError('UNAVAILABLE', `the S3 checkpoint store could not ${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });

export class S3CheckpointStore implements CheckpointStore {
  readonly url: string;
  private readonly s3: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private records: RecordIndex | undefined;
  /** Blobs a checkpoint in progress counts on (missing() said the store has them): a sweep spares them. */
  private readonly claimed = new Map<string, number>();
  private used: Promise<number> | undefined;

  constructor(private readonly opts: S3StoreOptions) {
    const { bucket, prefix } = parseS3Url(opts.url);
    this.bucket = bucket;
    this.prefix = prefix;
    this.url = `s3://${bucket}${prefix ? `/${prefix}` : ''}`;
    this.s3 = new S3Client({
      region: opts.region || 'us-east-1',
      ...(opts.endpoint ? { endpoint: opts.endpoint, forcePathStyle: opts.forcePathStyle ?? true } : {}),
      // Checksums only where S3 requires them: ours is the sha256 every blob is named by, and
      // S3-compatible servers do not all take the SDK's trailing checksums.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // S3-compatible servers under load answer 500/503 now and then (a checkpoint puts hundreds of
      // blobs at once): five tries with the SDK's backoff, not three, before a checkpoint fails.
      maxAttempts: 5,
      ...opts.client,
    });
  }

  private key(...parts: string[]): string {
    return [this.prefix, ...parts].filter((p) => p !== '').join('/');
  }

  private blobKey(sha256: string): string {
    return this.key('blobs', checkBlobName(sha256));
  }

  private recordKey(checkpointId: string): string {
    return this.key('checkpoints', `${checkStoreId('checkpoint_id', checkpointId)}.json`);
  }

  /** Checks the bucket answers (a wrong endpoint or credentials show at start, not at the first checkpoint). */
  async open(): Promise<this> {
    try {
      await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.key('checkpoints/'), MaxKeys: 1 }));
    } catch (err) {
      throw unavailable(`list bucket ${this.bucket}`, err);
    }
    return this;
  }

  close(): void {
    this.s3.destroy();
  }

  private async exists(key: string): Promise<boolean> {
    try {
      await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (err) {
      if (isMissingKey(err)) return false;
      throw unavailable(`read ${key}`, err);
    }
  }

  async missing(sha256s: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    const now = Date.now();
    await eachLimited(sha256s, 16, async (sha) => {
      if (await this.exists(this.blobKey(sha))) this.claimed.set(sha, now);
      else out.push(sha);
    });
    return out;
  }

  private async listAll(prefix: string): Promise<Array<{ key: string; size: number; modifiedMs: number }>> {
    const out: Array<{ key: string; size: number; modifiedMs: number }> = [];
    let token: string | undefined;
    do {
      const res = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) })).catch((err: unknown) => {
        throw unavailable(`list ${prefix}`, err);
      });
      for (const o of res.Contents ?? []) if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 });
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  private async reserve(bytes: number): Promise<void> {
    const max = this.opts.maxBytes ?? 0;
    if (max <= 0) return;
    this.used ??= this.listAll(this.prefix ? `${this.prefix}/` : '').then((l) => l.reduce((n, o) => n + o.size, 0));
    const used = await this.used;
    if (used + bytes > max) throw storeFull(`it holds ${used} of its ${max} bytes (CHECKPOINT_STORE_MAX_BYTES) and this needs ${bytes} more`);
  }

  private account(delta: number): void {
    if (this.used) this.used = this.used.then((n) => Math.max(0, n + delta));
  }

  async putBlob(sha256: string, sizeBytes: number, data: AsyncIterable<Buffer>): Promise<BlobWrite> {
    const dest = this.blobKey(sha256);
    const check = new BlobCheck(sha256, sizeBytes);
    if (await this.exists(dest)) {
      await drainBounded(data, sha256, sizeBytes);
      this.claimed.set(sha256, Date.now());
      return { added: false, sizeBytes };
    }
    await this.reserve(sizeBytes);
    const tmp = this.key('tmp', randomBytes(8).toString('hex'));
    async function* checked(): AsyncIterable<Buffer> {
      for await (const chunk of data) {
        check.add(chunk);
        yield chunk;
      }
    }
    try {
      await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: tmp, Body: Readable.from(checked()), ContentLength: sizeBytes }));
      check.finish();
      await this.s3.send(new CopyObjectCommand({ Bucket: this.bucket, Key: dest, CopySource: `${this.bucket}/${tmp}` }));
    } catch (err) {
      if (err instanceof CodegenError) throw err;
      throw unavailable(`store blob ${sha256}`, err);
    } finally {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: tmp })).catch(() => {});
    }
    this.claimed.set(sha256, Date.now());
    this.account(sizeBytes);
    return { added: true, sizeBytes };
  }

  async readBlob(sha256: string): Promise<AsyncIterable<Buffer>> {
    const key = this.blobKey(sha256);
    try {
      const res = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return res.Body as unknown as AsyncIterable<Buffer>;
    } catch (err) {
      if (isMissingKey(err)) throw new CodegenError('NOT_FOUND', `blob ${sha256} is not in the checkpoint store`);
      throw unavailable(`read blob ${sha256}`, err);
    }
  }

  async putRecord(record: CheckpointRecord): Promise<number> {
    const text = Buffer.from(JSON.stringify(record));
    await this.reserve(text.length);
    await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.recordKey(record.checkpointId), Body: text, ContentLength: text.length, ContentType: 'application/json' })).catch((err: unknown) => {
      throw unavailable(`write checkpoint ${record.checkpointId}`, err);
    });
    this.records?.set(record);
    this.account(text.length);
    return text.length;
  }

  async getRecord(checkpointId: string): Promise<CheckpointRecord | undefined> {
    const key = this.recordKey(checkpointId);
    let raw: string;
    try {
      const res = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      raw = (await res.Body?.transformToString('utf8')) ?? '';
    } catch (err) {
      if (isMissingKey(err)) return undefined;
      throw unavailable(`read checkpoint ${checkpointId}`, err);
    }
    return recordFrom(raw, checkpointId);
  }

  async listRecords(): Promise<CheckpointRecord[]> {
    if (!this.records) {
      const found: CheckpointRecord[] = [];
      const objects = await this.listAll(this.key('checkpoints/'));
      await eachLimited(objects, 16, async (o) => {
        const id = o.key.slice(o.key.lastIndexOf('/') + 1).replace(/\.json$/, '');
        const r = await this.getRecord(id).catch(() => undefined);
        if (r) found.push(r);
      });
      this.records = new RecordIndex(found);
    }
    return this.records.list();
  }

  async deleteRecord(checkpointId: string): Promise<boolean> {
    const key = this.recordKey(checkpointId);
    if (!(await this.exists(key))) return false;
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })).catch((err: unknown) => {
      throw unavailable(`delete checkpoint ${checkpointId}`, err);
    });
    this.records?.delete(checkpointId);
    return true;
  }

  async putEvicted(sessionId: string, value: unknown): Promise<void> {
    checkStoreId('session_id', sessionId);
    const body = Buffer.from(JSON.stringify(value));
    await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key('evicted', `${sessionId}.json`), Body: body, ContentLength: body.length })).catch((err: unknown) => {
      throw unavailable(`remember evicted session ${sessionId}`, err);
    });
  }

  async listEvicted(): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const o of await this.listAll(this.key('evicted/'))) {
      try {
        const res = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: o.key }));
        out.push(JSON.parse((await res.Body?.transformToString('utf8')) ?? ''));
      } catch {
        // A damaged or vanished entry is skipped: its checkpoints are still listed and restorable.
      }
    }
    return out;
  }

  async deleteEvicted(sessionId: string): Promise<void> {
    if (!isSafeId(sessionId)) return;
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key('evicted', `${sessionId}.json`) })).catch(() => {});
  }

  async sweep(keep: ReadonlySet<string>, graceMs: number): Promise<{ removed: number; freedBytes: number }> {
    const cutoff = Date.now() - graceMs;
    for (const [sha, at] of this.claimed) if (at < cutoff) this.claimed.delete(sha);
    let removed = 0;
    let freedBytes = 0;
    for (const o of await this.listAll(this.key('blobs/'))) {
      const sha = o.key.slice(o.key.lastIndexOf('/') + 1);
      if (keep.has(sha) || this.claimed.has(sha) || o.modifiedMs > cutoff) continue;
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: o.key })).catch(() => {});
      removed++;
      freedBytes += o.size;
    }
    this.account(-freedBytes);
    return { removed, freedBytes };
  }
}
