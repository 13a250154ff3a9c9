import { open } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import { CodegenError, invalidArgument } from '../../domain/errors.js';
import type { FsReadInput } from '../../domain/tools.js';
import { READ_FLAGS, resolveInWorkspace } from '../workspace.js';
import { MAX_FILE_BYTES, notFound } from './common.js';
import type { ToolContext, ToolExecution } from './types.js';

/** Read a regular file of at most `max` bytes through a resolved path (O_NOFOLLOW). */
export async function readRegularFile(abs: string, field: string, userPath: string, max = MAX_FILE_BYTES): Promise<Buffer> {
  let handle;
  try {
    handle = await open(abs, READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw notFound(field, userPath);
    if (code === 'ELOOP') throw new CodegenError('PATH_VIOLATION', `${field} ${JSON.stringify(userPath)}: is a symbolic link`);
    throw err;
  }
  try {
    const info = await handle.stat();
    if (info.isDirectory()) throw invalidArgument(field, `${JSON.stringify(userPath)} is a directory; use fs_list`);
    if (!info.isFile()) throw invalidArgument(field, `${JSON.stringify(userPath)} is not a regular file`);
    if (info.size > max) {
      throw new CodegenError('LIMIT_EXCEEDED', `${field} ${JSON.stringify(userPath)}: the file has ${info.size} bytes, more than the ${max} bytes that can be read at once`);
    }
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** fs_read: the file's contents, as text when the bytes are valid UTF-8, else base64. */
export async function runFsRead(input: FsReadInput, ctx: ToolContext): Promise<ToolExecution> {
  const abs = await resolveInWorkspace(ctx.workspace, input.path);
  const data = await readRegularFile(abs, 'path', input.path);
  const text = isUtf8(data);
  return {
    status: 'SUCCESS',
    reply: {
      tool: 'fs_read',
      output: { contents: text ? data.toString('utf8') : data.toString('base64'), size_bytes: data.length, encoding: text ? 'utf-8' : 'base64' },
    },
  };
}
