import { assign, enqueueActions, setup, type ActorRefFrom, type PromiseActorLogic, type SnapshotFrom } from 'xstate';
import { errorInfo, type ErrorInfo } from '../domain/errors.js';

/**
 * One MCP connection (stdio, or one Streamable HTTP session): the sessions it sees. Tools
 * without a session id use the connection's default session, made on first use (concurrent
 * first uses share one creation) and destroyed a grace after the connection closes. Sessions
 * are labelled with the connection's tag; another connection's default session is invisible.
 * An HTTP connection with no request open for `idleMs` says so (`connection.idle`), and its
 * transport is closed.
 */
export interface McpConnectionInput {
  /** A digest of the connection id: it goes into session metadata, which others can read. */
  tag: string;
  graceMs: number;
  /** 0: never idle (stdio). */
  idleMs: number;
}

/** Metadata keys the MCP front door puts on sessions it creates. */
export const CONNECTION_KEY = 'mcp.connection';
export const DEFAULT_KEY = 'mcp.default_session';
export const MAX_KNOWN_SESSIONS = 20;

export interface McpConnectionContext extends McpConnectionInput {
  defaultSessionId: string;
  /** Sessions this connection created or used, most recent last. */
  known: string[];
  /** Sessions seen visible to this connection (no need to ask again). */
  visible: string[];
  /** Requests waiting for the default session being made. */
  waiting: string[];
  openRequests: number;
}

export type McpConnectionEvent =
  | { type: 'default.ensure'; requestId: string }
  | { type: 'session.seen'; requestId: string; sessionId: string; metadata: Record<string, string> }
  | { type: 'session.remember'; sessionId: string }
  | { type: 'session.forget'; sessionId: string }
  /** A call found its session gone: should it run again (on a new default session)? */
  | { type: 'session.lost'; requestId: string; sessionId: string; attempt: number }
  | { type: 'request.started' }
  | { type: 'request.ended' }
  | { type: 'connection.close' };

export type McpConnectionEmitted =
  | { type: 'default.answered'; requestId: string; sessionId: string; error: ErrorInfo | null }
  | { type: 'seen.answered'; requestId: string; visible: boolean }
  | { type: 'lost.answered'; requestId: string; retry: boolean }
  | { type: 'connection.idle' };

/** Whether a session with this metadata is visible to the connection tagged `tag`. */
export const isVisibleTo = (tag: string, metadata: Record<string, string>): boolean => metadata[DEFAULT_KEY] !== 'true' || metadata[CONNECTION_KEY] === tag;

/** Metadata for sessions a connection creates. */
export const labelsOf = (tag: string, isDefault: boolean): Record<string, string> => (isDefault ? { [CONNECTION_KEY]: tag, [DEFAULT_KEY]: 'true' } : { [CONNECTION_KEY]: tag });

const remembered = (known: string[], id: string): string[] => [...known.filter((k) => k !== id), id].slice(-MAX_KNOWN_SESSIONS);

export const mcpConnectionMachine = setup({
  types: {
    context: {} as McpConnectionContext,
    input: {} as McpConnectionInput,
    events: {} as McpConnectionEvent,
    emitted: {} as McpConnectionEmitted,
  },
  actors: {
    // Provided by the MCP server: create the default session (through the coordinator port), destroy it.
    createDefault: {} as PromiseActorLogic<{ sessionId: string }, { metadata: Record<string, string> }>,
    destroyDefault: {} as PromiseActorLogic<void, { sessionId: string }>,
  },
  guards: {
    isDefault: ({ context }, p: { sessionId: string }) => p.sessionId !== '' && p.sessionId === context.defaultSessionId,
    hasDefault: ({ context }) => context.defaultSessionId !== '',
    quiet: ({ context }) => context.openRequests <= 0 && context.idleMs > 0,
  },
  actions: {
    answerDefault: enqueueActions(({ context, enqueue }, p: { requestIds: string[]; error: ErrorInfo | null }) => {
      for (const requestId of p.requestIds) enqueue.emit({ type: 'default.answered', requestId, sessionId: p.error ? '' : context.defaultSessionId, error: p.error });
    }),
    remember: assign({ known: ({ context }, p: { sessionId: string }) => remembered(context.known, p.sessionId) }),
    forget: assign(({ context }, p: { sessionId: string }) => ({
      defaultSessionId: context.defaultSessionId === p.sessionId ? '' : context.defaultSessionId,
      known: context.known.filter((k) => k !== p.sessionId),
      visible: context.visible.filter((k) => k !== p.sessionId),
    })),
    judgeSeen: enqueueActions(({ context, enqueue }, e: Extract<McpConnectionEvent, { type: 'session.seen' }>) => {
      const visible = e.sessionId === context.defaultSessionId || isVisibleTo(context.tag, e.metadata);
      if (visible) enqueue.assign({ visible: remembered(context.visible, e.sessionId), known: remembered(context.known, e.sessionId) });
      enqueue.emit({ type: 'seen.answered', requestId: e.requestId, visible });
    }),
    // A default session that vanished (destroyed from elsewhere) is replaced once, transparently.
    judgeLost: enqueueActions(({ context, enqueue }, e: Extract<McpConnectionEvent, { type: 'session.lost' }>) => {
      const wasDefault = e.sessionId === context.defaultSessionId;
      enqueue.assign({
        defaultSessionId: wasDefault ? '' : context.defaultSessionId,
        known: context.known.filter((k) => k !== e.sessionId),
        visible: context.visible.filter((k) => k !== e.sessionId),
      });
      enqueue.emit({ type: 'lost.answered', requestId: e.requestId, retry: wasDefault && e.attempt === 0 });
    }),
  },
  delays: {
    grace: ({ context }) => Math.max(0, context.graceMs),
    idle: ({ context }) => Math.max(1, context.idleMs),
  },
}).createMachine({
  id: 'mcpConnection',
  context: ({ input }) => ({ ...input, defaultSessionId: '', known: [], visible: [], waiting: [], openRequests: 0 }),
  initial: 'open',
  on: {
    'session.remember': { actions: { type: 'remember', params: ({ event }) => event } },
    'session.forget': { actions: { type: 'forget', params: ({ event }) => event } },
    'session.seen': { actions: { type: 'judgeSeen', params: ({ event }) => event } },
    'session.lost': { actions: { type: 'judgeLost', params: ({ event }) => event } },
  },
  states: {
    open: {
      type: 'parallel',
      on: { 'connection.close': 'closing' },
      states: {
        defaultSession: {
          initial: 'none',
          states: {
            none: {
              always: { guard: 'hasDefault', target: 'ready' },
              on: { 'default.ensure': { target: 'creating', actions: assign({ waiting: ({ event }) => [event.requestId] }) } },
            },
            creating: {
              invoke: {
                src: 'createDefault',
                input: ({ context }) => ({ metadata: labelsOf(context.tag, true) }),
                onDone: {
                  target: 'ready',
                  actions: [
                    assign(({ context, event }) => ({
                      defaultSessionId: event.output.sessionId,
                      known: remembered(context.known, event.output.sessionId),
                      visible: remembered(context.visible, event.output.sessionId),
                    })),
                    { type: 'answerDefault', params: ({ context }) => ({ requestIds: context.waiting, error: null }) },
                    assign({ waiting: [] }),
                  ],
                },
                onError: {
                  target: 'none',
                  actions: [
                    {
                      type: 'answerDefault',
                      params: ({ context, event }) => {
                        const e = event.error as { code?: string; message?: string; toJSON?: () => ErrorInfo };
                        return { requestIds: context.waiting, error: typeof e?.toJSON === 'function' ? e.toJSON() : errorInfo('INTERNAL', `the default session could not be created: ${e?.message ?? String(event.error)}`) };
                      },
                    },
                    assign({ waiting: [] }),
                  ],
                },
              },
              on: { 'default.ensure': { actions: assign({ waiting: ({ context, event }) => [...context.waiting, event.requestId] }) } },
            },
            ready: {
              always: { guard: ({ context }) => context.defaultSessionId === '', target: 'none' },
              on: { 'default.ensure': { actions: { type: 'answerDefault', params: ({ event }) => ({ requestIds: [event.requestId], error: null }) } } },
            },
          },
        },
        activity: {
          initial: 'busy',
          states: {
            busy: {
              always: { guard: 'quiet', target: 'quiet' },
              on: { 'request.started': { actions: assign({ openRequests: ({ context }) => context.openRequests + 1 }) }, 'request.ended': { actions: assign({ openRequests: ({ context }) => context.openRequests - 1 }) } },
            },
            quiet: {
              after: { idle: { actions: enqueueActions(({ enqueue }) => enqueue.emit({ type: 'connection.idle' })) } },
              on: { 'request.started': { target: 'busy', actions: assign({ openRequests: ({ context }) => context.openRequests + 1 }) } },
            },
          },
        },
      },
    },
    closing: {
      entry: enqueueActions(({ context, enqueue }) => {
        for (const requestId of context.waiting) enqueue.emit({ type: 'default.answered', requestId, sessionId: '', error: errorInfo('FAILED_PRECONDITION', 'the MCP connection is closing') });
        enqueue.assign({ waiting: [] });
      }),
      on: { 'default.ensure': { actions: enqueueActions(({ enqueue, event }) => enqueue.emit({ type: 'default.answered', requestId: event.requestId, sessionId: '', error: errorInfo('FAILED_PRECONDITION', 'the MCP connection is closing') })) } },
      after: { grace: 'destroying' },
    },
    destroying: {
      always: { guard: ({ context }) => context.defaultSessionId === '', target: 'closed' },
      invoke: {
        src: 'destroyDefault',
        input: ({ context }) => ({ sessionId: context.defaultSessionId }),
        onDone: 'closed',
        onError: 'closed',
      },
    },
    closed: { type: 'final' },
  },
});

export type McpConnectionActor = ActorRefFrom<typeof mcpConnectionMachine>;
export type McpConnectionSnapshot = SnapshotFrom<typeof mcpConnectionMachine>;
