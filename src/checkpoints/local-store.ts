import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, utimes } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CodegenError } from '../domain/errors.js';
import { BlobCheck, checkBlobName, checkStoreId, drainBounded, RecordIndex, recordFrom, storeFull, type BlobWrite, type CheckpointRecord, type CheckpointStore } from './store.js';

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

export class LocalCheckpointStore implements CheckpointStore {
  readonly url: string;
  private readonly blobs: string;
  private readonly records: string;
  private readonly tmp: string;
  private readonly evicted: string;
  private used: Promise<number> | undefined;
  /** The readable records, read from the folder at the first listing and kept up to date after. */
  private index: RecordIndex | undefined;

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
    return path.join(this.blobs, sha256.slice(0, 2), checkBlobName(sha256));
  }

  private recordPath(checkpointId: string): string {
    return path.join(this.records, `${checkStoreId('checkpoint_id', checkpointId)}.json`);
  }

  /** `bytes` to `dest` as a whole or not at all: a temp file in tmp/, fsynced, renamed, its folder fsynced. */
  private async writeWhole(dest: string, bytes: Buffer): Promise<void> {
    const tmp = path.join(this.tmp, `write-${randomBytes(8).toString('hex')}`);
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.write(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { force: true });
      throw noSpace(err);
    }
    const dir = await open(path.dirname(dest), 'r');
    await dir.sync().finally(() => dir.close());
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
      if (used + bytes > max) throw storeFull(`it holds ${used} of its ${max} bytes (CHECKPOINT_STORE_MAX_BYTES) and this needs ${bytes} more`);
    }
    const fs = await statfs(this.tmp).catch(() => undefined);
    if (fs && fs.bavail * fs.bsize < bytes + 16 * 1024 * 1024) throw storeFull(`its disk has ${fs.bavail * fs.bsize} bytes free and this needs ${bytes}`);
  }

  private account(delta: number): void {
    if (this.used) this.used = this.used.then((n) => Math.max(0, n + delta));
  }

  async putBlob(sha256: string, sizeBytes: number, data: AsyncIterable<Buffer>): Promise<BlobWrite> {
    const dest = this.blobPath(sha256);
    const check = new BlobCheck(sha256, sizeBytes);
    const there = await stat(dest).catch(() => undefined);
    if (there) {
      await drainBounded(data, sha256, sizeBytes); // the sender streams it anyway: taken and dropped, never more than announced
      return { added: false, sizeBytes };
    }
    await this.reserve(sizeBytes);
    const tmp = path.join(this.tmp, `blob-${randomBytes(8).toString('hex')}`);
    const fh = await open(tmp, 'wx', 0o600);
    try {
      for await (const chunk of data) {
        check.add(chunk);
        await fh.write(chunk);
      }
      check.finish();
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
    await this.writeWhole(this.recordPath(record.checkpointId), text);
    this.account(text.length);
    this.index?.set(record);
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
      const found: CheckpointRecord[] = [];
      for (const name of await readdir(this.records).catch(() => [] as string[])) {
        if (!name.endsWith('.json')) continue;
        const r = await this.getRecord(name.slice(0, -'.json'.length)).catch(() => undefined);
        if (r) found.push(r);
      }
      this.index = new RecordIndex(found);
    }
    return this.index.list();
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
    return path.join(this.evicted, `${checkStoreId('session_id', sessionId)}.json`);
  }

  async putEvicted(sessionId: string, value: unknown): Promise<void> {
    await this.writeWhole(this.evictedPath(sessionId), Buffer.from(JSON.stringify(value)));
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
  if (code === 'ENOSPC' || code === 'EDQUOT') return storeFull(`its disk has no room left (${code})`);
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
