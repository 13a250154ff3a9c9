/**
 * What one MCP connection holds: its port, its sessions (the default one included), the log
 * level its client asked for, and its settings. Created by createMcpServer, one per connection.
 */
import type { LoggingLevel, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { Logger } from '../log/logger.js';
import { ConnectionSessions } from './default-session.js';
import type { McpCoordinatorPort } from './port.js';

export type ToolExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const severity: Record<LoggingLevel, number> = {
  debug: 0,
  info: 1,
  notice: 2,
  warning: 3,
  error: 4,
  critical: 5,
  alert: 6,
  emergency: 7,
};

export interface ConnectionSettings {
  waitLimitMs: number;
  heartbeatMs: number;
  /** Log notifications sent per task before the rest of its output is left to the result. */
  maxLogLinesPerTask: number;
  /** Tasks past their call's wait limit whose updates one connection keeps streaming. */
  maxFollowedTasks: number;
}

export class McpConnection {
  readonly sessions: ConnectionSessions;
  /** The level the client set with logging/setLevel; undefined sends everything. */
  logLevel: LoggingLevel | undefined;

  constructor(
    readonly id: string,
    readonly port: McpCoordinatorPort,
    readonly logger: Logger,
    readonly settings: ConnectionSettings,
    graceMs: number,
    /** An HTTP connection with no open request for this long says so (0: never, stdio). */
    idleMs = 0,
  ) {
    this.sessions = new ConnectionSessions(port, id, logger, graceMs, idleMs);
  }

  wantsLog(level: LoggingLevel): boolean {
    return this.logLevel === undefined || severity[level] >= severity[this.logLevel];
  }

  /** Sends a log message tied to the request being served (on its stream, over HTTP). Never throws. */
  log(extra: ToolExtra, level: LoggingLevel, loggerName: string, data: unknown): void {
    if (!this.wantsLog(level)) return;
    extra.sendNotification({ method: 'notifications/message', params: { level, logger: loggerName, data } }).catch(() => undefined);
  }

  /** Sends the connection's own notifications (the server sets it): over HTTP, on the standalone GET stream. */
  notify: (notification: ServerNotification) => Promise<void> = () => Promise.resolve();

  /** A log message tied to no request: for a task still running after its call answered. Never throws. */
  logToConnection(level: LoggingLevel, loggerName: string, data: unknown): void {
    if (!this.wantsLog(level)) return;
    this.notify({ method: 'notifications/message', params: { level, logger: loggerName, data } }).catch(() => undefined);
  }

  /** Tasks whose call answered {task_id} and whose updates this connection still streams (their detach). */
  private readonly followed = new Map<string, () => void>();

  /** Streams a task's updates after its call answered; false when the connection follows too many already. */
  follow(taskId: string, detach: () => void): boolean {
    if (this.closed || this.followed.size >= this.settings.maxFollowedTasks) return false;
    this.followed.set(taskId, detach);
    return true;
  }

  unfollow(taskId: string): void {
    const detach = this.followed.get(taskId);
    this.followed.delete(taskId);
    detach?.();
  }

  private closed = false;

  /** The connection closed: no task's updates are streamed any more. */
  stopFollowing(): void {
    this.closed = true;
    for (const taskId of [...this.followed.keys()]) this.unfollow(taskId);
  }
}
