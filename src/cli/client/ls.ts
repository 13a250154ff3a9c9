/** `ls [SESSION_ID:][path]`: a session's folder (fs_list), or one file of it. */
import { CodegenError } from '../../domain/errors.js';
import type { FileInfo } from '../../domain/tools.js';
import type { Client } from './connection.js';
import { CliError, UsageError } from './errors.js';
import { bytes, table, type Output } from './output.js';
import { baseName, normalise, parseLocation } from './session-path.js';
import { callTool } from './tasks.js';

export interface LsFlags {
  session?: string;
  recursive: boolean;
  pattern?: string;
  long: boolean;
}

/** The session and the path `ls` was given (the SESSION_ID: prefix, or --session and a plain path). */
function target(arg: string | undefined, flags: LsFlags): { sessionId: string; path: string } {
  const loc = arg === undefined ? undefined : parseLocation(arg);
  if (loc?.kind === 'session') {
    if (flags.session && flags.session !== loc.sessionId) throw new UsageError(`ls: ${arg} names session ${loc.sessionId} but --session says ${flags.session}; give one`);
    return { sessionId: loc.sessionId, path: loc.path };
  }
  if (!flags.session) throw new UsageError('ls: name the session: ls SESSION_ID:[path] or ls --session ID [path] ("codegen-mcp sessions" lists yours)');
  return { sessionId: flags.session, path: normalise(loc?.path ?? '') };
}

export async function listFiles(client: Client, out: Output, arg: string | undefined, flags: LsFlags): Promise<number> {
  const { sessionId, path } = target(arg, flags);
  const list = (p: string) => callTool(client.port, sessionId, { tool: 'fs_list', input: { path: p, recursive: flags.recursive, pattern: flags.pattern ?? '' } });
  let files: FileInfo[];
  let total: number;
  try {
    const r = await list(path);
    files = r.files;
    total = r.total_count;
  } catch (err) {
    if (err instanceof CodegenError && err.code === 'NOT_FOUND') throw new CliError(`ls: ${sessionId}:${path}: no such file or folder in the session`, 1, err.code);
    // A file, not a folder: show that one entry, as ls does.
    if (!(err instanceof CodegenError && err.code === 'INVALID_ARGUMENT' && /is a file/.test(err.message))) throw err;
    const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    const r = await callTool(client.port, sessionId, { tool: 'fs_list', input: { path: parent, recursive: false, pattern: '' } });
    files = r.files.filter((f) => f.name === baseName(path));
    total = files.length;
  }
  if (out.json) {
    out.doc({ session_id: sessionId, path, files, total_count: total });
    return 0;
  }
  const name = (f: FileInfo) => `${flags.recursive ? f.path : f.name}${f.is_directory ? '/' : ''}`;
  if (!flags.long) for (const f of files) out.say(name(f));
  else if (files.length) out.say(table(files.map((f) => [f.is_directory ? '-' : bytes(f.size_bytes), new Date(f.modified_time_ms).toISOString().slice(0, 19).replace('T', ' '), name(f)])));
  if (total > files.length) out.note(`(${total - files.length} more not shown)`);
  return 0;
}
