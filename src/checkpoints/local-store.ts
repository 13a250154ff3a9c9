import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, utimes } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CodegenError, invalidArgument } from '../domain/errors.js';
import { isSafeId } from '../domain/ids.js';
import { isSha256 } from './manifest.js';
import { drainBounded, recordFrom, type BlobWrite, type CheckpointRecord, type CheckpointStore } from './store.js';

/**
 * The checkpoint store in a folder (the coordinator's CHECKPOINT_DIR):
 *   blobs/<aa>/<sha256>     file contents and manifests, named by their sha256
 *   checkpoints/<id>.json   one record per checkpoint
 *   tmp/                    writes in progress (renamed into place once complete and checked)
 * Every write goes to tmp/, is fsynced, then renamed: a reader never sees half a blob or record.
 */
export interface LocalStoreOptions {
  dir: string;
  /** The most bytes the store may hold (0: as much as the disk has). Beyond it: LIMIT_EXCEEDED (RESOURCE_EXHAUSTED). */
  maxBytes?: number;
}

const full = (why: string) => new CodegenError('LIMIT_EXCEEDED', `the checkpoint store is full: ${why}; delete checkpoints (DeleteCheckpoint) or give the store more room`);

export class LocalCheckpointStore implements CheckpointStore {
  readonly url: string;
  private readonly blobs: string;
  private readonly records: string;
  private readonly tmp: string;
  private readonly evicted: string;
  private used: Promise<number> | undefined;
  /** The readable records, read from the folder at the first listing and kept up to date after (one coordinator owns a store). */
  private index: Map<string, CheckpointRecord> | undefined;

  constructor(private readonly opts: LocalStoreOptions) {
    const dir = path.resolve(opts.dir);
    this.url = pathToFileURL(dir).href;
    this.blobs = path.join(dir, 'blobs');
    this.records = path.join(dir, 'checkpoints');
    this.tmp = path.join(dir, 'tmp');
    this.evicted = path.join(dir, 'evicted');
  }

  /** Makes the folders and clears writes a crash left in tmp/. */
  async open(): Promise<this> {
    await Promise.all([mkdir(this.blobs, { recursive: true }), mkdir(this.records, { recursive: true }), mkdir(this.evicted, { recursive: true })]);
    await rm(this.tmp, { recursive: true, force: true });
    await mkdir(this.tmp, { recursive: true });
    return this;
  }

  private blobPath(sha256: string): string {
    if (!isSha256(sha256)) throw invalidArgument('sha256', `${JSON.stringify(sha256.slice(0, 80))} is not a sha256 (64 lowercase hex digits)`);
    return path.join(this.blobs, sha256.slice(0, 2), sha256);
  }

  private recordPath(checkpointId: string): string {
    if (!isSafeId(checkpointId)) throw invalidArgument('checkpoint_id', 'letters, digits, ".", "_" and "-" only, at most 128');
    return path.join(this.records, `${checkpointId}.json`);
  }

  async missing(sha256s: readonly string[]): Promise<string[]> {
    const now = new Date();
    const out: string[] = [];
    await Promise.all(
      sha256s.map(async (sha) => {
        // Touching a blob that is there keeps a sweep from taking it before the record naming it is written.
        await utimes(this.blobPath(sha), now, now).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') out.push(sha);
          else throw err;
        });
      }),
    );
    return out;
  }

  /** Bytes in the store now: counted once, then kept up to date by puts and sweeps. */
  private usedBytes(): Promise<number> {
    this.used ??= sizeOfTree(path.dirname(this.blobs));
    return this.used;
  }

  private async reserve(bytes: number): Promise<void> {
    const max = this.opts.maxBytes ?? 0;
    if (max > 0) {
      const used = await this.usedBytes();
      if (used + bytes > max) throw full(`it holds ${used} of its ${max} bytes (CHECKPOINT_STORE_MAX_BYTES) and this needs ${bytes} more`);
    }
    const fs = await statfs(this.tmp).catch(() => undefined);
    if (fs && fs.bavail * fs.bsize < bytes + 16 * 1024 * 1024) throw full(`its disk has ${fs.bavail * fs.bsize} bytes free and this needs ${bytes}`);
  }

  private account(delta: number): void {
    if (this.used) this.used = this.used.then((n) => Math.max(0, n + delta));
  }

  async putBlob(sha256: string, sizeBytes: number, data: AsyncIterable<Buffer>): Promise<BlobWrite> {
    const dest = this.blobPath(sha256);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw invalidArgument('size_bytes', 'must be a non-negative integer');
    const there = await stat(dest).catch(() => undefined);
    if (there) {
      await drainBounded(data, sha256, sizeBytes); // the sender streams it anyway: taken and dropped, never more than announced
      return { added: false, sizeBytes };
    }
    await this.reserve(sizeBytes);
    const tmp = path.join(this.tmp, `blob-${randomBytes(8).toString('hex')}`);
    const hash = createHash('sha256');
    let count = 0;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      for await (const chunk of data) {
        count += chunk.length;
        if (count > sizeBytes) throw invalidArgument('data', `blob ${sha256} is longer than the ${sizeBytes} bytes its first chunk announced`);
        hash.update(chunk);
        await fh.write(chunk);
      }
      const got = hash.digest('hex');
      if (count !== sizeBytes) throw invalidArgument('data', `blob ${sha256} ended after ${count} of the ${sizeBytes} bytes announced`);
      if (got !== sha256) throw invalidArgument('sha256', `the bytes sent hash to ${got}, not to the ${sha256} announced (did the file change while it was read?)`);
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw noSpace(err);
    }
    await fh.close();
    await mkdir(path.dirname(dest), { recursive: true });
    await rename(tmp, dest);
    this.account(sizeBytes);
    return { added: true, sizeBytes };
  }

  async readBlob(sha256: string): Promise<AsyncIterable<Buffer>> {
    const p = this.blobPath(sha256);
    await stat(p).catch(() => {
      throw new CodegenError('NOT_FOUND', `blob ${sha256} is not in the checkpoint store`);
    });
    return createReadStream(p, { highWaterMark: 1024 * 1024 });
  }

  async putRecord(record: CheckpointRecord): Promise<number> {
    const text = Buffer.from(JSON.stringify(record));
    await this.reserve(text.length);
    const dest = this.recordPath(record.checkpointId);
    const tmp = path.join(this.tmp, `record-${randomBytes(8).toString('hex')}`);
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.write(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { force: true });
      throw noSpace(err);
    }
    const dir = await open(this.records, 'r');
    await dir.sync().finally(() => dir.close());
    this.account(text.length);
    this.index?.set(record.checkpointId, record);
    return text.length;
  }

  async getRecord(checkpointId: string): Promise<CheckpointRecord | undefined> {
    const p = this.recordPath(checkpointId);
    let raw: string;
    try {
      raw = await readFile(p, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return recordFrom(raw, checkpointId);
  }

  async listRecords(): Promise<CheckpointRecord[]> {
    if (!this.index) {
      const found = new Map<string, CheckpointRecord>();
      for (const name of await readdir(this.records).catch(() => [] as string[])) {
        if (!name.endsWith('.json')) continue;
        const r = await this.getRecord(name.slice(0, -'.json'.length)).catch(() => undefined);
        if (r) found.set(r.checkpointId, r);
      }
      this.index = found;
    }
    const out = [...this.index.values()];
    return out.sort((a, b) => a.createdAtMs - b.createdAtMs || (a.checkpointId < b.checkpointId ? -1 : 1));
  }

  async deleteRecord(checkpointId: string): Promise<boolean> {
    const p = this.recordPath(checkpointId);
    const size = (await stat(p).catch(() => undefined))?.size;
    if (size === undefined) return false;
    await rm(p, { force: true });
    this.account(-size);
    this.index?.delete(checkpointId);
    return true;
  }

  private evictedPath(sessionId: string): string {
    if (!isSafeId(sessionId)) throw invalidArgument('session_id', 'letters, digits, ".", "_" and "-" only, at most 128');
    return path.join(this.evicted, `${sessionId}.json`);
  }

  async putEvicted(sessionId: string, value: unknown): Promise<void> {
    const tmp = path.join(this.tmp, `evicted-${randomBytes(8).toString('hex')}`);
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.write(JSON.stringify(value));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.evictedPath(sessionId));
  }

  async listEvicted(): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const name of await readdir(this.evicted).catch(() => [] as string[])) {
      if (!name.endsWith('.json')) continue;
      const raw = await readFile(path.join(this.evicted, name), 'utf8').catch(() => '');
      try {
        out.push(JSON.parse(raw));
      } catch {
        // A damaged entry is skipped: its checkpoints are still listed and restorable.
      }
    }
    return out;
  }

  async deleteEvicted(sessionId: string): Promise<void> {
    await rm(this.evictedPath(sessionId), { force: true });
  }

  async sweep(keep: ReadonlySet<string>, graceMs: number): Promise<{ removed: number; freedBytes: number }> {
    const cutoff = Date.now() - graceMs;
    let removed = 0;
    let freedBytes = 0;
    for (const prefix of await readdir(this.blobs).catch(() => [] as string[])) {
      const dir = path.join(this.blobs, prefix);
      for (const sha of await readdir(dir).catch(() => [] as string[])) {
        if (keep.has(sha)) continue;
        const s = await stat(path.join(dir, sha)).catch(() => undefined);
        if (!s || s.mtimeMs > cutoff) continue;
        await rm(path.join(dir, sha), { force: true });
        removed++;
        freedBytes += s.size;
      }
    }
    this.account(-freedBytes);
    return { removed, freedBytes };
  }
}

function noSpace(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return full(`its disk has no room left (${code})`);
  return err;
}

async function sizeOfTree(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await sizeOfTree(p);
    else if (e.isFile()) total += (await stat(p).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
