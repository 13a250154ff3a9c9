/**
 * One MCP server per MCP connection (stdio, or one Streamable HTTP session): the shared tool
 * registry, the session-file resources (with change notifications, subscriptions and
 * completion), the prompts, logging, and the connection's default session.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SetLevelRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { packageVersion } from '../config/package-info.js';
import type { CoordinatorPort } from '../runtime/port.js';
import { componentLogger, type Logger } from '../log/logger.js';
import { McpConnection } from './connection.js';
import type { McpCoordinatorPort } from './port.js';
import { registerPrompts } from './prompts.js';
import { ResourceNotifier } from './resource-notifier.js';
import { ResourceWatch } from './resource-watch.js';
import { registerResources } from './resources.js';
import { registerTools, toolSpecs } from './tools.js';
import { refuseUnknownTools } from './unknown-tools.js';

export interface McpOptions {
  /** The in-process coordinator's port, or the gRPC remote port (its reads are asynchronous). */
  coordinator: CoordinatorPort | McpCoordinatorPort;
  logger: Logger;
  /** How long a tool call waits for its task before answering {task_id, status}. Default 50_000. */
  waitLimitMs: number;
  /** Also register the dotted tool names of the original design (fs.read, run.python, ...). */
  legacyToolNames: boolean;
  /** How long after the connection closes its default session is destroyed. Default 2_000. */
  defaultSessionGraceMs?: number;
  /** Progress heartbeat while a call waits. Default 10_000 (the spec asks for one at least every 15 s). */
  heartbeatMs?: number;
  /** Whether pkg_install can reach a package index (its openWorldHint). Default true. */
  packageIndexReachable?: boolean;
  /** Streamable HTTP: the connection is idle (and closed) after this long with no open request. 0: never. */
  idleMs?: number;
  /**
   * The watch over session files that the process's connections share, so one connection hears
   * of what another changed. Absent: each connection has its own (it hears of its own changes).
   */
  resourceWatch?: ResourceWatch;
  /** Resource notifications within this window are sent together. Default 500. */
  resourceNotifyWindowMs?: number;
  /** resources/subscribe URIs one connection may hold. Default 100. */
  maxResourceSubscriptions?: number;
}

export const defaultMcpOptions = {
  waitLimitMs: 50_000,
  defaultSessionGraceMs: 2_000,
  heartbeatMs: 10_000,
  maxLogLinesPerTask: 2_000,
  maxFollowedTasks: 64,
  packageIndexReachable: true,
  resourceNotifyWindowMs: 500,
  maxResourceSubscriptions: 100,
} as const;

const instructions = [
  'codegen-mcp runs Python in isolated sessions: each session has its own workspace folder and virtual environment.',
  "Tools take an optional session_id; without it they use this connection's own default session, created on first use and destroyed when the connection closes.",
  'Typical flow: fs_write a file, run_python it, pkg_install what it needs, put outputs under artifacts/ and fetch them with artifact_get.',
  'A call that runs longer than the wait limit answers {task_id, status}: poll it with task_result (or task_status, task_cancel).',
  "Session files are resources (session://{session_id}/files/{path}): subscribe to one to hear when a tool or a run changes it.",
].join('\n');

export function createMcpServer(opts: McpOptions & { connectionId: string }): { server: McpServer; connection: McpConnection; close(): Promise<void> } {
  const logger = componentLogger(opts.logger, 'mcp', { connection: opts.connectionId });
  const ownWatch = opts.resourceWatch ? undefined : new ResourceWatch({ logger });
  const watch = opts.resourceWatch ?? ownWatch!;
  const port = opts.coordinator as McpCoordinatorPort;
  const conn = new McpConnection(
    opts.connectionId,
    // The connection's calls go through the watch, which sees the sessions and files they change.
    watch.observe(port),
    logger,
    {
      waitLimitMs: opts.waitLimitMs > 0 ? opts.waitLimitMs : defaultMcpOptions.waitLimitMs,
      heartbeatMs: opts.heartbeatMs ?? defaultMcpOptions.heartbeatMs,
      maxLogLinesPerTask: defaultMcpOptions.maxLogLinesPerTask,
      maxFollowedTasks: defaultMcpOptions.maxFollowedTasks,
    },
    opts.defaultSessionGraceMs ?? defaultMcpOptions.defaultSessionGraceMs,
    opts.idleMs ?? 0,
  );
  const server = new McpServer(
    { name: 'codegen-mcp', title: 'codegen-mcp: isolated Python sessions', version: packageVersion() },
    { capabilities: { tools: {}, resources: { subscribe: true, listChanged: true }, prompts: {}, completions: {}, logging: {} }, instructions },
  );
  // One server per connection, so the level the client sets is this connection's.
  server.server.setRequestHandler(SetLevelRequestSchema, (request) => {
    conn.logLevel = request.params.level;
    return {};
  });
  conn.notify = (n) => server.server.notification(n);
  registerTools(server, conn, toolSpecs({ packageIndexReachable: opts.packageIndexReachable ?? defaultMcpOptions.packageIndexReachable }), opts.legacyToolNames);
  refuseUnknownTools(server);
  const notifier = new ResourceNotifier(server, conn, watch, port, {
    windowMs: opts.resourceNotifyWindowMs ?? defaultMcpOptions.resourceNotifyWindowMs,
    maxSubscriptions: opts.maxResourceSubscriptions ?? defaultMcpOptions.maxResourceSubscriptions,
  });
  registerResources(server, conn, { onList: () => notifier.listed() });
  server.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    await notifier.subscribe(request.params.uri);
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    notifier.unsubscribe(request.params.uri);
    return {};
  });
  registerPrompts(server, conn);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      notifier.close();
      try {
        await server.close();
      } catch (err) {
        logger.debug({ err }, 'closing the MCP server failed');
      }
      conn.stopFollowing();
      await conn.sessions.close();
      ownWatch?.close();
    })());
  return { server, connection: conn, close };
}
