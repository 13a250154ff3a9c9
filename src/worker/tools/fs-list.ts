import { lstat, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { invalidArgument } from '../../domain/errors.js';
import type { FileInfo, FsListInput } from '../../domain/tools.js';
import { relativeToWorkspace, resolveInWorkspace, workspaceRealPath } from '../workspace.js';
import { notFound } from './common.js';
import { globMatcher } from './glob.js';
import type { ToolContext, ToolExecution } from './types.js';

/** At most this many entries are returned; total_count still counts every match. */
export const MAX_LIST_ENTRIES = 10_000;
/** A recursive walk stops after visiting this many entries. */
const MAX_VISITED = 200_000;

const VENV = '.venv';

/**
 * fs_list: the entries of a folder (path '' = the workspace root), optionally
 * recursive and filtered by a glob; paths are relative to the workspace root,
 * sorted.
 *
 * Decision: a recursive listing does not descend into a folder named `.venv`
 * (the session's interpreter: thousands of files nobody asked for); the `.venv`
 * entry itself is still listed. Listing a path inside a `.venv` (e.g.
 * `.venv/lib`) lists it fully.
 * Symbolic links are listed as they are (lstat) and never followed, so a link to
 * somewhere else shows up as an entry but its target is neither listed nor sized.
 */
export async function runFsList(input: FsListInput, ctx: ToolContext): Promise<ToolExecution> {
  const userPath = input.path ?? '';
  const root = await workspaceRealPath(ctx.workspace);
  const dir = await resolveInWorkspace(ctx.workspace, userPath, { allowEmpty: true });
  const info = await stat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
    throw err;
  });
  if (info === null) throw notFound('path', userPath);
  if (!info.isDirectory()) throw invalidArgument('path', `${JSON.stringify(userPath)} is a file, not a directory; use fs_read`);

  const pattern = typeof input.pattern === 'string' ? input.pattern : '';
  if (pattern.includes('\0')) throw invalidArgument('pattern', 'contains a NUL byte');
  const matches = globMatcher(pattern);
  const insideVenv = relativeToWorkspace(root, dir).split('/').includes(VENV);

  const found: FileInfo[] = [];
  let visited = 0;
  const walk = async (folder: string, prefix: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(folder, { withFileTypes: true });
    } catch {
      return; // vanished or unreadable meanwhile
    }
    for (const entry of entries) {
      if (visited++ >= MAX_VISITED) return;
      const abs = path.join(folder, entry.name);
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      const meta = await lstat(abs).catch(() => null);
      if (meta === null) continue;
      const isDirectory = meta.isDirectory();
      if (matches(rel, entry.name)) {
        found.push({
          path: relativeToWorkspace(root, abs),
          name: entry.name,
          size_bytes: isDirectory ? 0 : meta.size,
          is_directory: isDirectory,
          modified_time_ms: Math.floor(meta.mtimeMs),
        });
      }
      if (input.recursive && isDirectory && (insideVenv || entry.name !== VENV)) await walk(abs, rel);
    }
  };
  await walk(dir, '');

  found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return {
    status: 'SUCCESS',
    reply: { tool: 'fs_list', output: { files: found.slice(0, MAX_LIST_ENTRIES), total_count: found.length } },
  };
}
