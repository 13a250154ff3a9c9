import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, open, readdir, rename, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { CodegenError } from '../domain/errors.js';
import type { RestoreToolOutput } from '../domain/tools.js';
import { decodeManifest, isReservedRootName, MAX_MANIFEST_BYTES, type FileEntry, type Manifest } from './manifest.js';
import { eachLimited, readBlob, RESTORE_STAGING_PREFIX, sitePackagesOf, type BlobTransport } from './snapshot.js';

/**
 * The worker's half of a restore: fetch the manifest and every blob into a staging folder inside
 * the workspace (the same filesystem, so the swap is renames), checking each sha256 as it comes.
 * Only when everything is there and right are the workspace's files and the venv's site-packages
 * replaced; any failure before that leaves the workspace as it was (DATA_LOSS names the checksum).
 */
export interface RestoreOptions {
  workspace: string;
  transport: BlobTransport;
  checkpointId: string;
  manifestSha256: string;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number, message: string) => void;
}

const isNotFound = (err: unknown): boolean => err instanceof CodegenError && err.code === 'NOT_FOUND';

async function fetchManifest(opts: RestoreOptions): Promise<Manifest> {
  const what = `checkpoint ${opts.checkpointId}`;
  try {
    return decodeManifest(await readBlob(opts.transport, opts.manifestSha256, MAX_MANIFEST_BYTES, `${what}'s manifest`), opts.manifestSha256, what);
  } catch (err) {
    if (isNotFound(err)) throw new CodegenError('DATA_LOSS', `${what}: its manifest (checksum_sha256 ${opts.manifestSha256}) is missing from the checkpoint store`);
    throw err;
  }
}

/** One blob into `dest`, checked against its sha256 and size on the way. */
async function fetchFile(opts: RestoreOptions, e: FileEntry, dest: string): Promise<void> {
  const what = `checkpoint ${opts.checkpointId}: ${e.root === 'packages' ? 'package file' : 'file'} ${JSON.stringify(e.path)}`;
  let source: AsyncIterable<Buffer>;
  try {
    source = await opts.transport.get(e.sha256);
  } catch (err) {
    if (isNotFound(err)) throw new CodegenError('DATA_LOSS', `${what}: its blob sha256 ${e.sha256} is missing from the checkpoint store`);
    throw err;
  }
  const hash = createHash('sha256');
  let size = 0;
  const fh = await open(dest, 'wx', 0o600);
  try {
    for await (const chunk of source) {
      opts.signal?.throwIfAborted();
      size += chunk.length;
      hash.update(chunk);
      await fh.write(chunk);
    }
  } finally {
    await fh.close();
  }
  const got = hash.digest('hex');
  if (got !== e.sha256 || size !== e.size) throw new CodegenError('DATA_LOSS', `${what}: sha256 ${e.sha256} (${e.size} bytes) expected, the stored blob hashes to ${got} (${size} bytes)`);
}

export async function restoreSnapshot(opts: RestoreOptions): Promise<RestoreToolOutput> {
  const manifest = await fetchManifest(opts);
  const site = await sitePackagesOf(opts.workspace);
  const hasPackages = manifest.entries.some((e) => e.root === 'packages');
  if (hasPackages && !site) throw new CodegenError('FAILED_PRECONDITION', `checkpoint ${opts.checkpointId} has packages, but the session has no venv to put them in`);
  if (hasPackages && site && manifest.python && manifest.python !== site.python) {
    throw new CodegenError('FAILED_PRECONDITION', `checkpoint ${opts.checkpointId} holds packages for Python ${manifest.python}, and this worker's sessions run Python ${site.python}: they would not import; restore it on a worker with Python ${manifest.python}`);
  }

  // What an earlier restore left when its worker died mid-way goes first.
  for (const name of await readdir(opts.workspace)) {
    if (name.startsWith(RESTORE_STAGING_PREFIX)) await rm(path.join(opts.workspace, name), { recursive: true, force: true });
  }
  const staging = await mkdtemp(path.join(opts.workspace, RESTORE_STAGING_PREFIX));
  const stagedRoot = (root: 'workspace' | 'packages') => path.join(staging, root);
  try {
    await mkdir(stagedRoot('workspace'));
    await mkdir(stagedRoot('packages'));
    const dirs = manifest.entries.filter((e) => e.kind === 'dir');
    for (const d of dirs) await mkdir(path.join(stagedRoot(d.root), d.path), { recursive: true });
    const files = manifest.entries.filter((e): e is FileEntry => e.kind === 'file');
    const total = files.reduce((n, e) => n + e.size, 0);
    // Each blob is fetched once; a file with the same contents as an earlier one is a local copy.
    const first = new Map<string, FileEntry>();
    const copies: FileEntry[] = [];
    for (const f of files) {
      if (first.has(f.sha256)) copies.push(f);
      else first.set(f.sha256, f);
    }
    // Each parent folder once (the manifest's own folders are made above; a parent it lacks is made here).
    for (const parent of new Set(files.map((f) => path.dirname(path.join(stagedRoot(f.root), f.path))))) await mkdir(parent, { recursive: true });
    let done = 0;
    await eachLimited([...first.values()], 4, async (f) => {
      await fetchFile(opts, f, path.join(stagedRoot(f.root), f.path));
      done += f.size;
      opts.onProgress?.(done, total, `fetched ${done} of ${total} bytes`);
    });
    for (const f of copies) {
      const src = first.get(f.sha256)!;
      await copyFile(path.join(stagedRoot(src.root), src.path), path.join(stagedRoot(f.root), f.path));
    }
    for (const f of files) await chmod(path.join(stagedRoot(f.root), f.path), f.mode);
    // Symlinks last: no file above was written through one.
    for (const e of manifest.entries) if (e.kind === 'symlink') await symlink(e.target, path.join(stagedRoot(e.root), e.path));
    for (const d of dirs) await chmod(path.join(stagedRoot(d.root), d.path), d.mode);

    // Everything is here and checked: the swap, by renames only (the old files are set aside in the
    // staging folder first and removed with it), so it takes moments and nothing is half-copied.
    opts.signal?.throwIfAborted();
    const aside = path.join(staging, 'old');
    await mkdir(aside);
    for (const name of await readdir(opts.workspace)) {
      if (isReservedRootName(name)) continue;
      await rename(path.join(opts.workspace, name), path.join(aside, name));
    }
    for (const name of await readdir(stagedRoot('workspace'))) await rename(path.join(stagedRoot('workspace'), name), path.join(opts.workspace, name));
    if (site) {
      await rename(site.dir, path.join(aside, '.site-packages')).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      await rename(stagedRoot('packages'), site.dir);
    }
    return { file_count: files.length, total_bytes: total };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
