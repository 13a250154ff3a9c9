import { createHash } from 'node:crypto';
import { z } from 'zod';
import { CodegenError, invalidArgument } from '../domain/errors.js';
import { isSafeId } from '../domain/ids.js';
import { StoredSessionConfig } from '../domain/session-schemas.js';
import { isSha256, SHA256_HEX } from './manifest.js';

/**
 * Where checkpoints live: content-addressed blobs (file contents and manifests, named by their
 * sha256) and one small record per checkpoint. A record is written last, atomically, once every
 * blob it names is in: a crash mid-checkpoint leaves blobs nobody names (swept later) and no
 * record, so nothing that looks complete. The coordinator owns the store; workers reach it
 * through the WorkerLifecycle blob calls.
 */
export const CheckpointRecord = z.object({
  version: z.literal(1),
  checkpointId: z.string().refine(isSafeId),
  name: z.string().max(128),
  sessionId: z.string().refine(isSafeId),
  workspaceId: z.string(),
  userId: z.string(),
  tenant: z.string(),
  createdAtMs: z.number().int().nonnegative(),
  manifestSha256: z.string().regex(SHA256_HEX),
  /** What this checkpoint added to the store (new blobs, its manifest, this record). */
  sizeBytes: z.number().int().nonnegative(),
  fileCount: z.number().int().nonnegative(),
  totalBytes: z.number().int().nonnegative(),
  installedPackages: z.array(z.string()),
  /** The first MAX_LISTED_FILES changed files since the session's previous checkpoint; modifiedCount counts them all. */
  modifiedFiles: z.array(z.string()),
  modifiedCount: z.number().int().nonnegative(),
  pythonVersion: z.string(),
  previousCheckpointId: z.string(),
  /** The session's task that took it (the session's last task then, if nothing ran after it: what an eviction checks). */
  taskId: z.string().optional(),
  config: StoredSessionConfig,
  metadata: z.record(z.string(), z.string()),
});
export type CheckpointRecord = z.infer<typeof CheckpointRecord>;

export const MAX_LISTED_FILES = 1_000;

export interface BlobWrite {
  /** false: the store had the blob already (nothing was added). */
  added: boolean;
  sizeBytes: number;
}

export interface CheckpointStore {
  /** Where the store is, for storage_url: file:///… or s3://bucket/prefix. */
  readonly url: string;
  /** The blobs among `sha256s` the store lacks (the ones it has count as used now: a sweep spares them a while). */
  missing(sha256s: readonly string[]): Promise<string[]>;
  /** Takes one blob; its bytes must hash to `sha256` and count `sizeBytes` (INVALID_ARGUMENT otherwise, nothing kept). */
  putBlob(sha256: string, sizeBytes: number, data: AsyncIterable<Buffer>): Promise<BlobWrite>;
  /** A blob's bytes; NOT_FOUND when it is not there. */
  readBlob(sha256: string): Promise<AsyncIterable<Buffer>>;
  /** Writes a record atomically; resolves with the bytes it takes. */
  putRecord(record: CheckpointRecord): Promise<number>;
  /** undefined: no such checkpoint; DATA_LOSS: its record is there but unreadable. */
  getRecord(checkpointId: string): Promise<CheckpointRecord | undefined>;
  /** Every readable record (unreadable ones are skipped, and reported through `onProblem`). */
  listRecords(): Promise<CheckpointRecord[]>;
  deleteRecord(checkpointId: string): Promise<boolean>;
  /** Removes blobs no record names that are older than `graceMs` (a checkpoint in progress may still name them). */
  sweep(keep: ReadonlySet<string>, graceMs: number): Promise<{ removed: number; freedBytes: number }>;
  /** Evicted sessions (no worker holds them; their files are in a checkpoint), remembered across coordinator restarts. */
  putEvicted(sessionId: string, value: unknown): Promise<void>;
  listEvicted(): Promise<unknown[]>;
  deleteEvicted(sessionId: string): Promise<void>;
}

/** A blob's name, checked before it becomes a file name or an object key. */
export function checkBlobName(sha256: string): string {
  if (!isSha256(sha256)) throw invalidArgument('sha256', `${JSON.stringify(sha256.slice(0, 80))} is not a sha256 (64 lowercase hex digits)`);
  return sha256;
}

/** A checkpoint id (or a session id), checked before it becomes a file name or an object key. */
export function checkStoreId(field: 'checkpoint_id' | 'session_id', id: string): string {
  if (!isSafeId(id)) throw invalidArgument(field, 'letters, digits, ".", "_" and "-" only, at most 128');
  return id;
}

/** A checkpoint id that names none: the same words for one that does not exist and for another tenant's. */
export const unknownCheckpoint = (checkpointId: string): CodegenError =>
  new CodegenError('NOT_FOUND', `checkpoint_id: no checkpoint ${JSON.stringify(checkpointId)} exists (checkpoint_list shows them)`);

export const storeFull = (why: string): CodegenError => new CodegenError('LIMIT_EXCEEDED', `the checkpoint store is full: ${why}; delete checkpoints (DeleteCheckpoint) or give the store more room`);

/** Both stores' check of a blob as it comes in: no more bytes than announced, then exactly those bytes hashing to its name. */
export class BlobCheck {
  private readonly hash = createHash('sha256');
  private count = 0;

  constructor(
    private readonly sha256: string,
    private readonly sizeBytes: number,
  ) {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw invalidArgument('size_bytes', 'must be a non-negative integer');
  }

  add(chunk: Buffer): void {
    this.count += chunk.length;
    if (this.count > this.sizeBytes) throw invalidArgument('data', `blob ${this.sha256} is longer than the ${this.sizeBytes} bytes its first chunk announced`);
    this.hash.update(chunk);
  }

  finish(): void {
    const got = this.hash.digest('hex');
    if (this.count !== this.sizeBytes) throw invalidArgument('data', `blob ${this.sha256} ended after ${this.count} of the ${this.sizeBytes} bytes announced`);
    if (got !== this.sha256) throw invalidArgument('sha256', `the bytes sent hash to ${got}, not to the ${this.sha256} announced (did the file change while it was read?)`);
  }
}

/** Oldest first; the id breaks ties. */
export const byCreation = (a: CheckpointRecord, b: CheckpointRecord): number => a.createdAtMs - b.createdAtMs || (a.checkpointId < b.checkpointId ? -1 : 1);

/**
 * Both stores' records in memory after the first listing (one coordinator owns a store), with
 * their sorted listing kept until the next change: status calls list a session's checkpoints.
 */
export class RecordIndex {
  private readonly byId = new Map<string, CheckpointRecord>();
  private sorted: CheckpointRecord[] | null = null;

  constructor(records: Iterable<CheckpointRecord>) {
    for (const r of records) this.byId.set(r.checkpointId, r);
  }

  set(r: CheckpointRecord): void {
    this.byId.set(r.checkpointId, r);
    this.sorted = null;
  }

  delete(checkpointId: string): void {
    if (this.byId.delete(checkpointId)) this.sorted = null;
  }

  list(): CheckpointRecord[] {
    this.sorted ??= [...this.byId.values()].sort(byCreation);
    return [...this.sorted];
  }
}

/** Reads and drops a blob the store already has, refusing more bytes than were announced. */
export async function drainBounded(data: AsyncIterable<Buffer>, sha256: string, sizeBytes: number): Promise<void> {
  let n = 0;
  for await (const chunk of data) {
    n += chunk.length;
    if (n > sizeBytes) throw new CodegenError('INVALID_ARGUMENT', `data: blob ${sha256} is longer than the ${sizeBytes} bytes its first chunk announced`);
  }
}

/** A record file that does not parse: the checkpoint exists, but cannot be trusted. */
export function recordFrom(raw: string, checkpointId: string): CheckpointRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new CodegenError('DATA_LOSS', `checkpoint ${checkpointId}: its record is not JSON (${(err as Error).message}); it cannot be restored`);
  }
  const r = CheckpointRecord.safeParse(parsed);
  if (!r.success || r.data.checkpointId !== checkpointId) {
    throw new CodegenError('DATA_LOSS', `checkpoint ${checkpointId}: its record is malformed (${r.success ? 'it names another checkpoint' : `${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`}); it cannot be restored`);
  }
  return r.data;
}
