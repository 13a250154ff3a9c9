/**
 * One MCP connection's resource notifications and subscriptions.
 *
 * - `notifications/resources/list_changed` when the sessions resources/list shows change (one is
 *   made, used, destroyed or forgotten), and, once the client has called resources/list, when
 *   files appear in or disappear from one of those sessions (as the watch sees them).
 * - `notifications/resources/updated` for a subscribed file that a tool wrote, or that a task or
 *   restore changed (size or mtime), or whose session was destroyed (its subscriptions end then).
 *
 * Notifications are coalesced: the first change opens a window of `windowMs`, and at its end one
 * list_changed (if any) and one updated per changed subscribed URI are sent. At most
 * `maxSubscriptions` URIs are subscribed at once; closing the connection drops them all.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { CodegenError } from '../domain/errors.js';
import type { CoordinatorPort } from '../runtime/port.js';
import type { McpConnection } from './connection.js';
import { listedSessions } from './file-listing.js';
import type { FilesChange, ResourceWatch, WatchListener } from './resource-watch.js';
import { fileUri, parseFileUri } from './uris.js';

/** JSON-RPC error code for an unknown resource (MCP spec). */
export const RESOURCE_NOT_FOUND = -32002;

export interface ResourceNotifierOptions {
  /** Changes within this window after the first are sent together. */
  windowMs: number;
  /** Subscriptions one connection may hold at once. */
  maxSubscriptions: number;
}

interface Subscription {
  /** The URI as the client spelled it: notifications carry it back. */
  uri: string;
  sessionId: string;
  path: string;
}

const setKey = (ids: string[]): string => [...ids].sort().join(' ');

export class ResourceNotifier implements WatchListener {
  /** Whether the client has called resources/list: only then are file list changes told. */
  private listedOnce = false;
  /** By canonical URI (fileUri of session and path). */
  private readonly subscriptions = new Map<string, Subscription>();
  private pendingListChanged = false;
  /** Canonical URI → the URI to send. */
  private readonly pendingUpdated = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private listedKey: string;
  private readonly detach: Array<() => void> = [];
  private closed = false;

  constructor(
    private readonly server: McpServer,
    private readonly conn: McpConnection,
    private readonly watch: ResourceWatch,
    /** The port looks for subscriptions run on (not observed by the watch: it makes the looks itself). */
    private readonly port: CoordinatorPort,
    private readonly opts: ResourceNotifierOptions,
  ) {
    this.listedKey = setKey(listedSessions(conn));
    const sub = conn.sessions.actor.subscribe(() => this.sessionsMayHaveChanged());
    this.detach.push(
      () => sub.unsubscribe(),
      watch.attach(this),
    );
  }

  /** resources/list was called: from now on file list changes of the listed sessions are told too. */
  listed(): void {
    this.listedOnce = true;
  }

  get subscriptionCount(): number {
    return this.subscriptions.size;
  }

  watches(sessionId: string): boolean {
    if (this.closed) return false;
    for (const s of this.subscriptions.values()) if (s.sessionId === sessionId) return true;
    return this.listedOnce && listedSessions(this.conn).includes(sessionId);
  }

  *subscribedPaths(sessionId: string): Iterable<string> {
    for (const s of this.subscriptions.values()) if (s.sessionId === sessionId) yield s.path;
  }

  filesChanged(sessionId: string, change: FilesChange): void {
    if (this.closed) return;
    if (change.listChanged && this.listedOnce && listedSessions(this.conn).includes(sessionId)) this.pendingListChanged = true;
    for (const path of change.paths) {
      const key = fileUri(sessionId, path);
      const sub = this.subscriptions.get(key);
      if (sub) this.pendingUpdated.set(key, sub.uri);
    }
    this.schedule();
  }

  sessionGone(sessionId: string): void {
    if (this.closed) return;
    if (listedSessions(this.conn).includes(sessionId)) this.pendingListChanged = true;
    // Its files are gone for good (a session id never comes back): tell, then drop the subscriptions.
    for (const [key, sub] of this.subscriptions) {
      if (sub.sessionId !== sessionId) continue;
      this.pendingUpdated.set(key, sub.uri);
      this.subscriptions.delete(key);
    }
    this.schedule();
  }

  /** resources/subscribe. Throws McpError: a malformed URI, an unknown session, too many subscriptions. */
  async subscribe(uri: string): Promise<void> {
    const parsed = parseFileUri(uri);
    if (!parsed.ok) throw new McpError(ErrorCode.InvalidParams, `resources/subscribe: ${parsed.problem}`, { uri });
    const key = fileUri(parsed.sessionId, parsed.path);
    if (this.subscriptions.has(key)) return;
    if (this.subscriptions.size >= this.opts.maxSubscriptions) {
      throw new McpError(
        ErrorCode.InvalidRequest,
        `resources/subscribe: this MCP session already holds ${this.opts.maxSubscriptions} subscriptions, the most it may; unsubscribe from some (resources/unsubscribe) first`,
        { uri, limit: this.opts.maxSubscriptions },
      );
    }
    // The slot is taken before the first await, so concurrent subscriptions cannot pass the bound.
    const sub: Subscription = { uri, sessionId: parsed.sessionId, path: parsed.path };
    this.subscriptions.set(key, sub);
    try {
      await this.conn.sessions.assertVisible(parsed.sessionId);
    } catch (err) {
      if (this.subscriptions.get(key) === sub) {
        this.subscriptions.delete(key);
        // A change seen while the check ran must not be told for a session the caller may not see.
        this.pendingUpdated.delete(key);
      }
      if (err instanceof CodegenError && (err.code === 'SESSION_NOT_FOUND' || err.code === 'NOT_FOUND')) {
        throw new McpError(RESOURCE_NOT_FOUND, `Resource not found: ${uri} (session ${parsed.sessionId} not found)`, { uri });
      }
      throw new McpError(ErrorCode.InternalError, `resources/subscribe ${uri}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (this.closed) return;
    try {
      await this.watch.watchPath(parsed.sessionId, parsed.path, this.port);
    } catch (err) {
      // The subscription holds; without a first look its file's first change is told as a change anyway.
      this.conn.logger.debug({ err, uri }, 'the first look for a subscription failed');
    }
  }

  /** resources/unsubscribe: no more notifications for the URI (one not subscribed is fine). Throws for a malformed URI. */
  unsubscribe(uri: string): void {
    const parsed = parseFileUri(uri);
    if (!parsed.ok) throw new McpError(ErrorCode.InvalidParams, `resources/unsubscribe: ${parsed.problem}`, { uri });
    const key = fileUri(parsed.sessionId, parsed.path);
    this.subscriptions.delete(key);
    this.pendingUpdated.delete(key);
  }

  /** Drops every subscription and pending notification. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.subscriptions.clear();
    this.pendingUpdated.clear();
    for (const d of this.detach.splice(0)) d();
  }

  private sessionsMayHaveChanged(): void {
    if (this.closed) return;
    const key = setKey(listedSessions(this.conn));
    if (key === this.listedKey) return;
    this.listedKey = key;
    this.pendingListChanged = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.closed || (!this.pendingListChanged && this.pendingUpdated.size === 0)) return;
    this.timer = setTimeout(() => this.flush(), this.opts.windowMs);
    this.timer.unref?.();
  }

  private flush(): void {
    this.timer = undefined;
    if (this.closed) return;
    const list = this.pendingListChanged;
    const uris = [...this.pendingUpdated.values()];
    this.pendingListChanged = false;
    this.pendingUpdated.clear();
    if (!this.server.isConnected()) return;
    const sent = (what: string) => (err: unknown) => this.conn.logger.debug({ err, what }, 'a resource notification was not sent');
    if (list) this.server.server.sendResourceListChanged().catch(sent('list_changed'));
    for (const uri of uris) this.server.server.sendResourceUpdated({ uri }).catch(sent(uri));
  }
}
