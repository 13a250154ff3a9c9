import { constants as fsConstants } from 'node:fs';
import { lstat, mkdir, readlink, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { CodegenError, invalidArgument } from '../domain/errors.js';
import { isSafeId } from '../domain/ids.js';

/**
 * A session's workspace on disk (BASE_WORKSPACE/<session-id>) and the one way
 * to turn a path a user gave into a path on disk.
 */

export interface ResolveOptions {
  /** The path is about to be written: a symlink that points nowhere is refused too. */
  forWrite?: boolean;
  /** '' means the workspace root (fs_list). Otherwise an empty path is refused. */
  allowEmpty?: boolean;
  /** The request field named in messages; default 'path'. */
  field?: string;
}

/** Open flags for writing a resolved path: O_NOFOLLOW refuses a symlink swapped in after the check; O_NONBLOCK keeps a FIFO from hanging the open. */
export const WRITE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;
/** Open flags for reading a resolved path (O_NONBLOCK: a FIFO must not hang the open; it is refused after fstat). */
export const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

const violation = (field: string, userPath: string, why: string): CodegenError =>
  new CodegenError('PATH_VIOLATION', `${field} ${JSON.stringify(userPath)}: ${why}`);

/** Linux's limits (NAME_MAX, and PATH_MAX less room for the workspace's own path). */
export const MAX_NAME_BYTES = 255;
export const MAX_PATH_BYTES = 3_800;

/** Over-long paths are the caller's mistake (INVALID_ARGUMENT), never an ENAMETOOLONG from deep inside. */
export function checkPathLengths(field: string, userPath: string): void {
  const total = Buffer.byteLength(userPath);
  if (total > MAX_PATH_BYTES) throw invalidArgument(field, `is ${total} bytes long; a path may have at most ${MAX_PATH_BYTES}`);
  for (const part of userPath.split('/')) {
    const bytes = Buffer.byteLength(part);
    if (bytes > MAX_NAME_BYTES) throw invalidArgument(field, `the name ${JSON.stringify(`${part.slice(0, 32)}…`)} is ${bytes} bytes long; a file or folder name may have at most ${MAX_NAME_BYTES}`);
  }
}

/** `p` is `root` or below it (both absolute and normalised). */
export const isInside = (root: string, p: string): boolean => p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);

const isMissing = (err: unknown): boolean => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
};

/** The workspace's real path (symlinks in BASE_WORKSPACE itself resolved). */
export async function workspaceRealPath(workspace: string): Promise<string> {
  try {
    return await realpath(workspace);
  } catch (err) {
    throw new CodegenError('INTERNAL', `workspace ${workspace} is not available: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Resolve `userPath` (relative to the workspace root) to an absolute real path
 * inside the workspace, or throw PATH_VIOLATION. Refused: an empty path (unless
 * allowEmpty), NUL bytes, absolute paths, `..` that leaves the workspace, and any
 * symlink on the way (made by anyone, user code included) that resolves outside.
 * Components that do not exist yet are appended lexically; every existing one is
 * checked with lstat/realpath, so the returned path has no symlink left in it.
 * Callers open it with O_NOFOLLOW (READ_FLAGS, WRITE_FLAGS) against a late swap.
 */
export async function resolveInWorkspace(workspace: string, userPath: string, opts: ResolveOptions = {}): Promise<string> {
  const field = opts.field ?? 'path';
  if (typeof userPath !== 'string') throw violation(field, String(userPath), 'must be a string');
  if (userPath === '' && !opts.allowEmpty) throw violation(field, userPath, 'is empty; give a path relative to the workspace root');
  if (userPath.includes('\0')) throw violation(field, userPath, 'contains a NUL byte');
  checkPathLengths(field, userPath);
  if (path.isAbsolute(userPath)) throw violation(field, userPath, 'is absolute; give a path relative to the workspace root');

  const root = await workspaceRealPath(workspace);
  const lexical = path.resolve(root, userPath);
  if (!isInside(root, lexical)) throw violation(field, userPath, 'leaves the workspace');

  const parts = path.relative(root, lexical).split(path.sep).filter((p) => p !== '');
  let current = root;
  for (let i = 0; i < parts.length; i++) {
    const next = path.join(current, parts[i]!);
    let info;
    try {
      info = await lstat(next);
    } catch (err) {
      if (!isMissing(err)) throw err;
      // Nothing exists from here on: the rest cannot hide a symlink.
      return path.join(next, ...parts.slice(i + 1));
    }
    if (!info.isSymbolicLink()) {
      current = next;
      continue;
    }
    let target: string;
    try {
      target = await realpath(next);
    } catch (err) {
      if (!isMissing(err) && (err as NodeJS.ErrnoException).code !== 'ELOOP') throw err;
      // A dangling symlink: say where it would lead.
      const link = await readlink(next);
      const pointsTo = path.resolve(path.dirname(next), link);
      if (!isInside(root, pointsTo)) throw violation(field, userPath, `${path.relative(root, next)} is a symbolic link that points outside the workspace`);
      if (opts.forWrite) throw violation(field, userPath, `${path.relative(root, next)} is a symbolic link to a missing target`);
      throw new CodegenError('NOT_FOUND', `${field} ${JSON.stringify(userPath)}: ${path.relative(root, next)} is a symbolic link to a missing target`);
    }
    if (!isInside(root, target)) {
      throw violation(field, userPath, `${path.relative(root, next) || '.'} is a symbolic link that points outside the workspace`);
    }
    current = target;
  }
  return current;
}

/** The path of `abs` relative to the workspace root, for messages and replies ('' for the root). */
export const relativeToWorkspace = (root: string, abs: string): string => path.relative(root, abs).split(path.sep).join('/');

/** The part of a workspace that venv creation needs. */
export interface VenvSource {
  take(targetVenvDir: string): Promise<void>;
}

function workspacePathOf(base: string, sessionId: string): string {
  if (!isSafeId(sessionId)) throw new CodegenError('INVALID_ARGUMENT', `session_id ${JSON.stringify(sessionId)} is not a valid session id`);
  const baseAbs = path.resolve(base);
  const dir = path.join(baseAbs, sessionId);
  if (path.dirname(dir) !== baseAbs) throw new CodegenError('PATH_VIOLATION', `session_id ${JSON.stringify(sessionId)} is not directly under ${baseAbs}`);
  return dir;
}

/**
 * Make `<base>/<sessionId>` with `artifacts/` and a venv in `.venv` taken from
 * the pool. Idempotent: an existing workspace keeps its files, and its venv when
 * `.venv/bin/python` is already there (a restarted session). Returns the path.
 */
export async function createWorkspace(base: string, sessionId: string, pool: VenvSource): Promise<string> {
  const dir = workspacePathOf(base, sessionId);
  await mkdir(path.resolve(base), { recursive: true });
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await mkdir(path.join(dir, 'artifacts'), { recursive: true });
  const venv = path.join(dir, '.venv');
  const hasPython = await stat(path.join(venv, 'bin', 'python')).then(
    () => true,
    () => false,
  );
  if (!hasPython) {
    await rm(venv, { recursive: true, force: true });
    await pool.take(venv);
  }
  return dir;
}

/** rm -rf `<base>/<sessionId>`, refusing anything that is not a session folder directly under base. */
export async function removeWorkspace(base: string, sessionId: string): Promise<void> {
  const dir = workspacePathOf(base, sessionId);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}
