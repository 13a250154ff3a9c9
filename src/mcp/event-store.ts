/**
 * The events one Streamable HTTP MCP session sent, kept for a while so a client whose SSE stream
 * dropped can reconnect with Last-Event-ID and miss nothing (the SDK replays what this returns).
 * One store per MCP session: an event id never resumes another session's stream. Bounded in
 * count, bytes and age; the newest event is always kept, so a large tool result still replays.
 */
import type { EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

export interface EventStoreLimits {
  maxEvents: number;
  maxBytes: number;
  maxAgeMs: number;
}

export const defaultEventStoreLimits: EventStoreLimits = { maxEvents: 2_000, maxBytes: 4 * 1024 * 1024, maxAgeMs: 5 * 60_000 };

/**
 * What every MCP session's store of one server holds together, at most. Over it, every store
 * first lets its aged events go; if that is not enough, the store adding an event drops its own
 * oldest (the session that sends the most pays first), and then the others' events go, their
 * newest too.
 */
export class EventBudget {
  used = 0;
  private readonly stores = new Set<BoundedEventStore>();

  constructor(readonly maxBytes: number) {}

  join(store: BoundedEventStore): void {
    this.stores.add(store);
  }

  leave(store: BoundedEventStore): void {
    this.stores.delete(store);
  }

  get overspent(): boolean {
    return this.used > this.maxBytes;
  }

  /** Over budget (only then: O(stores)): every store lets its aged events go. */
  sweep(): void {
    for (const store of this.stores) store.trim();
  }

  /**
   * Still over budget once `adding` kept only its newest: the other stores' events go too, their
   * newest included (a quiet session's one large result must not hold the budget for good).
   */
  squeeze(adding: BoundedEventStore): void {
    for (const store of this.stores) {
      if (!this.overspent) return;
      if (store !== adding) store.trim(() => this.overspent, 0);
    }
  }
}

export const defaultEventBudgetBytes = 256 * 1024 * 1024;

interface StoredEvent {
  id: string;
  streamId: string;
  seq: number;
  message: JSONRPCMessage;
  bytes: number;
  atMs: number;
}

/** An event id is `<streamId>.<seq>`: the stream is known from the id even after the event itself aged out. */
const SEPARATOR = '.';
const MAX_STREAMS = 1_000;

export class BoundedEventStore implements EventStore {
  private readonly events: StoredEvent[] = [];
  /** Index of the oldest live entry in `events` (dropped ones are spliced off in batches). */
  private head = 0;
  private bytes = 0;
  private seq = 0;
  /** Events dropped by the bounds, for the log. */
  dropped = 0;

  constructor(
    private readonly limits: EventStoreLimits = defaultEventStoreLimits,
    private readonly now: () => number = Date.now,
    private readonly budget?: EventBudget,
  ) {
    budget?.join(this);
  }

  private closed = false;

  /** The MCP session closed: what it held leaves the budget, and nothing more is kept. */
  close(): void {
    this.closed = true;
    if (this.budget) {
      this.budget.used -= this.bytes;
      this.budget.leave(this);
    }
    this.events.length = 0;
    this.head = 0;
    this.bytes = 0;
  }

  get size(): number {
    return this.events.length - this.head;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    this.seq += 1;
    const id = `${streamId}${SEPARATOR}${this.seq}`;
    if (this.closed) return Promise.resolve(id);
    this.remember(streamId);
    // The priming event's message is {}: it only marks the stream's start.
    const bytes = JSON.stringify(message).length;
    this.events.push({ id, streamId, seq: this.seq, message, bytes, atMs: this.now() });
    this.bytes += bytes;
    if (this.budget) this.budget.used += bytes;
    this.trim();
    if (this.budget?.overspent) {
      this.budget.sweep();
      this.trim(() => this.budget!.overspent);
      if (this.budget.overspent) this.budget.squeeze(this);
    }
    return Promise.resolve(id);
  }

  /** The stream an id this store made belongs to; undefined for any other id (the SDK answers 400). */
  getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    return Promise.resolve(this.madeHere(eventId)?.streamId);
  }

  private madeHere(eventId: string): { streamId: string; seq: number } | undefined {
    const parsed = parseEventId(eventId);
    return parsed && parsed.seq <= this.seq && this.streams.has(parsed.streamId) ? parsed : undefined;
  }

  /**
   * Sends every event of the id's stream after it, oldest first. An id this store never made is
   * refused; one whose events aged out replays what is still held.
   */
  async replayEventsAfter(lastEventId: string, { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> }): Promise<string> {
    const parsed = this.madeHere(lastEventId);
    if (!parsed) throw new Error(`Last-Event-ID ${JSON.stringify(lastEventId)} was not sent by this MCP session`);
    this.trim();
    // Taken first: events stored while the replay awaits its sends may move the array.
    const later: StoredEvent[] = [];
    for (let i = this.head; i < this.events.length; i++) {
      const e = this.events[i]!;
      // The priming event carries nothing to deliver.
      if (e.streamId === parsed.streamId && e.seq > parsed.seq && Object.keys(e.message).length > 0) later.push(e);
    }
    for (const e of later) await send(e.id, e.message);
    return parsed.streamId;
  }

  /** Streams this session opened (the most recent MAX_STREAMS): only their ids resume. */
  private readonly streams = new Set<string>();

  private remember(streamId: string): void {
    if (this.streams.has(streamId)) return;
    this.streams.add(streamId);
    if (this.streams.size > MAX_STREAMS) this.streams.delete(this.streams.values().next().value!);
  }

  /**
   * Drops the oldest events past the bounds (or while `more` says so). The newest stays whatever
   * its size or age (`keep` 1), unless the shared budget needs it too (`keep` 0).
   */
  trim(more: () => boolean = () => false, keep = 1): void {
    const cutoff = this.now() - this.limits.maxAgeMs;
    while (this.size > keep) {
      const oldest = this.events[this.head]!;
      if (this.size <= this.limits.maxEvents && this.bytes <= this.limits.maxBytes && oldest.atMs >= cutoff && !more()) break;
      this.bytes -= oldest.bytes;
      if (this.budget) this.budget.used -= oldest.bytes;
      // The slot lets go of its message at once (the array is only cut back now and then).
      this.events[this.head] = undefined as unknown as StoredEvent;
      this.head += 1;
      this.dropped += 1;
    }
    if (this.head > 1024 && this.head * 2 > this.events.length) {
      this.events.splice(0, this.head);
      this.head = 0;
    }
  }
}

function parseEventId(eventId: string): { streamId: string; seq: number } | undefined {
  const i = eventId.lastIndexOf(SEPARATOR);
  if (i <= 0) return undefined;
  const seq = Number(eventId.slice(i + 1));
  if (!Number.isSafeInteger(seq) || seq <= 0) return undefined;
  return { streamId: eventId.slice(0, i), seq };
}
