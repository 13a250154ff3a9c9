/**
 * STATELY_INSPECT_URL: every actor of this process, inspected with @statelyai/inspect (its own
 * event format: @xstate.actor with the machine's definition, @xstate.event, @xstate.snapshot) and
 * sent over a WebSocket, sanitised first. The package's own WebSocket adapter retries every 5 s
 * forever, silently, and writes to a socket however far behind it is; this adapter keeps the
 * package's format and adds what a server needs: backoff, one log line per outage, and bounded
 * memory (a backlog while disconnected, a send buffer while connected; beyond either, events are
 * dropped and counted, never queued without end and never waited for by an actor). Its
 * converter is replaced too, by one that makes the same events with less work (it stringified
 * each machine's whole definition for every actor, and each snapshot twice) and runs once per
 * turn for everything queued, not on one timer per event.
 */
import type { StatelyActorEvent, StatelyInspectionEvent } from '@statelyai/inspect';
import type { InspectionEvent } from 'xstate';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import safeStableStringify from 'safe-stable-stringify';
import { WebSocket } from 'ws';
import type { Logger } from '../log/logger.js';
import type { InspectionListener } from './hub.js';
import { sanitiseContext, sanitiseEvent } from './sanitise.js';

export interface StatelyInspectorOptions {
  url: string;
  /**
   * Which process this is ("coordinator", a worker's id). XState numbers its actors per process
   * (x:0, x:1…), so a coordinator's and a worker's would collide in one inspector: every id sent
   * is prefixed with this.
   */
  processName: string;
  logger: Logger;
  /** Events kept while not connected (oldest dropped first). Default 1,000. */
  maxBacklog?: number;
  /** Bytes the socket may hold unsent before events are dropped. Default 8 MiB. */
  maxBufferedBytes?: number;
  backoff?: { initialMs: number; maxMs: number };
}

export interface StatelyInspector {
  listener: InspectionListener;
  /** Events dropped so far (backlog full, or the socket too far behind). */
  dropped(): number;
  connected(): boolean;
  stop(): void;
}

class BoundedSocketAdapter {
  private ws: WebSocket | undefined;
  private open = false;
  private stopped = false;
  private backlog: string[] = [];
  private delayMs: number;
  private timer: NodeJS.Timeout | undefined;
  private outage = false;
  private openedAtMs = 0;
  private readonly shownUrl: string;
  droppedCount = 0;
  private announced = false;

  constructor(private readonly opts: Required<Omit<StatelyInspectorOptions, 'logger'>> & { logger: Logger }) {
    this.delayMs = opts.backoff.initialMs;
    // Logged without credentials or a query (a token there must not reach the log).
    this.shownUrl = shown(opts.url);
  }

  get isOpen(): boolean {
    return this.open;
  }

  start(): void {
    if (this.stopped || this.ws) return;
    const ws = new WebSocket(this.opts.url, { handshakeTimeout: 5_000 });
    this.ws = ws;
    ws.on('open', () => {
      this.open = true;
      this.openedAtMs = Date.now();
      if (this.outage) this.opts.logger.info({ url: this.shownUrl, dropped: this.droppedCount }, 'Stately inspector reachable again');
      else if (!this.announced) this.opts.logger.info({ url: this.shownUrl }, 'sending inspection events to the Stately inspector');
      this.announced = true;
      this.outage = false;
      const backlog = this.backlog;
      this.backlog = [];
      for (const text of backlog) this.write(text);
    });
    ws.on('message', () => {});
    ws.on('error', (err) => {
      // Logged once per outage: an unreachable inspector must not fill the log either.
      if (!this.outage) this.opts.logger.warn({ url: this.shownUrl, err: err.message, retry: 'with backoff, up to ' + this.opts.backoff.maxMs + ' ms' }, 'Stately inspector unreachable; events are kept (bounded) and sent once it is back');
      this.outage = true;
    });
    ws.on('close', () => {
      if (this.open && !this.outage && !this.stopped) this.opts.logger.warn({ url: this.shownUrl }, 'Stately inspector connection closed; reconnecting with backoff');
      if (this.open) this.outage = true;
      // The backoff starts again only after a connection that lasted: one that opens and drops at once backs off further.
      if (this.open && Date.now() - this.openedAtMs > 5_000) this.delayMs = this.opts.backoff.initialMs;
      this.open = false;
      this.ws = undefined;
      if (this.stopped) return;
      this.timer = setTimeout(() => this.start(), this.delayMs);
      this.timer.unref();
      this.delayMs = Math.min(this.opts.backoff.maxMs, this.delayMs * 2);
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close();
    this.ws = undefined;
    this.backlog = [];
  }

  private write(text: string): void {
    const ws = this.ws;
    if (!ws || ws.bufferedAmount > this.opts.maxBufferedBytes) {
      this.droppedCount++;
      return;
    }
    ws.send(text);
  }

  send(event: StatelyInspectionEvent): void {
    if (this.stopped) return;
    let text: string;
    try {
      text = JSON.stringify(event);
    } catch {
      this.droppedCount++;
      return;
    }
    if (this.open) return this.write(text);
    this.backlog.push(text);
    if (this.backlog.length > this.opts.maxBacklog) {
      this.backlog.shift();
      this.droppedCount++;
    }
  }
}

export function startStatelyInspector(options: StatelyInspectorOptions): StatelyInspector {
  const adapter = new BoundedSocketAdapter({
    url: options.url,
    processName: options.processName,
    logger: options.logger,
    maxBacklog: options.maxBacklog ?? 1_000,
    maxBufferedBytes: options.maxBufferedBytes ?? 8 * 1024 * 1024,
    backoff: options.backoff ?? { initialMs: 500, maxMs: 30_000 },
  });
  const prefix = `${options.processName}/`;
  const named = (id: string | undefined): string | undefined => (id ? prefix + id : id);
  adapter.start();
  // The listener only queues (an actor never waits on this); one turn later the queue is turned
  // into the package's events — sanitised, named by process — and sent. Bounded like the backlog.
  let queue: Array<{ event: InspectionEvent; atMs: number }> = [];
  const flush = () => {
    const batch = queue;
    queue = [];
    for (const { event, atMs } of batch) {
      try {
        adapter.send(toStately(event, atMs, named));
      } catch {
        adapter.droppedCount++;
      }
    }
  };
  return {
    listener: (event) => {
      // Only what the inspector draws (microsteps and actions are many, and it shows nothing for them).
      if (event.type !== '@xstate.actor' && event.type !== '@xstate.event' && event.type !== '@xstate.snapshot') return;
      if (queue.length >= MAX_PENDING) {
        adapter.droppedCount++;
        return;
      }
      if (queue.length === 0) setImmediate(flush);
      queue.push({ event, atMs: Date.now() });
    },
    dropped: () => adapter.droppedCount,
    connected: () => adapter.isOpen,
    stop: () => {
      queue = [];
      adapter.stop();
    },
  };
}

const MAX_PENDING = 20_000;

/**
 * An XState inspection event as @statelyai/inspect sends it (its convertXStateEvent's shape),
 * ids named by process, with the context and the event sanitised, and the definition stringified once per machine
 * (the package does it for every actor: a task proxy per task).
 */
function toStately(event: InspectionEvent, atMs: number, named: (id: string | undefined) => string | undefined): StatelyInspectionEvent {
  const base = { _version: PACKAGE_VERSION, createdAt: String(atMs), id: null as unknown as string, rootId: named(event.rootId) };
  const ref = event.actorRef as unknown as { id: string; sessionId: string; _parent?: { sessionId: string }; logic?: { config?: unknown }; getSnapshot(): unknown };
  if (event.type === '@xstate.actor') {
    const config = ref.logic?.config;
    const machineId = config && typeof config === 'object' ? (config as { id?: string }).id : undefined;
    let snapshot: unknown;
    try {
      snapshot = ref.getSnapshot();
    } catch {
      snapshot = undefined;
    }
    return { ...base, type: '@xstate.actor', name: ref.id === ref.sessionId && machineId ? machineId : ref.id, definition: definitionText(config, ref.id), parentId: named(ref._parent?.sessionId), sessionId: named(ref.sessionId)!, snapshot: pickSnapshot(snapshot, true) } as StatelyActorEvent;
  }
  if (event.type === '@xstate.event') {
    return { ...base, type: '@xstate.event', event: sanitiseEvent(event.event as { type: string }), sourceId: named((event.sourceRef as { sessionId?: string } | undefined)?.sessionId), sessionId: named(ref.sessionId) } as unknown as StatelyInspectionEvent;
  }
  const e = event as Extract<InspectionEvent, { type: '@xstate.snapshot' }>;
  return { ...base, type: '@xstate.snapshot', event: sanitiseEvent(e.event as { type: string }), snapshot: pickSnapshot(e.snapshot, true), sessionId: named(ref.sessionId) } as unknown as StatelyInspectionEvent;
}

/** The package's version, which every event carries (its own converter puts it there too). */
const PACKAGE_VERSION: string = (() => {
  try {
    const main = createRequire(import.meta.url).resolve('@statelyai/inspect');
    return (JSON.parse(readFileSync(path.join(path.dirname(main), '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
})();

// As the package writes a definition (functions as their names, depth-limited), once per machine.
const stringifyDefinition = safeStableStringify.configure({ maximumDepth: 10 });
const definitions = new WeakMap<object, string>();
const replacer = (_key: string, value: unknown) => (typeof value === 'function' ? { type: (value as { name?: string }).name } : value);
function definitionText(config: unknown, name: string): string {
  if (!config || typeof config !== 'object') return stringifyDefinition({ id: name }) ?? '{}';
  let text = definitions.get(config);
  if (text === undefined) {
    text = stringifyDefinition(config, replacer) ?? '{}';
    definitions.set(config, text);
  }
  return text;
}

/** A URL as logs show it: scheme, host and path only. */
const shown = (url: string): string => {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(not a URL)';
  }
};

// XState keeps a context object as it is until an assign replaces it, and most snapshots keep it:
// each context is sanitised once.
const sanitisedContexts = new WeakMap<object, unknown>();
const sanitisedContext = (context: unknown): unknown => {
  if (!context || typeof context !== 'object') return sanitiseContext(context);
  let out = sanitisedContexts.get(context);
  if (out === undefined) {
    out = sanitiseContext(context);
    sanitisedContexts.set(context, out);
  }
  return out;
};

const pickSnapshot = (s: unknown, sanitiseNow = false): Record<string, unknown> => {
  const snap = (s ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = { status: snap.status ?? 'active' };
  if (snap.value !== undefined) out.value = snap.value;
  if (snap.context !== undefined) out.context = sanitiseNow ? sanitisedContext(snap.context) : snap.context;
  if (snap.output !== undefined) out.output = sanitiseContext(snap.output);
  if (snap.error !== undefined) out.error = sanitiseContext(snap.error);
  return out;
};
