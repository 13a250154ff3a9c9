import { mkdir, open, stat } from 'node:fs/promises';
import path from 'node:path';
import { CodegenError, invalidArgument } from '../../domain/errors.js';
import type { FsWriteInput } from '../../domain/tools.js';
import { WRITE_FLAGS, relativeToWorkspace, resolveInWorkspace, workspaceRealPath } from '../workspace.js';
import { MAX_FILE_BYTES } from './common.js';
import type { ToolContext, ToolExecution } from './types.js';

// Linear patterns: a pattern of repeated 4-character groups overflows the regex engine's stack on large inputs.
const base64Alphabet = /^[A-Za-z0-9+/]*={0,2}$/;
const base64UrlPattern = /^[A-Za-z0-9_-]*={0,2}$/;

/** Strict base64 (standard or URL-safe alphabet, whitespace ignored): bad input is an error, not silently dropped bytes. */
export function decodeBase64(text: string): Buffer | null {
  const compact = text.replace(/\s+/g, '');
  const body = compact.replace(/=+$/, '');
  // Unpadded: any length but 4n+1; padded: whole groups of four.
  const wellFormed = compact.length === body.length ? body.length % 4 !== 1 : compact.length % 4 === 0;
  if (base64Alphabet.test(compact) && wellFormed) return Buffer.from(compact, 'base64');
  if (base64UrlPattern.test(compact) && body.length % 4 !== 1) return Buffer.from(compact, 'base64url');
  return null;
}

function decodeContents(input: FsWriteInput): Buffer {
  const encoding = (input.encoding ?? '') as string;
  const contents = input.contents ?? '';
  if (typeof contents !== 'string') throw invalidArgument('contents', 'must be a string');
  if (encoding === '' || encoding === 'utf-8' || encoding === 'utf8') return Buffer.from(contents, 'utf8');
  if (encoding === 'base64') {
    const data = decodeBase64(contents);
    if (data === null) throw invalidArgument('contents', "is not valid base64 (encoding is 'base64'; use encoding 'utf-8' for text)");
    return data;
  }
  throw invalidArgument('encoding', `must be 'utf-8' (the default) or 'base64', not ${JSON.stringify(encoding)}`);
}

/** fs_write: write (create or replace) a file; parents are made only with create_dirs. */
export async function runFsWrite(input: FsWriteInput, ctx: ToolContext): Promise<ToolExecution> {
  const data = decodeContents(input);
  if (data.length > MAX_FILE_BYTES) {
    throw new CodegenError('LIMIT_EXCEEDED', `contents: ${data.length} bytes is more than the ${MAX_FILE_BYTES} bytes a single write may hold`);
  }
  const root = await workspaceRealPath(ctx.workspace);
  const abs = await resolveInWorkspace(ctx.workspace, input.path, { forWrite: true });
  if (abs === root) throw invalidArgument('path', `${JSON.stringify(input.path)} is the workspace root, a directory`);
  const parent = path.dirname(abs);
  if (input.create_dirs) {
    try {
      await mkdir(parent, { recursive: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR' || code === 'EEXIST') throw invalidArgument('path', `${JSON.stringify(input.path)}: a parent of it is a file, not a directory`);
      throw err;
    }
  } else {
    const info = await stat(parent).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
      throw err;
    });
    if (info === null) {
      throw new CodegenError(
        'NOT_FOUND',
        `path ${JSON.stringify(input.path)}: the folder ${JSON.stringify(relativeToWorkspace(root, parent))} does not exist; set create_dirs to create it`,
      );
    }
    if (!info.isDirectory()) throw invalidArgument('path', `${JSON.stringify(input.path)}: a parent of it is a file, not a directory`);
  }

  let handle;
  try {
    handle = await open(abs, WRITE_FLAGS, 0o644);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EISDIR') throw invalidArgument('path', `${JSON.stringify(input.path)} is a directory`);
    if (code === 'ELOOP') throw new CodegenError('PATH_VIOLATION', `path ${JSON.stringify(input.path)}: is a symbolic link`);
    if (code === 'ENXIO') throw invalidArgument('path', `${JSON.stringify(input.path)} is not a regular file`);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new CodegenError('NOT_FOUND', `path ${JSON.stringify(input.path)}: its folder does not exist; set create_dirs to create it`);
    throw err;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw invalidArgument('path', `${JSON.stringify(input.path)} is not a regular file`);
    await handle.writeFile(data);
  } finally {
    await handle.close();
  }
  return { status: 'SUCCESS', reply: { tool: 'fs_write', output: { path: relativeToWorkspace(root, abs), bytes_written: data.length } } };
}
