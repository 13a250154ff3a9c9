import { checkEnvVars } from '../../domain/env.js';
import { CodegenError } from '../../domain/errors.js';
import type { TaskStatus } from '../../domain/tasks.js';
import { INTERPRETER_DIED, type PythonExecInput, type PythonResetInput } from '../../domain/tools.js';
import type { ExecResult } from '../../sandbox/interpreter/sessions.js';
import { baseEnv, changedArtifacts, emitLog, outputCapOf, sandboxFor, snapshotArtifacts, timeoutMsOf } from './common.js';
import type { ToolContext, ToolExecution } from './types.js';

const interpreterOf = (ctx: ToolContext) => {
  if (!ctx.interpreter) throw new CodegenError('UNAVAILABLE', `session ${ctx.sessionId} has no interpreter running now (it is starting or shutting down); retry`);
  return ctx.interpreter;
};

/** Cancel wins over timeout; then a dead interpreter or an exception in the code is a FAILURE. */
function statusOf(r: ExecResult): TaskStatus {
  if (r.cancelled) return 'CANCELLED';
  if (r.timedOut) return 'TIMEOUT';
  return r.died !== undefined || (r.reply?.errorName ?? '') !== '' ? 'FAILURE' : 'SUCCESS';
}

/**
 * python_exec: code in the session's persistent interpreter (variables, imports and definitions
 * stay between calls), in the session's sandbox with its limits and environment. An exception,
 * a SyntaxError included, is the user's data: a completed call, FAILURE, with the traceback.
 */
export async function runPythonExec(input: PythonExecInput, ctx: ToolContext): Promise<ToolExecution> {
  const interpreter = interpreterOf(ctx);
  const timeoutMs = timeoutMsOf(input.timeout_seconds, ctx);
  const sessionEnv = checkEnvVars(ctx.sessionEnv, 'session env');
  const sandbox = sandboxFor(ctx, ctx.allowNetwork);
  // No 'running' progress: a call is a few milliseconds, and the task's own state says it runs.
  const before = await snapshotArtifacts(ctx.workspace);
  const r = await interpreter.exec(
    {
      python: ctx.venvPython,
      workspace: ctx.workspace,
      view: { workspace: sandbox.workspace, hide: sandbox.hide, readOnly: sandbox.readOnly ?? [], allowNetwork: sandbox.allowNetwork },
      // Figures render to PNG outputs, never to a display the sandbox does not have.
      env: { ...baseEnv(ctx), ...sessionEnv, MPLBACKEND: 'Agg' },
      rlimits: { memoryBytes: sandbox.memoryBytes, maxProcesses: sandbox.maxProcesses, maxFileBytes: sandbox.maxFileBytes },
      sessionId: ctx.sessionId,
      ...(ctx.sessionLimits ? { limits: ctx.sessionLimits } : {}),
    },
    { code: input.code, timeoutMs, maxOutputBytes: outputCapOf(ctx), signal: ctx.signal, onLine: (stream, line) => emitLog(ctx, stream, line) },
  );
  const reply = r.reply;
  const died = r.died !== undefined ? { error_name: INTERPRETER_DIED, error_value: r.stateLostReason, traceback: '' } : null;
  return {
    status: statusOf(r),
    reply: {
      tool: 'python_exec',
      output: {
        stdout: r.stdout,
        stderr: r.stderr,
        result: reply?.result ?? '',
        outputs: reply?.outputs ?? [],
        error_name: died?.error_name ?? reply?.errorName ?? '',
        error_value: died?.error_value ?? reply?.errorValue ?? '',
        traceback: died?.traceback ?? reply?.traceback ?? '',
        duration_ms: r.durationMs,
        state_lost: r.stateLost,
        execution_count: reply?.executionCount ?? 0,
        state_lost_reason: r.stateLostReason,
      },
    },
    artifacts: changedArtifacts(before, await snapshotArtifacts(ctx.workspace)),
  };
}

/** python_reset: the session's interpreter is discarded; the next python_exec starts a fresh one. */
export async function runPythonReset(_input: PythonResetInput, ctx: ToolContext): Promise<ToolExecution> {
  const reset = ctx.interpreter ? await ctx.interpreter.reset() : false;
  return { status: 'SUCCESS', reply: { tool: 'python_reset', output: { reset } } };
}
