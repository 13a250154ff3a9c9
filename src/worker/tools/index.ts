import type { ToolExecution, ToolRunner } from './types.js';
import { runArtifactGet } from './artifact-get.js';
import { runEcho } from './echo.js';
import { runFsList } from './fs-list.js';
import { runFsRead } from './fs-read.js';
import { runFsWrite } from './fs-write.js';
import { runPkgInstall } from './pkg-install.js';
import { runRunPython } from './run-python.js';
import { runCheckpoint, runRestore } from './checkpoint.js';
import { runPythonExec, runPythonReset } from './python-exec.js';
import { CodegenError, type ErrorCode } from '../../domain/errors.js';

export type { ToolContext, ToolExecution, ToolRunner } from './types.js';

/** Run one tool call in a session's workspace. Bad input, paths and missing files throw CodegenError. */
export const runTool: ToolRunner = async (call, ctx): Promise<ToolExecution> => {
  try {
    return await dispatch(call, ctx);
  } catch (err) {
    throw toolError(err);
  }
};

/** What a file system error means for the caller: its errno says which mistake or limit it was. */
const errnoCodes: Record<string, [ErrorCode, string]> = {
  ENAMETOOLONG: ['INVALID_ARGUMENT', 'a path or a name in it is too long'],
  ENOSPC: ['LIMIT_EXCEEDED', "the session's disk is full (max_disk_per_session)"],
  EDQUOT: ['LIMIT_EXCEEDED', "the session's disk quota is used up (max_disk_per_session)"],
  EFBIG: ['LIMIT_EXCEEDED', 'the file is larger than the file size limit'],
  EACCES: ['PERMISSION_DENIED', 'permission denied'],
  EPERM: ['PERMISSION_DENIED', 'operation not permitted'],
  EROFS: ['PERMISSION_DENIED', 'that place is read-only'],
  EISDIR: ['FAILED_PRECONDITION', 'it is a folder'],
  ENOTDIR: ['FAILED_PRECONDITION', 'a part of the path is a file, not a folder'],
  ENOTEMPTY: ['FAILED_PRECONDITION', 'the folder is not empty'],
  EEXIST: ['FAILED_PRECONDITION', 'it already exists'],
  ENOENT: ['NOT_FOUND', 'no such file or folder'],
  ELOOP: ['PATH_VIOLATION', 'too many symbolic links'],
  EMFILE: ['UNAVAILABLE', 'too many open files; retry'],
  ENFILE: ['UNAVAILABLE', 'too many open files; retry'],
  EMLINK: ['LIMIT_EXCEEDED', 'too many links'],
};

export function toolError(err: unknown): unknown {
  if (err instanceof CodegenError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const known = code ? errnoCodes[code] : undefined;
  if (!known) return err;
  return new CodegenError(known[0], `${known[1]} (${code})`, { cause: err });
}

function dispatch(call: Parameters<ToolRunner>[0], ctx: Parameters<ToolRunner>[1]): Promise<ToolExecution> {
  switch (call.tool) {
    case 'echo':
      return runEcho(call.input, ctx);
    case 'fs_read':
      return runFsRead(call.input, ctx);
    case 'fs_write':
      return runFsWrite(call.input, ctx);
    case 'fs_list':
      return runFsList(call.input, ctx);
    case 'run_python':
      return runRunPython(call.input, ctx);
    case 'pkg_install':
      return runPkgInstall(call.input, ctx);
    case 'artifact_get':
      return runArtifactGet(call.input, ctx);
    case 'python_exec':
      return runPythonExec(call.input, ctx);
    case 'python_reset':
      return runPythonReset(call.input, ctx);
    case 'checkpoint':
      return runCheckpoint(call.input, ctx);
    case 'restore':
      return runRestore(call.input, ctx);
    default: {
      const unknown: { tool?: unknown } = call;
      throw new CodegenError('UNIMPLEMENTED', `unknown tool ${JSON.stringify(unknown.tool)}`);
    }
  }
}
