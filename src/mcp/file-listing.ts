/**
 * What the session-file resources see of a workspace: which sessions and files resources/list
 * shows, and a quiet way to run one small task (a listing) with no MCP request behind it.
 * Shared by resources/list, the change watch and completion, so all three agree.
 */
import type { TaskOutcome } from '../domain/tasks.js';
import type { FileInfo, FsListInput, ToolCall } from '../domain/tools.js';
import type { CoordinatorPort } from '../runtime/port.js';
import type { McpConnection } from './connection.js';

/** resources/list shows the files of this many of the connection's most recently used sessions. */
export const MAX_LISTED_SESSIONS = 10;
/** ... and at most this many files in all (and of each session). */
export const MAX_LISTED_FILES = 500;

/** The listing resources/list makes of a session: everything under the root, recursively. */
export const FULL_LISTING: FsListInput = { path: '', recursive: true, pattern: '' };

export const isFullListing = (call: ToolCall): boolean =>
  call.tool === 'fs_list' && (call.input.path ?? '') === '' && call.input.recursive === true && (call.input.pattern ?? '') === '';

const inVenv = (path: string): boolean => path === '.venv' || path.startsWith('.venv/');

/** The files of a listing that are resources: no folders, nothing of the session's interpreter. */
export const resourceFiles = (files: FileInfo[]): FileInfo[] => files.filter((f) => !f.is_directory && !inVenv(f.path));

/** The files of a full listing that resources/list shows. */
export const listedFiles = (files: FileInfo[]): FileInfo[] => resourceFiles(files).slice(0, MAX_LISTED_FILES);

/** The sessions whose files resources/list shows: the connection's most recently used first. */
export const listedSessions = (conn: McpConnection): string[] => conn.sessions.knownSessions().reverse().slice(0, MAX_LISTED_SESSIONS);

/**
 * Runs one task with no MCP request behind it (no progress, no log messages) and waits up to
 * `waitMs` for its outcome; 'timeout' when it has not ended by then (the task goes on).
 * Rejects as the port does (an unknown session, a refusal).
 */
export async function runQuiet(port: CoordinatorPort, sessionId: string, call: ToolCall, waitMs: number): Promise<TaskOutcome | 'timeout'> {
  let settle!: (o: TaskOutcome | 'timeout') => void;
  const ended = new Promise<TaskOutcome | 'timeout'>((resolve) => (settle = resolve));
  const handle = await port.submitTask({ sessionId, call }, (update) => {
    if (update.type === 'outcome') settle(update.outcome);
  });
  const timer = setTimeout(() => settle('timeout'), waitMs);
  try {
    return await ended;
  } finally {
    clearTimeout(timer);
    try {
      handle.detach();
    } catch {
      // detaching a finished task is harmless
    }
  }
}
