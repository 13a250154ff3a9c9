/**
 * One MCP server per MCP connection (stdio, or one Streamable HTTP session): the shared tool
 * registry, the session-file resources, logging, and the connection's default session.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SetLevelRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { packageVersion } from '../config/package-info.js';
import type { CoordinatorPort } from '../runtime/port.js';
import { componentLogger, type Logger } from '../log/logger.js';
import { McpConnection } from './connection.js';
import type { McpCoordinatorPort } from './port.js';
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
}

export const defaultMcpOptions = {
  waitLimitMs: 50_000,
  defaultSessionGraceMs: 2_000,
  heartbeatMs: 10_000,
  maxLogLinesPerTask: 2_000,
  maxFollowedTasks: 64,
  packageIndexReachable: true,
} as const;

const instructions = [
  'codegen-mcp runs Python in isolated sessions: each session has its own workspace folder and virtual environment.',
  "Tools take an optional session_id; without it they use this connection's own default session, created on first use and destroyed when the connection closes.",
  'Typical flow: fs_write a file, run_python it, pkg_install what it needs, put outputs under artifacts/ and fetch them with artifact_get.',
  'A call that runs longer than the wait limit answers {task_id, status}: poll it with task_result (or task_status, task_cancel).',
].join('\n');

export function createMcpServer(opts: McpOptions & { connectionId: string }): { server: McpServer; connection: McpConnection; close(): Promise<void> } {
  const logger = componentLogger(opts.logger, 'mcp', { connection: opts.connectionId });
  const conn = new McpConnection(
    opts.connectionId,
    opts.coordinator as McpCoordinatorPort,
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
    { capabilities: { tools: {}, resources: {}, logging: {} }, instructions },
  );
  // One server per connection, so the level the client sets is this connection's.
  server.server.setRequestHandler(SetLevelRequestSchema, (request) => {
    conn.logLevel = request.params.level;
    return {};
  });
  conn.notify = (n) => server.server.notification(n);
  registerTools(server, conn, toolSpecs({ packageIndexReachable: opts.packageIndexReachable ?? defaultMcpOptions.packageIndexReachable }), opts.legacyToolNames);
  refuseUnknownTools(server);
  registerResources(server, conn);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      try {
        await server.close();
      } catch (err) {
        logger.debug({ err }, 'closing the MCP server failed');
      }
      conn.stopFollowing();
      await conn.sessions.close();
    })());
  return { server, connection: conn, close };
}
