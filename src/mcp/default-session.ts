/**
 * The sessions one MCP connection sees, as its tools and resources ask for them: a thin port over
 * the connection's actor (machines/mcp/connection.machine.ts), which holds the default session,
 * the sessions this connection used, what it may see, and the replace-once rule. Tools without
 * `session_id` use the default session, created on first use and destroyed after a short grace
 * when the connection closes. Default sessions are labelled in their metadata, so no other
 * connection lists or uses them.
 */
import { createHash } from 'node:crypto';
import { createActor, fromPromise, waitFor } from 'xstate';
import { CodegenError } from '../domain/errors.js';
import { newRequestId } from '../domain/ids.js';
import type { SessionView } from '../domain/sessions.js';
import type { Logger } from '../log/logger.js';
import { askNow } from '../runtime/ask.js';
import { isVisibleTo, labelsOf, mcpConnectionMachine, type McpConnectionActor, type McpConnectionEmitted } from '../../machines/mcp/connection.machine.js';
import type { McpCoordinatorPort } from './port.js';

export { CONNECTION_KEY, DEFAULT_KEY } from '../../machines/mcp/connection.machine.js';

export interface ResolvedSession {
  sessionId: string;
  isDefault: boolean;
}

export class ConnectionSessions {
  /** A digest of the connection id: metadata is visible to others, the id itself is not shown. */
  readonly tag: string;
  readonly actor: McpConnectionActor;
  private readonly closed: Promise<void>;

  constructor(
    private readonly port: McpCoordinatorPort,
    connectionId: string,
    private readonly logger: Logger,
    graceMs: number,
    idleMs = 0,
  ) {
    this.tag = createHash('sha256').update(connectionId).digest('hex').slice(0, 16);
    const createDefault = fromPromise<{ sessionId: string }, { metadata: Record<string, string> }>(async ({ input, signal }) => {
      const view = await port.createSession({ metadata: input.metadata });
      // The connection closed while the session was being made: it must not outlive the connection.
      if (signal.aborted) await port.destroySession(view.sessionId, { force: true }).catch(() => undefined);
      else logger.info({ sessionId: view.sessionId, workerId: view.workerId }, 'default session created');
      return { sessionId: view.sessionId };
    });
    const destroyDefault = fromPromise<void, { sessionId: string }>(async ({ input }) => {
      if (!input.sessionId) return;
      try {
        await port.destroySession(input.sessionId, { force: true });
        logger.info({ sessionId: input.sessionId }, 'default session destroyed');
      } catch (err) {
        logger.warn({ err, sessionId: input.sessionId }, 'could not destroy the default session');
      }
    });
    this.actor = createActor(mcpConnectionMachine.provide({ actors: { createDefault, destroyDefault } }), { input: { tag: this.tag, graceMs, idleMs } });
    this.actor.subscribe({ error: (err) => logger.error({ err }, 'MCP connection actor failed') });
    this.actor.start();
    this.closed = waitFor(this.actor, (s) => s.status !== 'active', { timeout: Infinity }).then(
      () => undefined,
      () => undefined,
    );
  }

  get defaultSessionId(): string | undefined {
    return this.actor.getSnapshot().context.defaultSessionId || undefined;
  }

  isDefault(sessionId: string): boolean {
    return sessionId !== '' && sessionId === this.actor.getSnapshot().context.defaultSessionId;
  }

  /** False for another connection's default session. */
  visible(view: Pick<SessionView, 'metadata'>): boolean {
    return isVisibleTo(this.tag, view.metadata);
  }

  /** Metadata for sessions this connection creates. */
  labels(isDefault: boolean): Record<string, string> {
    return labelsOf(this.tag, isDefault);
  }

  /** The session a call uses: the explicit one (when this connection may see it) or the default. */
  async resolve(sessionId: string | undefined): Promise<ResolvedSession> {
    if (sessionId === undefined || sessionId === '') return { sessionId: await this.ensureDefault(), isDefault: true };
    if (this.isDefault(sessionId)) return { sessionId, isDefault: true };
    await this.assertVisible(sessionId);
    return { sessionId, isDefault: false };
  }

  /** Throws SESSION_NOT_FOUND for unknown sessions and for other connections' default sessions. */
  async assertVisible(sessionId: string): Promise<SessionView | undefined> {
    const ctx = this.actor.getSnapshot().context;
    if (ctx.visible.includes(sessionId)) {
      this.remember(sessionId);
      return undefined;
    }
    const view = await this.port.getSession(sessionId);
    const requestId = newRequestId();
    const answer = askNow(this.actor, { type: 'session.seen', requestId, sessionId, metadata: view.metadata }, ['seen.answered'], (e) => {
      const a = e as Extract<McpConnectionEmitted, { type: 'seen.answered' }>;
      return a.requestId === requestId ? a : undefined;
    });
    if (!answer.visible) throw new CodegenError('SESSION_NOT_FOUND', `session ${sessionId} not found`);
    return view;
  }

  /** The default session, created on first use (concurrent first uses share one creation). */
  ensureDefault(): Promise<string> {
    const requestId = newRequestId();
    return new Promise<string>((resolve, reject) => {
      const sub = this.actor.on('default.answered', (e) => {
        if (e.requestId !== requestId) return;
        sub.unsubscribe();
        if (e.error) reject(CodegenError.from(e.error));
        else resolve(e.sessionId);
      });
      this.actor.send({ type: 'default.ensure', requestId });
    });
  }

  /**
   * A call found its session gone. Forgets it, and says whether to run the call again: once,
   * for the default session (it was destroyed from elsewhere; a new one is made).
   */
  lost(sessionId: string, attempt: number): boolean {
    const requestId = newRequestId();
    return askNow(this.actor, { type: 'session.lost', requestId, sessionId, attempt }, ['lost.answered'], (e) => {
      const a = e as Extract<McpConnectionEmitted, { type: 'lost.answered' }>;
      return a.requestId === requestId ? a.retry : undefined;
    });
  }

  /** Forget a session that was destroyed (or found missing); the default is recreated on next use. */
  forget(sessionId: string): void {
    this.actor.send({ type: 'session.forget', sessionId });
  }

  remember(sessionId: string): void {
    this.actor.send({ type: 'session.remember', sessionId });
  }

  /** Sessions this connection created or used, most recent last. */
  knownSessions(): string[] {
    return [...this.actor.getSnapshot().context.known];
  }

  /** Destroys the default session after the grace. Idempotent. */
  close(): Promise<void> {
    this.actor.send({ type: 'connection.close' });
    return this.closed;
  }
}
