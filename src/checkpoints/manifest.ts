import { createHash } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { CodegenError } from '../domain/errors.js';

/**
 * A checkpoint's manifest: every file of the workspace (artifacts/ included) and of the venv's
 * site-packages, with its size and sha256, in a canonical JSON form. The manifest is itself a
 * blob of the store, named by its sha256, so `checksum_sha256` (that name) covers the whole list,
 * and each entry's sha256 covers one file's bytes.
 *
 * Roots: `workspace` (relative to the workspace root; `.venv` and the root's `lost+found` are not
 * in it) and `packages` (relative to the venv's site-packages, restored into the target's venv,
 * so a package installed with pkg_install is importable after a restore on any worker with the
 * same Python minor version).
 */

export const SHA256_HEX = /^[0-9a-f]{64}$/;
export const isSha256 = (v: string): boolean => SHA256_HEX.test(v);

const relPath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => !p.includes('\0') && !path.isAbsolute(p) && p.split('/').every((part) => part !== '' && part !== '.' && part !== '..'), { error: 'is not a plain relative path' });

const Entry = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('file'), root: z.enum(['workspace', 'packages']), path: relPath, size: z.number().int().nonnegative(), sha256: z.string().regex(SHA256_HEX), mode: z.number().int().min(0).max(0o7777) }),
  z.object({ kind: z.literal('dir'), root: z.enum(['workspace', 'packages']), path: relPath, mode: z.number().int().min(0).max(0o7777) }),
  z.object({ kind: z.literal('symlink'), root: z.enum(['workspace', 'packages']), path: relPath, target: z.string().min(1).max(4096) }),
]);

export const Manifest = z.object({
  version: z.literal(1),
  /** The Python minor version of the venv the packages came from ("3.11"). */
  python: z.string().max(32),
  entries: z.array(Entry),
});
export type Manifest = z.infer<typeof Manifest>;
export type ManifestEntry = z.infer<typeof Entry>;
export type FileEntry = Extract<ManifestEntry, { kind: 'file' }>;

/** The largest manifest a restore accepts (about 300,000 files). */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export const sha256Hex = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** Entries sorted by root then path, keys in a fixed order: one workspace has one manifest text. */
export function encodeManifest(m: Manifest): Buffer {
  const entries = [...m.entries].sort((a, b) => (a.root === b.root ? (a.path < b.path ? -1 : a.path > b.path ? 1 : 0) : a.root < b.root ? -1 : 1));
  const ordered = entries.map((e) =>
    e.kind === 'file'
      ? { kind: e.kind, root: e.root, path: e.path, size: e.size, sha256: e.sha256, mode: e.mode }
      : e.kind === 'dir'
        ? { kind: e.kind, root: e.root, path: e.path, mode: e.mode }
        : { kind: e.kind, root: e.root, path: e.path, target: e.target },
  );
  return Buffer.from(JSON.stringify({ version: 1, python: m.python, entries: ordered }));
}

/** The manifest in `bytes`, which must hash to `sha256`: DATA_LOSS, naming the checksum, otherwise. */
export function decodeManifest(bytes: Buffer, sha256: string, what: string): Manifest {
  const got = sha256Hex(bytes);
  if (got !== sha256) throw new CodegenError('DATA_LOSS', `${what}: its manifest does not match its checksum: checksum_sha256 ${sha256} expected, the stored manifest hashes to ${got}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new CodegenError('DATA_LOSS', `${what}: its manifest (sha256 ${sha256}) is not JSON: ${(err as Error).message}`);
  }
  const r = Manifest.safeParse(parsed);
  if (!r.success) throw new CodegenError('DATA_LOSS', `${what}: its manifest (sha256 ${sha256}) is malformed: ${r.error.issues[0]?.path.join('.')} ${r.error.issues[0]?.message}`);
  const problem = layoutProblem(r.data);
  if (problem) throw new CodegenError('DATA_LOSS', `${what}: its manifest (sha256 ${sha256}) is malformed: ${problem}`);
  return r.data;
}

/** Names at the workspace root that are the system's, never a checkpoint's files. */
export const isReservedRootName = (name: string): boolean => name === '.venv' || name === 'lost+found' || name.startsWith('.codegen-restore-');

/**
 * What a manifest that passed its checksum may still not do, since a restore writes what it
 * says: name a path twice, put an entry below a symlink (it would be written through the link,
 * outside the workspace) or below a file, or use the workspace root's reserved names.
 */
export function layoutProblem(m: Manifest): string | undefined {
  const kinds = new Map<string, ManifestEntry['kind']>();
  for (const e of m.entries) {
    const key = `${e.root}:${e.path}`;
    if (kinds.has(key)) return `${e.root} path ${JSON.stringify(e.path)} is listed twice`;
    kinds.set(key, e.kind);
    if (e.root === 'workspace' && isReservedRootName(e.path.split('/')[0]!)) return `${JSON.stringify(e.path)} is a reserved name at the workspace root`;
  }
  for (const e of m.entries) {
    const parts = e.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = kinds.get(`${e.root}:${parts.slice(0, i).join('/')}`);
      if (parent && parent !== 'dir') return `${e.root} path ${JSON.stringify(e.path)} is below a ${parent}, not a folder`;
    }
  }
  return undefined;
}

/** Every blob a manifest needs (its files' contents), without repeats. */
export const blobsOf = (m: Manifest): string[] => [...new Set(m.entries.flatMap((e) => (e.kind === 'file' ? [e.sha256] : [])))];

/** Workspace files added or changed since `previous` (all of them without one), sorted. */
export function modifiedSince(current: Manifest, previous: Manifest | undefined): string[] {
  const before = new Map<string, string>();
  for (const e of previous?.entries ?? []) if (e.kind === 'file' && e.root === 'workspace') before.set(e.path, e.sha256);
  return current.entries
    .filter((e): e is FileEntry => e.kind === 'file' && e.root === 'workspace' && before.get(e.path) !== e.sha256)
    .map((e) => e.path)
    .sort();
}
