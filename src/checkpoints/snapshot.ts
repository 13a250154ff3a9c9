import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { CodegenError } from '../domain/errors.js';
import type { CheckpointToolOutput } from '../domain/tools.js';
import { MAX_LISTED_FILES } from './store.js';
import { blobsOf, decodeManifest, encodeManifest, isReservedRootName, MAX_MANIFEST_BYTES, modifiedSince, sha256Hex, type Manifest, type ManifestEntry } from './manifest.js';

/**
 * The worker's half of a checkpoint: walk the workspace and the venv's site-packages, hash every
 * file, send the store the blobs it lacks, then the manifest. Runs as the session's current task,
 * so no other task of the session writes meanwhile.
 */

/** How a worker reaches the checkpoint store (the coordinator's blob calls; a store directly in tests). */
export interface BlobTransport {
  missing(sha256s: string[]): Promise<string[]>;
  /** `open` is called once, for the bytes of the blob. */
  put(sha256: string, sizeBytes: number, open: () => AsyncIterable<Buffer>): Promise<{ added: boolean }>;
  /** NOT_FOUND when the store lacks it. */
  get(sha256: string): Promise<AsyncIterable<Buffer>>;
}

/** Names at the workspace root that are not the user's files. */
export const VENV_DIR = '.venv';
export const RESTORE_STAGING_PREFIX = '.codegen-restore-';
const skippedAtRoot = isReservedRootName;

/** The venv's site-packages and its Python minor version ("3.11"), or undefined when there is none. */
export async function sitePackagesOf(workspace: string): Promise<{ dir: string; python: string } | undefined> {
  const lib = path.join(workspace, VENV_DIR, 'lib');
  const names = await readdir(lib).catch(() => [] as string[]);
  const py = names.filter((n) => /^python\d+\.\d+$/.test(n)).sort()[0];
  return py ? { dir: path.join(lib, py, 'site-packages'), python: py.slice('python'.length) } : undefined;
}

export async function hashFile(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024, ...(signal ? { signal } : {}) })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Runs `fn` over `items`, `limit` at a time. */
export async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
}

interface Walked {
  entries: ManifestEntry[];
  /** Absolute paths of the files, by index in `entries`. */
  files: Map<ManifestEntry, string>;
}

async function walk(top: string, root: 'workspace' | 'packages', out: Walked, signal: AbortSignal | undefined): Promise<void> {
  const visit = async (dir: string, rel: string): Promise<void> => {
    signal?.throwIfAborted();
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      if (rel === '' && root === 'workspace' && skippedAtRoot(name)) continue;
      const abs = path.join(dir, name);
      const relPath = rel ? `${rel}/${name}` : name;
      const s = await lstat(abs);
      if (s.isDirectory()) {
        out.entries.push({ kind: 'dir', root, path: relPath, mode: s.mode & 0o7777 });
        await visit(abs, relPath);
      } else if (s.isFile()) {
        const e: ManifestEntry = { kind: 'file', root, path: relPath, size: s.size, sha256: '', mode: s.mode & 0o7777 };
        out.entries.push(e);
        out.files.set(e, abs);
      } else if (s.isSymbolicLink()) {
        out.entries.push({ kind: 'symlink', root, path: relPath, target: await readlink(abs) });
      }
      // FIFOs, sockets and devices are not files a checkpoint can hold: left out.
    }
  };
  await visit(top, '');
}

/** `name==version` of every distribution in site-packages (its *.dist-info/METADATA), sorted. */
export async function installedPackages(sitePackages: string): Promise<string[]> {
  const names = await readdir(sitePackages).catch(() => [] as string[]);
  const out: string[] = [];
  for (const n of names) {
    if (!n.endsWith('.dist-info')) continue;
    const meta = await readFile(path.join(sitePackages, n, 'METADATA'), 'utf8').catch(() => '');
    const name = /^Name:\s*(.+)$/m.exec(meta)?.[1]?.trim();
    const version = /^Version:\s*(.+)$/m.exec(meta)?.[1]?.trim();
    if (name && version) out.push(`${name}==${version}`);
  }
  return out.sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
}

export async function readBlob(transport: BlobTransport, sha256: string, maxBytes: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of await transport.get(sha256)) {
    n += chunk.length;
    if (n > maxBytes) throw new CodegenError('DATA_LOSS', `${what} (sha256 ${sha256}) is larger than ${maxBytes} bytes`);
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

/**
 * The sha256 of files whose size, mtime, ctime and inode have not changed since they were last
 * hashed (as git's index does): a second checkpoint of an unchanged workspace reads nothing.
 * Per session, in the worker's memory; a new worker process hashes everything once.
 */
export class HashCache {
  private readonly bySession = new Map<string, Map<string, { key: string; sha256: string }>>();

  of(sessionId: string): Map<string, { key: string; sha256: string }> {
    let m = this.bySession.get(sessionId);
    if (!m) this.bySession.set(sessionId, (m = new Map()));
    return m;
  }

  forget(sessionId: string): void {
    this.bySession.delete(sessionId);
  }
}

const statKey = (s: { size: number; mtimeMs: number; ctimeMs: number; ino: number }): string => `${s.size}:${s.mtimeMs}:${s.ctimeMs}:${s.ino}`;

export interface SnapshotOptions {
  workspace: string;
  /** The session's entries of a HashCache (absent: every file is hashed). */
  hashes?: Map<string, { key: string; sha256: string }>;
  transport: BlobTransport;
  /** The session's previous checkpoint's manifest ('' for none): modified_files is relative to it. */
  previousManifestSha256: string;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number, message: string) => void;
}

export async function takeSnapshot(opts: SnapshotOptions): Promise<CheckpointToolOutput> {
  const walked: Walked = { entries: [], files: new Map() };
  await walk(opts.workspace, 'workspace', walked, opts.signal);
  const site = await sitePackagesOf(opts.workspace);
  if (site) await walk(site.dir, 'packages', walked, opts.signal).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  const files = [...walked.files.entries()];
  const total = files.reduce((n, [e]) => n + (e.kind === 'file' ? e.size : 0), 0);
  let hashed = 0;
  const seen = new Set<string>();
  await eachLimited(files, 4, async ([entry, abs]) => {
    if (entry.kind !== 'file') return;
    const cacheKey = `${entry.root}:${entry.path}`;
    seen.add(cacheKey);
    const before = await lstat(abs);
    const cached = opts.hashes?.get(cacheKey);
    if (cached && cached.key === statKey(before)) {
      entry.sha256 = cached.sha256;
      entry.size = before.size;
      return;
    }
    entry.sha256 = await hashFile(abs, opts.signal);
    // A file that changed while it was read would not match its blob: its size and stat are taken after, and kept only when unchanged.
    const after = await lstat(abs);
    entry.size = after.size;
    if (statKey(after) === statKey(before)) opts.hashes?.set(cacheKey, { key: statKey(after), sha256: entry.sha256 });
    hashed += entry.size;
  });
  for (const k of [...(opts.hashes?.keys() ?? [])]) if (!seen.has(k)) opts.hashes?.delete(k);
  opts.onProgress?.(hashed, total, `hashed ${files.length} files (${total} bytes)`);

  const manifest: Manifest = { version: 1, python: site?.python ?? '', entries: walked.entries };
  const manifestBytes = encodeManifest(manifest);
  if (manifestBytes.length > MAX_MANIFEST_BYTES) throw new CodegenError('LIMIT_EXCEEDED', `the workspace has ${walked.entries.length} files and folders: its manifest would be ${manifestBytes.length} bytes, more than the ${MAX_MANIFEST_BYTES} a restore accepts; remove files (caches, build output) and checkpoint again`);
  const manifestSha = sha256Hex(manifestBytes);

  const need = new Set(await opts.transport.missing(blobsOf(manifest)));
  const byBlob = new Map<string, { abs: string; size: number }>();
  for (const [entry, abs] of files) if (entry.kind === 'file' && need.has(entry.sha256) && !byBlob.has(entry.sha256)) byBlob.set(entry.sha256, { abs, size: entry.size });
  let added = 0;
  let sent = 0;
  await eachLimited([...byBlob.entries()], 4, async ([sha, f]) => {
    opts.signal?.throwIfAborted();
    const r = await opts.transport.put(sha, f.size, () => createReadStream(f.abs, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>);
    if (r.added) added += f.size;
    sent += f.size;
    opts.onProgress?.(sent, total, `sent ${sent} of ${total} bytes`);
  });
  if ((await opts.transport.missing([manifestSha])).length > 0) {
    const r = await opts.transport.put(manifestSha, manifestBytes.length, async function* () {
      yield manifestBytes;
    });
    if (r.added) added += manifestBytes.length;
  }

  let previous: Manifest | undefined;
  if (opts.previousManifestSha256) {
    // An unreadable previous manifest only makes every file count as modified.
    previous = await readBlob(opts.transport, opts.previousManifestSha256, 64 * 1024 * 1024, 'the previous checkpoint')
      .then((b) => decodeManifest(b, opts.previousManifestSha256, 'the previous checkpoint'))
      .catch(() => undefined);
  }
  const modified = modifiedSince(manifest, previous);
  return {
    manifest_sha256: manifestSha,
    added_bytes: added,
    file_count: files.length,
    total_bytes: total,
    installed_packages: site ? await installedPackages(site.dir) : [],
    modified_files: modified.slice(0, MAX_LISTED_FILES),
    modified_count: modified.length,
    python_version: site?.python ?? '',
  };
}
