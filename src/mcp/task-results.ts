/**
 * A task's outcome as an MCP tool result: the tool's fields plus the task fields, the same JSON
 * as text, `isError` for failures (a Python exception, a failed install, a timeout) with advice.
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { CodegenError, type ErrorInfo } from '../domain/errors.js';
import { taskStateOf, type TaskOutcome, type TaskState } from '../domain/tasks.js';
import { INTERPRETER_DIED, type ToolCall, type ToolReply } from '../domain/tools.js';
import type { TaskRun } from './long-work.js';
import { errorAdvice, errorResult, failedResult, okResult } from './results.js';
import { fileUri, mimeTypeOf } from './uris.js';

type Content = CallToolResult['content'][number];

interface Formatted {
  fields: Record<string, unknown>;
  extra: Content[];
}

/** The tool's own structured fields (and extra content items) for its reply. */
export function replyFields(reply: ToolReply, sessionId: string, call?: ToolCall): Formatted {
  switch (reply.tool) {
    case 'echo':
      return { fields: { message: reply.output.message }, extra: [] };
    case 'fs_read': {
      const path = call?.tool === 'fs_read' ? { path: call.input.path } : {};
      return { fields: { ...path, contents: reply.output.contents, size_bytes: reply.output.size_bytes, encoding: reply.output.encoding }, extra: [] };
    }
    case 'fs_write':
      return { fields: { path: reply.output.path, bytes_written: reply.output.bytes_written }, extra: [] };
    case 'fs_list': {
      const path = call?.tool === 'fs_list' ? { path: call.input.path } : {};
      return { fields: { ...path, files: reply.output.files, total_count: reply.output.total_count }, extra: [] };
    }
    case 'run_python':
      return { fields: { ...reply.output }, extra: [] };
    case 'pkg_install':
    case 'python_reset':
      return { fields: { ...reply.output }, extra: [] };
    case 'python_exec': {
      const { outputs, ...rest } = reply.output;
      // Images are image content (a model sees them); HTML, SVG and Markdown are embedded text resources.
      const extra: Content[] = outputs.map((o, i) =>
        o.mime_type === 'image/png' || o.mime_type === 'image/jpeg'
          ? { type: 'image', data: Buffer.from(o.data).toString('base64'), mimeType: o.mime_type }
          : { type: 'resource', resource: { uri: `session://${sessionId}/outputs/${rest.execution_count}/${i}`, mimeType: o.mime_type, text: Buffer.from(o.data).toString('utf8') } },
      );
      return { fields: { ...rest, outputs: outputs.map((o) => ({ mime_type: o.mime_type, size_bytes: o.data.byteLength })) }, extra };
    }
    case 'artifact_get': {
      const o = reply.output;
      const id = o.artifact_id || (call?.tool === 'artifact_get' ? call.input.artifact_id : '');
      const path = id.startsWith('artifacts/') ? id : `artifacts/${id}`;
      const uri = fileUri(sessionId, path);
      const mimeType = o.content_type || mimeTypeOf(path, false);
      return {
        fields: { artifact_id: id, size_bytes: o.size_bytes, content_type: mimeType, uri },
        extra: [{ type: 'resource', resource: { uri, mimeType, blob: Buffer.from(o.data).toString('base64') } }],
      };
    }
    // The coordinator's own tasks (checkpoint, restore): their tools answer with their own shape.
    case 'checkpoint':
    case 'restore':
      return { fields: { ...reply.output }, extra: [] };
  }
}

/** Why a finished task is a failure, in words the model can act on; undefined for a success. */
function failureAdvice(state: TaskState, reply: ToolReply | undefined): string | undefined {
  switch (state) {
    case 'succeeded':
      return undefined;
    case 'timed_out':
      return 'The task ran out of time and was stopped. Raise timeout_seconds (at most 3600), or do less per call.';
    case 'cancelled':
      return errorAdvice.CANCELLED;
    default:
      if (reply?.tool === 'run_python') {
        return `Python exited with code ${reply.output.exit_code}. The error and traceback are in stderr: fix the code and run it again.`;
      }
      if (reply?.tool === 'python_exec') {
        const o = reply.output;
        if (o.state_lost && o.error_name === INTERPRETER_DIED) return `The interpreter ended during the call and was restarted: ${o.state_lost_reason}. Run your setup code again before continuing.`;
        return `The code raised ${o.error_name}: ${o.error_value}. The traceback says where; the interpreter's other variables are kept, so fix the code and run the failing part again.`;
      }
      if (reply?.tool === 'pkg_install') {
        const failed = reply.output.failed.length > 0 ? ` (${reply.output.failed.join(', ')})` : '';
        return `pip could not install the packages${failed}; its output says why. Check the names and versions, or give index_url.`;
      }
      return 'The task failed; its result says why.';
  }
}

export function taskFields(run: TaskRun, waitLimitMs: number): Record<string, unknown> {
  if (run.kind === 'pending') {
    return {
      task_id: run.taskId,
      session_id: run.sessionId,
      status: run.state,
      done: false,
      message: `Still ${run.state} after ${Math.round(waitLimitMs / 1000)} s. Call task_result with this task_id to wait for the result, task_status to check on it, or task_cancel to stop it.`,
    };
  }
  return { task_id: run.taskId, session_id: run.sessionId, status: taskStateOf(run.outcome), done: true };
}

const errorOf = (outcome: TaskOutcome): ErrorInfo | undefined => (outcome.type === 'error' ? outcome.error : undefined);

/** The tool result for a run: the tool's own fields beside the task's; `extraFields` are added too (task_result's `tool`). */
export function runResult(run: TaskRun, waitLimitMs: number, call?: ToolCall, shape: { extraFields?: Record<string, unknown> } = {}): CallToolResult {
  const base = { ...taskFields(run, waitLimitMs), ...shape.extraFields };
  if (run.kind === 'pending') return okResult(base);
  const error = errorOf(run.outcome);
  if (error) return errorResult(CodegenError.from(error));
  const outcome = run.outcome as Extract<TaskOutcome, { type: 'result' }>;
  const state = taskStateOf(outcome);
  const formatted = outcome.reply ? replyFields(outcome.reply, run.sessionId, call) : { fields: {}, extra: [] };
  const structured = { ...base, ...formatted.fields };
  const advice = failureAdvice(state, outcome.reply);
  if (advice === undefined) return okResult(structured, formatted.extra);
  return failedResult(structured, advice, formatted.extra);
}

/** True when a finished run failed because its session is gone (so a default session can be remade). */
export function sessionWasLost(run: TaskRun): boolean {
  return run.kind === 'done' && run.outcome.type === 'error' && run.outcome.error.code === 'SESSION_NOT_FOUND';
}
