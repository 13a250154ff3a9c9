/**
 * Session files as MCP resources. `session://{session_id}/files/{+path}` reads a file through
 * the same tasks as fs_read; resources/list lists the files of the sessions this connection
 * created or used (bounded); both template variables complete (completions.ts). Change
 * notifications and subscriptions: resource-notifier.ts.
 */
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ErrorCode, McpError, type ListResourcesResult, type ReadResourceResult } from '@modelcontextprotocol/sdk/types.js';
import { CodegenError } from '../domain/errors.js';
import type { TaskOutcome } from '../domain/tasks.js';
import type { ToolCall } from '../domain/tools.js';
import { completePath, completeSessionId } from './completions.js';
import type { McpConnection, ToolExtra } from './connection.js';
import { FULL_LISTING, listedFiles, listedSessions, MAX_LISTED_FILES } from './file-listing.js';
import { runTask } from './long-work.js';
import { RESOURCE_NOT_FOUND } from './resource-notifier.js';
import { decodeFilePath, FILE_URI_TEMPLATE, fileUri, mimeTypeOf } from './uris.js';

const LIST_WAIT_MS = 5_000;

export interface ResourceHooks {
  /** resources/list was called (the notifier tells file list changes from then on). */
  onList?(): void;
}

async function runQuick(conn: McpConnection, extra: ToolExtra, sessionId: string, call: ToolCall): Promise<TaskOutcome> {
  const run = await runTask(conn, extra, sessionId, call, Math.min(conn.settings.waitLimitMs, 30_000), { follow: false });
  if (run.kind === 'pending') throw new McpError(ErrorCode.InternalError, `the session ${sessionId} is busy: task ${run.taskId} is still ${run.state}; try again later`);
  return run.outcome;
}

function toMcpError(err: unknown, uri: string): McpError {
  if (err instanceof McpError) return err;
  if (err instanceof CodegenError) {
    if (err.code === 'NOT_FOUND' || err.code === 'SESSION_NOT_FOUND') return new McpError(RESOURCE_NOT_FOUND, `Resource not found: ${uri} (${err.message})`, { uri });
    if (err.code === 'INVALID_ARGUMENT' || err.code === 'PATH_VIOLATION') return new McpError(ErrorCode.InvalidParams, `${uri}: ${err.message}`);
    return new McpError(ErrorCode.InternalError, `${uri}: ${err.code}: ${err.message}`);
  }
  return new McpError(ErrorCode.InternalError, `${uri}: ${err instanceof Error ? err.message : String(err)}`);
}

async function readFile(conn: McpConnection, uri: URL, variables: Record<string, string | string[]>, extra: ToolExtra): Promise<ReadResourceResult> {
  try {
    const raw = variables['session_id'];
    const sessionId = Array.isArray(raw) ? (raw[0] ?? '') : (raw ?? '');
    const path = decodeFilePath(variables['path']);
    await conn.sessions.assertVisible(sessionId);
    const outcome = await runQuick(conn, extra, sessionId, { tool: 'fs_read', input: { path } });
    if (outcome.type === 'error') throw CodegenError.from(outcome.error);
    if (outcome.reply?.tool !== 'fs_read') throw new CodegenError('INTERNAL', `reading ${path} ended with status ${outcome.status}`);
    const o = outcome.reply.output;
    const text = o.encoding === 'utf-8';
    const mimeType = mimeTypeOf(path, text);
    return { contents: [text ? { uri: uri.href, mimeType, text: o.contents } : { uri: uri.href, mimeType, blob: o.contents }] };
  } catch (err) {
    throw toMcpError(err, uri.href);
  }
}

async function listSession(conn: McpConnection, extra: ToolExtra, sessionId: string): Promise<ListResourcesResult['resources']> {
  try {
    const run = await runTask(conn, extra, sessionId, { tool: 'fs_list', input: FULL_LISTING }, LIST_WAIT_MS, { follow: false });
    if (run.kind === 'done' && run.outcome.type === 'error' && run.outcome.error.code === 'SESSION_NOT_FOUND') conn.sessions.forget(sessionId);
    if (run.kind !== 'done' || run.outcome.type !== 'result' || run.outcome.reply?.tool !== 'fs_list') return [];
    return listedFiles(run.outcome.reply.output.files).map((f) => ({ uri: fileUri(sessionId, f.path), name: f.path, mimeType: mimeTypeOf(f.path, true), size: f.size_bytes }));
  } catch (err) {
    if (err instanceof CodegenError && err.code === 'SESSION_NOT_FOUND') conn.sessions.forget(sessionId);
    return [];
  }
}

/** The files of the most recently used sessions, listed in parallel; a busy session is skipped. */
async function listFiles(conn: McpConnection, extra: ToolExtra): Promise<ListResourcesResult> {
  const sessions = listedSessions(conn);
  const lists = await Promise.all(sessions.map((id) => listSession(conn, extra, id)));
  return { resources: lists.flat().slice(0, MAX_LISTED_FILES) };
}

export function registerResources(server: McpServer, conn: McpConnection, hooks: ResourceHooks = {}): void {
  const list = (extra: ToolExtra): Promise<ListResourcesResult> => {
    hooks.onList?.();
    return listFiles(conn, extra);
  };
  server.registerResource(
    'session-files',
    new ResourceTemplate(FILE_URI_TEMPLATE, {
      list,
      complete: {
        session_id: (typed) => completeSessionId(conn, typed),
        path: (typed, context) => completePath(conn, context?.arguments?.['session_id'], typed),
      },
    }),
    {
      title: 'Session files',
      description: 'Files of a session workspace, by session_id and path relative to the workspace.',
    },
    (uri, variables, extra) => readFile(conn, uri, variables, extra),
  );
}
