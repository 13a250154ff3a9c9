import { stat } from 'node:fs/promises';
import { checkEnvVars } from '../../domain/env.js';
import { invalidArgument } from '../../domain/errors.js';
import type { RunPythonInput } from '../../domain/tools.js';
import { launch, type LaunchResult } from '../../sandbox/launch.js';
import { resolveInWorkspace } from '../workspace.js';
import {
  baseEnv,
  changedArtifacts,
  emitLog,
  emitProgress,
  notFound,
  outputCapOf,
  sandboxFor,
  snapshotArtifacts,
  statusOf,
  throwIfLimitExceeded,
  timeoutMsOf,
} from './common.js';
import type { ToolContext, ToolExecution } from './types.js';

/**
 * run_python: the session's interpreter on `code` or a workspace `file`, in the
 * sandbox, cwd = workspace. `code` is fed on stdin (`python - args...`): no
 * argument-length limit, and `sys.path[0]` is the workspace as with `-c`.
 * A Python exception is the user's data: exit code != 0 → status FAILURE.
 * With ctx.warm the run is a fork of the session's warm interpreter, which behaves as
 * `python - args` would; the cold path (a fresh sandbox and interpreter) is the fallback.
 */
export async function runRunPython(input: RunPythonInput, ctx: ToolContext): Promise<ToolExecution> {
  const hasCode = typeof input.code === 'string' && input.code !== '';
  const hasFile = typeof input.file === 'string' && input.file !== '';
  if (hasCode === hasFile) throw invalidArgument('code/file', 'give exactly one of code (Python source) or file (a .py path in the workspace)');
  const args = input.args ?? [];
  args.forEach((arg, i) => {
    if (typeof arg !== 'string' || arg.includes('\0')) throw invalidArgument(`args[${i}]`, 'must be a string without NUL bytes');
  });
  const userEnv = checkEnvVars(input.env_vars, 'env_vars');
  const sessionEnv = checkEnvVars(ctx.sessionEnv, 'session env');
  const timeoutMs = timeoutMsOf(input.timeout_seconds, ctx);

  let scriptArgs: string[];
  let stdin: string | undefined;
  if (hasFile) {
    const abs = await resolveInWorkspace(ctx.workspace, input.file!, { field: 'file' });
    const info = await stat(abs).catch(() => null);
    if (info === null) throw notFound('file', input.file!);
    if (!info.isFile()) throw invalidArgument('file', `${JSON.stringify(input.file)} is not a regular file`);
    scriptArgs = [abs, ...args];
  } else {
    scriptArgs = ['-', ...args];
    stdin = input.code!;
  }

  const startedAt = Date.now();
  const before = await snapshotArtifacts(ctx.workspace);
  emitProgress(ctx, 'running', hasFile ? `python ${input.file}` : 'python <code>', 0, startedAt);
  const env = { ...baseEnv(ctx), ...sessionEnv, ...userEnv };
  const sandbox = sandboxFor(ctx, ctx.allowNetwork);
  const onLine = (stream: 'stdout' | 'stderr', line: string): void => emitLog(ctx, stream, line);
  let result: LaunchResult | null = null;
  if (ctx.warm) {
    // The warm path: a fork of the session's waiting interpreter. null = it did not start; run cold.
    result = await ctx.warm.run(
      {
        python: ctx.venvPython,
        workspace: ctx.workspace,
        view: { workspace: sandbox.workspace, hide: sandbox.hide, readOnly: sandbox.readOnly ?? [], allowNetwork: sandbox.allowNetwork },
        env: baseEnv(ctx),
        sessionId: ctx.sessionId,
        ...(ctx.sessionLimits ? { limits: ctx.sessionLimits } : {}),
      },
      {
        argv: scriptArgs,
        ...(stdin !== undefined ? { code: stdin } : {}),
        env,
        cwd: ctx.workspace,
        limits: { memoryBytes: sandbox.memoryBytes, maxProcesses: sandbox.maxProcesses, maxFileBytes: sandbox.maxFileBytes, cpuSeconds: sandbox.cpuSeconds },
        timeoutMs,
        maxOutputBytes: outputCapOf(ctx),
        signal: ctx.signal,
        onLine,
      },
    );
  }
  result ??= await launch({
    command: ctx.venvPython,
    args: scriptArgs,
    cwd: ctx.workspace,
    env,
    timeoutMs,
    maxOutputBytes: outputCapOf(ctx),
    signal: ctx.signal,
    stdin,
    onLine,
    sandbox,
  });
  throwIfLimitExceeded(result);
  const artifacts = changedArtifacts(before, await snapshotArtifacts(ctx.workspace));
  return {
    status: statusOf(result, ctx),
    reply: {
      tool: 'run_python',
      output: { stdout: result.stdout, stderr: result.stderr, exit_code: result.exitCode, duration_ms: result.durationMs, timed_out: result.timedOut },
    },
    artifacts,
  };
}
