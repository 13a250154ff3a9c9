import type { ToolExecution, ToolRunner } from './types.js';
import { runArtifactGet } from './artifact-get.js';
import { runEcho } from './echo.js';
import { runFsList } from './fs-list.js';
import { runFsRead } from './fs-read.js';
import { runFsWrite } from './fs-write.js';
import { runPkgInstall } from './pkg-install.js';
import { runRunPython } from './run-python.js';
import { CodegenError } from '../../domain/errors.js';

export type { ToolContext, ToolExecution, ToolRunner } from './types.js';

/** Run one tool call in a session's workspace. Bad input, paths and missing files throw CodegenError. */
export const runTool: ToolRunner = async (call, ctx): Promise<ToolExecution> => {
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
    default: {
      const unknown: { tool?: unknown } = call;
      throw new CodegenError('UNIMPLEMENTED', `unknown tool ${JSON.stringify(unknown.tool)}`);
    }
  }
};
