/**
 * The sessions one MCP connection sees. Tools without `session_id` use the connection's own
 * default session, created on first use and destroyed after a short grace when the connection
 * closes. Default sessions are labelled in their metadata, so no other connection lists or
 * uses them.
 */
import { createHash } from 'node:crypto';
import { CodegenError } from '../domain/errors.js';
import type { SessionView } from '../domain/sessions.js';
import type { Logger } from '../log/logger.js';
import type { McpCoordinatorPort } from './port.js';

/** Metadata keys the MCP front door puts on sessions it creates. */
export const CONNECTION_KEY = 'mcp.connection';
export const DEFAULT_KEY = 'mcp.default_session';

const MAX_KNOWN = 20;

export interface ResolvedSession {
  sessionId: string;
  isDefault: boolean;
}

export class ConnectionSessions {
  /** A digest of the connection id: metadata is visible to others, the id itself is not shown. */
  readonly tag: string;
  private defaultId: string | undefined;
  private creating: Promise<string> | undefined;
  private closing: Promise<void> | undefined;
  private readonly known = new Map<string, number>();
  private readonly checked = new Set<string>();

  constructor(
    private readonly port: McpCoordinatorPort,
    connectionId: string,
    private readonly logger: Logger,
    private readonly graceMs: number,
  ) {
    this.tag = createHash('sha256').update(connectionId).digest('hex').slice(0, 16);
  }

  get defaultSessionId(): string | undefined {
    return this.defaultId;
  }

  isDefault(sessionId: string): boolean {
    return sessionId === this.defaultId;
  }

  /** False for another connection's default session. */
  visible(view: Pick<SessionView, 'metadata'>): boolean {
    return view.metadata[DEFAULT_KEY] !== 'true' || view.metadata[CONNECTION_KEY] === this.tag;
  }

  /** Metadata for sessions this connection creates. */
  labels(isDefault: boolean): Record<string, string> {
    return isDefault ? { [CONNECTION_KEY]: this.tag, [DEFAULT_KEY]: 'true' } : { [CONNECTION_KEY]: this.tag };
  }

  /** The session a call uses: the explicit one (when this connection may see it) or the default. */
  async resolve(sessionId: string | undefined): Promise<ResolvedSession> {
    if (sessionId === undefined || sessionId === '') return { sessionId: await this.ensureDefault(), isDefault: true };
    if (sessionId === this.defaultId) return { sessionId, isDefault: true };
    await this.assertVisible(sessionId);
    this.remember(sessionId);
    return { sessionId, isDefault: false };
  }

  /** Throws SESSION_NOT_FOUND for unknown sessions and for other connections' default sessions. */
  async assertVisible(sessionId: string): Promise<SessionView | undefined> {
    if (this.checked.has(sessionId)) return undefined;
    const view = await this.port.getSession(sessionId);
    if (!this.visible(view)) throw new CodegenError('SESSION_NOT_FOUND', `session ${sessionId} not found`);
    this.checked.add(sessionId);
    return view;
  }

  /** The default session, created on first use (concurrent first uses share one creation). */
  async ensureDefault(): Promise<string> {
    if (this.closing) throw new CodegenError('FAILED_PRECONDITION', 'the MCP connection is closing');
    if (this.defaultId) return this.defaultId;
    if (!this.creating) {
      const creating = (async () => {
        const view = await this.port.createSession({ metadata: this.labels(true) });
        this.logger.info({ sessionId: view.sessionId, workerId: view.workerId }, 'default session created');
        return view.sessionId;
      })();
      this.creating = creating;
      creating.then(
        (id) => {
          if (this.creating === creating) this.creating = undefined;
          this.defaultId = id;
          this.checked.add(id);
          this.remember(id);
        },
        () => {
          if (this.creating === creating) this.creating = undefined;
        },
      );
    }
    return this.creating;
  }

  /** Forget a session that was destroyed (or found missing); the default is recreated on next use. */
  forget(sessionId: string): void {
    if (sessionId === this.defaultId) this.defaultId = undefined;
    this.known.delete(sessionId);
    this.checked.delete(sessionId);
  }

  remember(sessionId: string): void {
    this.known.delete(sessionId);
    this.known.set(sessionId, Date.now());
    while (this.known.size > MAX_KNOWN) {
      const oldest = this.known.keys().next().value as string;
      this.known.delete(oldest);
    }
  }

  /** Sessions this connection created or used, most recent last. */
  knownSessions(): string[] {
    return [...this.known.keys()];
  }

  /** Destroys the default session after the grace. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.graceMs > 0) await new Promise((r) => setTimeout(r, this.graceMs));
      const id = this.defaultId ?? (await this.creating?.catch(() => undefined));
      this.defaultId = undefined;
      if (!id) return;
      try {
        await this.port.destroySession(id, { force: true });
        this.logger.info({ sessionId: id }, 'default session destroyed');
      } catch (err) {
        this.logger.warn({ err, sessionId: id }, 'could not destroy the default session');
      }
    })();
    return this.closing;
  }
}
