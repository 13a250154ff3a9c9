/**
 * How tool answers look: `structuredContent` plus the same JSON as text, and failures as
 * `isError` results whose text tells the model what to fix. Nothing here throws.
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { toErrorInfo, type ErrorCode, type ErrorInfo } from '../domain/errors.js';

type Content = CallToolResult['content'][number];

/** What the model should do about each kind of failure: a new code does not compile without its advice. */
export const errorAdvice = {
  INVALID_ARGUMENT: 'Fix the argument named above and call the tool again.',
  PATH_VIOLATION: 'Paths are relative to the session workspace and must stay inside it: no absolute paths, no "..".',
  NOT_FOUND: 'Check the name: fs_list shows the files of the workspace (artifacts live under artifacts/).',
  SESSION_NOT_FOUND:
    "The session does not exist (it may have been destroyed). Call session_list to see sessions, session_create to make one, or omit session_id to use this connection's default session.",
  TASK_NOT_FOUND: 'No such task: use a task_id returned by a tool call of this server.',
  WORKER_LOST: 'The worker running the session went away. Call again; if the session is gone, create a new one.',
  UNAVAILABLE: 'The worker or coordinator cannot be reached right now. Retry shortly.',
  CAPACITY_EXHAUSTED: 'No worker has room right now. Destroy sessions you no longer need (session_list, session_destroy) or retry shortly.',
  LIMIT_EXCEEDED: 'A resource limit was hit (time, memory, output or file size). Do less per call, print less, or raise timeout_seconds.',
  FAILED_PRECONDITION: 'The session cannot take this call in its current state; check it with session_status.',
  ALREADY_EXISTS: 'Something with that name already exists; choose another name.',
  PERMISSION_DENIED: 'This session does not allow that; create a session that does (for example with allow_network) and use it.',
  UNAUTHENTICATED: 'The server refused the credentials.',
  UNIMPLEMENTED: 'This feature is not implemented yet.',
  CANCELLED: 'The task was cancelled before it finished.',
  DATA_LOSS: 'The checkpoint is damaged (the checksum named above does not match) and cannot be restored; nothing was changed. Restore another checkpoint (checkpoint_list shows them).',
  INTERNAL: 'An internal error occurred. Retry; if it persists, report it with the message above.',
} as const satisfies Record<ErrorCode, string>;

const json = (value: unknown): string => JSON.stringify(value);

/** A successful answer: structured content and the same JSON as text, plus any extra content items. */
export function okResult(structured: Record<string, unknown>, extra: Content[] = []): CallToolResult {
  return { content: [{ type: 'text', text: json(structured) }, ...extra], structuredContent: structured };
}

/** A finished call whose outcome is a failure the caller can act on, with its structured content. */
export function failedResult(structured: Record<string, unknown>, advice: string, extra: Content[] = []): CallToolResult {
  return {
    content: [{ type: 'text', text: json(structured) }, ...extra, { type: 'text', text: advice }],
    structuredContent: structured,
    isError: true,
  };
}

/** A failure without a result (bad arguments, unknown session...): text only, saying what to fix. */
export function errorResult(err: unknown): CallToolResult {
  const info: ErrorInfo = toErrorInfo(err);
  const details = info.details ? `\n${info.details}` : '';
  return { content: [{ type: 'text', text: `${info.code}: ${info.message}${details}\n${errorAdvice[info.code]}` }], isError: true };
}

