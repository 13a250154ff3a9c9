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
 * turn for everything queued, not on one timer per event, within a CPU budget (past it, each
 * actor's events fold into its latest state).
 */
import type { ActorRefLike, InspectionEvent } from 'xstate';
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
  /**
   * The share of this process's time the inspector may spend making and writing events (default
   * 0.03). Past it, each actor's events are coalesced into its latest state (logged once per
   * episode) until it is back within budget. A debugging tool must never be
   * what slows the system down.
   */
  budget?: number;
  now?: () => number;
}

export interface StatelyInspector {
  listener: InspectionListener;
  /** Events dropped so far (backlog full, or the socket too far behind). */
  dropped(): number;
  /** Events folded into their actor's latest state so far, to keep within the CPU budget. */
  coalesced(): number;
  /** Events and marked actors not sent yet. */
  pending(): number;
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

  constructor(private readonly opts: Required<Omit<StatelyInspectorOptions, 'logger' | 'budget' | 'now'>> & { logger: Logger }) {
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

  /** Everything sent inside `fn` leaves in one write (ws writes each message on its own otherwise: a system call per event). */
  batch(fn: () => void): void {
    const socket = this.open ? (this.ws as unknown as { _socket?: { cork(): void; uncork(): void } } | undefined)?._socket : undefined;
    socket?.cork();
    try {
      fn();
    } finally {
      socket?.uncork();
    }
  }

  private write(text: string): void {
    const ws = this.ws;
    if (!ws || ws.bufferedAmount > this.opts.maxBufferedBytes) {
      this.droppedCount++;
      return;
    }
    ws.send(text);
  }

  send(text: string): void {
    if (this.stopped) return;
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
  // into the package's events — sanitised, named by process — and sent, within a CPU budget:
  // time spent here earns back `budget` of every millisecond that passes, up to BURST_MS. Out of
  // credit, events are dropped and the actors they touched are only marked; once credit is back,
  // each marked actor is sent once, as it is then (an @xstate.actor if the inspector has not seen
  // it, else an @xstate.snapshot whose event says how many were skipped). Busy actors coalesce, so
  // the inspector always ends on every actor's current state.
  const budget = options.budget ?? 0.03;
  const now = options.now ?? (() => performance.now());
  let credit = BURST_MS;
  let lastMs = now();
  let episodeFrom = -1;
  let coalesced = 0;
  let kicked = false;
  let queue: InspectionEvent[] = [];
  const marked = new Map<ActorRefLike, { announce: boolean; skipped: number; rootId: string | undefined }>();
  const mark = (event: InspectionEvent) => {
    const entry = marked.get(event.actorRef);
    if (entry) {
      entry.skipped++;
      if (event.type === '@xstate.actor') entry.announce = true;
    } else if (marked.size < MAX_PENDING) marked.set(event.actorRef, { announce: event.type === '@xstate.actor', skipped: 1, rootId: event.rootId });
    else adapter.droppedCount++;
  };
  const flush = () => {
    const batch = queue;
    queue = [];
    const t0 = now();
    credit = Math.min(BURST_MS, credit + (t0 - lastMs) * budget);
    let t = t0;
    const coalescedBefore = coalesced;
    let n = 0;
    const spent = () => ((++n & 15) === 0 ? (t = now()) : t) - t0 >= credit;
    adapter.batch(() => {
      // First what waited: marked actors, oldest first, while there is credit.
      for (const [actorRef, entry] of marked) {
        if (spent()) break;
        marked.delete(actorRef);
        const rootId = entry.rootId ?? '';
        const event = entry.announce ? { type: '@xstate.actor', actorRef, rootId } : { type: '@xstate.snapshot', actorRef, rootId, sourceRef: undefined, snapshot: actorRef.getSnapshot(), event: { type: COALESCED, skipped: entry.skipped } };
        send(event as InspectionEvent, Date.now());
      }
      const atMs = Date.now();
      for (const event of batch) {
        if (marked.size > 0 || spent()) {
          coalesced++;
          mark(event);
          continue;
        }
        send(event, atMs);
      }
    });
    lastMs = now();
    credit -= lastMs - t0;
    // Marked actors wait for credit even if nothing else happens.
    if (marked.size > 0 && !kicked) {
      kicked = true;
      setTimeout(() => {
        kicked = false;
        if (queue.length === 0) flush();
      }, Math.min(1_000, Math.max(5, -credit / budget))).unref();
    }
    // One line when an episode starts and one when it ends, however long it lasts.
    if (marked.size > 0 && episodeFrom < 0) {
      episodeFrom = coalescedBefore;
      options.logger.warn({ budget }, "Stately inspector over its CPU budget: coalescing each actor's events into its latest state until it catches up");
    } else if (marked.size === 0 && episodeFrom >= 0) {
      options.logger.info({ coalesced: coalesced - episodeFrom }, 'Stately inspector back within its CPU budget');
      episodeFrom = -1;
    }
  };
  const send = (event: InspectionEvent, atMs: number) => {
    try {
      adapter.send(toStately(event, atMs, named));
    } catch {
      adapter.droppedCount++;
    }
  };

  return {
    listener: (event) => {
      // Only what the inspector draws (microsteps and actions are many, and it shows nothing for them).
      if (event.type !== '@xstate.actor' && event.type !== '@xstate.event' && event.type !== '@xstate.snapshot') return;
      // While actors wait for credit, the newest events only add to their marks (the timer set by the last flush sends them).
      if (marked.size > 0) {
        coalesced++;
        return mark(event);
      }
      if (queue.length >= MAX_PENDING) {
        adapter.droppedCount++;
        return;
      }
      if (queue.length === 0) setImmediate(flush);
      queue.push(event);
    },
    coalesced: () => coalesced,
    pending: () => queue.length + marked.size,
    dropped: () => adapter.droppedCount,
    connected: () => adapter.isOpen,
    stop: () => {
      queue = [];
      marked.clear();
      adapter.stop();
    },
  };
}

const MAX_PENDING = 20_000;
const BURST_MS = 50;
/** The event of a snapshot that stands for several the inspector did not get (its `skipped` says how many). */
export const COALESCED = 'codegen.inspector.coalesced';

/**
 * An XState inspection event as @statelyai/inspect sends it (its convertXStateEvent's shape),
 * ids named by process, the context and the event sanitised, written straight to JSON text.
 * Almost all of an event's bytes are parts that repeat, so each is made once and then pasted in:
 * a machine's definition (the package stringifies it for every actor: a session proxy per
 * session), a context (XState keeps the object until an assign replaces it, and most snapshots
 * keep it) and an event (the @xstate.event and the @xstate.snapshot it causes carry the same one).
 */
function toStately(event: InspectionEvent, atMs: number, named: (id: string | undefined) => string | undefined): string {
  const ref = event.actorRef as unknown as { id: string; sessionId: string; _parent?: { sessionId: string }; logic?: { config?: unknown }; getSnapshot(): unknown };
  const head = `{"_version":${VERSION_JSON},"createdAt":"${atMs}","id":null${field('rootId', named(event.rootId))}`;
  const sessionId = field('sessionId', named(ref.sessionId));
  if (event.type === '@xstate.actor') {
    const config = ref.logic?.config;
    const machineId = config && typeof config === 'object' ? (config as { id?: string }).id : undefined;
    let snapshot: unknown;
    try {
      snapshot = ref.getSnapshot();
    } catch {
      snapshot = undefined;
    }
    const name = ref.id === ref.sessionId && machineId ? machineId : ref.id;
    return `${head},"type":"@xstate.actor","name":${JSON.stringify(name)},"definition":${definitionJson(config, ref.id)}${field('parentId', named(ref._parent?.sessionId))}${sessionId},"snapshot":${snapshotJson(snapshot)}}`;
  }
  if (event.type === '@xstate.event') {
    const source = field('sourceId', named((event.sourceRef as { sessionId?: string } | undefined)?.sessionId));
    return `${head},"type":"@xstate.event","event":${eventJson(event.event)}${source}${sessionId}}`;
  }
  const e = event as Extract<InspectionEvent, { type: '@xstate.snapshot' }>;
  return `${head},"type":"@xstate.snapshot","event":${eventJson(e.event)},"snapshot":${snapshotJson(e.snapshot)}${sessionId}}`;
}

// A key and its string value, or nothing when there is none (JSON.stringify leaves undefined out too).
const field = (key: string, value: string | undefined): string => (value === undefined ? '' : `,"${key}":${JSON.stringify(value)}`);

/** The package's version, which every event carries (its own converter puts it there too). */
const PACKAGE_VERSION: string = (() => {
  try {
    const main = createRequire(import.meta.url).resolve('@statelyai/inspect');
    return (JSON.parse(readFileSync(path.join(path.dirname(main), '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
})();
const VERSION_JSON = JSON.stringify(PACKAGE_VERSION);

// As the package writes a definition (functions as their names, depth-limited), once per machine,
// and kept as the JSON text of that string, ready to paste into an event.
const stringifyDefinition = safeStableStringify.configure({ maximumDepth: 10 });
const definitions = new WeakMap<object, string>();
const replacer = (_key: string, value: unknown) => (typeof value === 'function' ? { type: (value as { name?: string }).name } : value);
function definitionJson(config: unknown, name: string): string {
  if (!config || typeof config !== 'object') return JSON.stringify(stringifyDefinition({ id: name }) ?? '{}');
  let text = definitions.get(config);
  if (text === undefined) {
    text = JSON.stringify(stringifyDefinition(config, replacer) ?? '{}');
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

// Sanitised JSON text kept per object: contexts and events are not changed once made (an assign
// makes a new context), so the text made for one stays true for as long as the object lives. Only
// the most recent few are kept: an event and the snapshot it causes, and an actor's snapshots in a
// row, share them; a text per live context (a session proxy's, for every session) would be megabytes
// the garbage collector walks for nothing.
const CACHED_TEXTS = 512;
const contextTexts = new Map<object, string>();
const eventTexts = new Map<object, string>();
function cachedJson(cache: Map<object, string>, value: unknown, sanitise: (v: unknown) => unknown): string {
  if (!value || typeof value !== 'object') return JSON.stringify(sanitise(value)) ?? 'null';
  let text = cache.get(value);
  if (text === undefined) {
    text = JSON.stringify(sanitise(value)) ?? 'null';
    cache.set(value, text);
    if (cache.size > CACHED_TEXTS) cache.delete(cache.keys().next().value!);
  }
  return text;
}
const eventJson = (event: unknown): string => cachedJson(eventTexts, event, (e) => sanitiseEvent((e ?? { type: 'unknown' }) as { type: string }));
const contextJson = (context: unknown): string => cachedJson(contextTexts, context, sanitiseContext);

function snapshotJson(s: unknown): string {
  const snap = (s ?? {}) as Record<string, unknown>;
  let out = `{"status":${JSON.stringify(snap.status ?? 'active')}`;
  if (snap.value !== undefined) out += `,"value":${JSON.stringify(snap.value)}`;
  if (snap.context !== undefined) out += `,"context":${contextJson(snap.context)}`;
  if (snap.output !== undefined) out += `,"output":${JSON.stringify(sanitiseContext(snap.output)) ?? 'null'}`;
  if (snap.error !== undefined) out += `,"error":${JSON.stringify(sanitiseContext(snap.error)) ?? 'null'}`;
  return out + '}';
}
