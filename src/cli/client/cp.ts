/**
 * `cp SRC DST`: one file between this machine and a session, either way (or between two
 * sessions), byte for byte: writes go as base64, reads come back as text only when the file is
 * valid UTF-8. A session's side is `SESSION_ID:path`; `-` is stdin or stdout.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CodegenError } from '../../domain/errors.js';
import type { Client } from './connection.js';
import { CliError, UsageError } from './errors.js';
import { bytes, type Output } from './output.js';
import { baseName, joinPath, parseLocation, type Location } from './session-path.js';
import { callTool } from './tasks.js';

/**
 * The most one copy carries: a write travels base64 (4/3 of the bytes) in one gRPC message, and
 * the coordinator takes messages of at most 64 MiB.
 */
export const MAX_COPY_BYTES = 47 * 1024 * 1024;

type SessionLocation = Extract<Location, { kind: 'session' }>;

const shown = (l: SessionLocation): string => `${l.sessionId}:${l.path}`;

async function readSide(client: Client, src: Location): Promise<{ data: Buffer; name: string }> {
  if (src.kind === 'session') {
    // A read travels base64 too: a file too large for one message is refused here, before the
    // worker tries (its oversized reply would cost it its link to the coordinator).
    const parent = src.path.includes('/') ? src.path.slice(0, src.path.lastIndexOf('/')) : '';
    const listed = await callTool(client.port, src.sessionId, { tool: 'fs_list', input: { path: parent, recursive: false, pattern: '' } }).catch(() => undefined);
    const size = listed?.files.find((f) => f.name === baseName(src.path))?.size_bytes ?? 0;
    if (size > MAX_COPY_BYTES) throw new CliError(`cp: ${shown(src)} has ${size} bytes, more than the ${MAX_COPY_BYTES} bytes (47 MiB) one copy carries`, 1, 'LIMIT_EXCEEDED');
    const r = await callTool(client.port, src.sessionId, { tool: 'fs_read', input: { path: src.path } }).catch((err: unknown) => {
      if (err instanceof CodegenError && err.code === 'NOT_FOUND') throw new CliError(`cp: ${shown(src)}: no such file in the session ("codegen-mcp ls ${src.sessionId}:" lists its files)`, 1, err.code);
      throw err;
    });
    return { data: r.encoding === 'base64' ? Buffer.from(r.contents, 'base64') : Buffer.from(r.contents, 'utf8'), name: baseName(src.path) };
  }
  if (src.path === '-') return { data: readFileSync(0), name: '' };
  let info;
  try {
    info = statSync(src.path);
  } catch (err) {
    throw new CliError(`cp: cannot read ${src.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; a session's file is written SESSION_ID:path`);
  }
  if (info.isDirectory()) throw new CliError(`cp: ${src.path} is a directory; cp copies one file at a time`);
  return { data: readFileSync(src.path), name: path.basename(src.path) };
}

/** Whether `p` is a folder of the session (then the file goes into it, as cp does). */
async function isSessionFolder(client: Client, sessionId: string, p: string): Promise<boolean> {
  try {
    await callTool(client.port, sessionId, { tool: 'fs_list', input: { path: p, recursive: false, pattern: '' } });
    return true;
  } catch (err) {
    if (err instanceof CodegenError && (err.code === 'NOT_FOUND' || err.code === 'INVALID_ARGUMENT')) return false;
    throw err;
  }
}

async function writeSide(client: Client, out: Output, dst: Location, data: Buffer, name: string): Promise<string> {
  if (dst.kind === 'session') {
    if (data.length > MAX_COPY_BYTES) throw new CliError(`cp: ${data.length} bytes is more than the ${MAX_COPY_BYTES} bytes (47 MiB) one copy into a session carries; split the file`, 1, 'LIMIT_EXCEEDED');
    let target = dst.path;
    if (target === '' || target.endsWith('/') || (await isSessionFolder(client, dst.sessionId, target))) {
      if (!name) throw new UsageError(`cp: name the file to write, e.g. ${dst.sessionId}:data.bin`);
      target = joinPath(target, name);
    }
    await callTool(client.port, dst.sessionId, { tool: 'fs_write', input: { path: target, contents: data.toString('base64'), create_dirs: true, encoding: 'base64' } });
    return `${dst.sessionId}:${target}`;
  }
  if (dst.path === '-') {
    out.stdout(data);
    return '-';
  }
  let target = dst.path;
  const isDir = (() => {
    try {
      return statSync(target).isDirectory();
    } catch {
      return false;
    }
  })();
  if (isDir || target.endsWith('/')) {
    if (!name) throw new UsageError('cp: name the local file to write');
    target = path.join(target, name);
  }
  try {
    writeFileSync(target, data);
  } catch (err) {
    throw new CliError(`cp: cannot write ${target}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return target;
}

export async function copy(client: Client, out: Output, srcArg: string, dstArg: string): Promise<number> {
  const src = parseLocation(srcArg);
  const dst = parseLocation(dstArg);
  if (src.kind === 'local' && dst.kind === 'local') throw new UsageError('cp: one of SRC and DST must be a session path, SESSION_ID:path ("codegen-mcp sessions" lists yours)');
  if (dst.kind === 'local' && dst.path === '-' && out.json) throw new UsageError('cp: --json and DST "-" would both write to stdout; give one');
  if (src.kind === 'session' && src.path === '') throw new UsageError(`cp: ${srcArg} is the session's root folder; name a file (cp copies one file)`);
  const progress = out.progress(`copying ${src.kind === 'session' ? shown(src) : src.path}`);
  try {
    const { data, name } = await readSide(client, src);
    // A local write is quick, and `-` writes to the terminal the spinner is drawn on.
    if (dst.kind === 'local') progress.stop();
    else progress.update(`copying ${bytes(data.length)} to ${shown(dst)}`);
    const written = await writeSide(client, out, dst, data, name);
    if (out.json) out.doc({ source: srcArg, destination: written, bytes: data.length });
    return 0;
  } finally {
    progress.stop();
  }
}
