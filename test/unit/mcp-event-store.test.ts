/**
 * The MCP session's event store (src/mcp/event-store.ts): what a client resuming with
 * Last-Event-ID gets back, and the bounds on what is kept.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { BoundedEventStore, EventBudget } from '../../src/mcp/event-store.js';

const note = (n: number, pad = 0): JSONRPCMessage => ({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: `${n}${'x'.repeat(pad)}` } });

async function replay(store: BoundedEventStore, after: string): Promise<{ streamId: string; sent: Array<[string, JSONRPCMessage]> }> {
  const sent: Array<[string, JSONRPCMessage]> = [];
  const streamId = await store.replayEventsAfter(after, { send: async (id, m) => void sent.push([id, m]) });
  return { streamId, sent };
}

describe('BoundedEventStore', () => {
  it("replays a stream's events after the given id, in order, skipping the priming event and other streams", async () => {
    const store = new BoundedEventStore();
    const priming = await store.storeEvent('a', {} as JSONRPCMessage);
    const a1 = await store.storeEvent('a', note(1));
    await store.storeEvent('b', note(100));
    const a2 = await store.storeEvent('a', note(2));
    const a3 = await store.storeEvent('a', note(3));
    expect(await store.getStreamIdForEventId(a1)).toBe('a');
    const fromStart = await replay(store, priming);
    expect(fromStart.streamId).toBe('a');
    expect(fromStart.sent.map(([id]) => id)).toEqual([a1, a2, a3]);
    expect((await replay(store, a2)).sent.map(([, m]) => m)).toEqual([note(3)]);
    expect((await replay(store, a3)).sent).toEqual([]);
  });

  it('refuses ids it never made: unparseable, from the future, or of a stream it never had', async () => {
    const store = new BoundedEventStore();
    await store.storeEvent('a', note(1));
    for (const bad of ['', 'nonsense', 'a.0', 'a.x', 'a.99', 'other-session-stream.1']) {
      expect(await store.getStreamIdForEventId(bad), bad).toBeUndefined();
      await expect(replay(store, bad), bad).rejects.toThrow(/was not sent by this MCP session/);
    }
  });

  it('drops the oldest events past the count, bytes and age bounds, but always keeps the newest', async () => {
    let now = 0;
    const store = new BoundedEventStore({ maxEvents: 3, maxBytes: 10_000, maxAgeMs: 1_000 }, () => now);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await store.storeEvent('s', note(i)));
    expect(store.size).toBe(3);
    expect(store.dropped).toBe(2);
    // Events 0 and 1 are gone: resuming after 0 gets what is still held.
    expect((await replay(store, ids[0]!)).sent.map(([id]) => id)).toEqual(ids.slice(2));
    now = 5_000;
    const late = await store.storeEvent('s', note(9));
    expect(store.size).toBe(1);
    expect((await replay(store, ids[4]!)).sent.map(([id]) => id)).toEqual([late]);
    const big = new BoundedEventStore({ maxEvents: 100, maxBytes: 500, maxAgeMs: 60_000 });
    await big.storeEvent('s', note(1));
    await big.storeEvent('s', note(2, 5_000));
    expect(big.size).toBe(1);
    expect(big.heldBytes).toBeGreaterThan(500);
  });

  it('holds to its bounds and replays exactly the later held events, for any sequence of events and clock steps', async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('store' as const), stream: fc.constantFrom('p', 'q', '_GET_stream'), pad: fc.nat(400) }),
      fc.record({ kind: fc.constant('tick' as const), ms: fc.nat(700) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 120 }), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 200, max: 4_000 }), async (ops, maxEvents, maxBytes) => {
        let now = 0;
        const limits = { maxEvents, maxBytes, maxAgeMs: 1_500 };
        const store = new BoundedEventStore(limits, () => now);
        const all: Array<{ id: string; stream: string; atMs: number; m: JSONRPCMessage }> = [];
        for (const o of ops) {
          if (o.kind === 'tick') {
            now += o.ms;
            continue;
          }
          const m = note(all.length, o.pad);
          all.push({ id: await store.storeEvent(o.stream, m), stream: o.stream, atMs: now, m });
          expect(store.size).toBeLessThanOrEqual(maxEvents);
          expect(store.size === 1 || store.heldBytes <= maxBytes).toBe(true);
        }
        if (all.length === 0) return;
        const newest = all.at(-1)!;
        // Resuming after the event before the newest of its stream always gets the newest.
        const sameStream = all.filter((e) => e.stream === newest.stream);
        if (sameStream.length >= 2) {
          const got = await replay(store, sameStream.at(-2)!.id);
          expect(got.sent.at(-1)?.[0]).toBe(newest.id);
        }
        // Whatever is replayed is a suffix of the stream's events, in order, after the given id.
        for (const from of all) {
          const got = await replay(store, from.id);
          expect(got.streamId).toBe(from.stream);
          const later = all.filter((e) => e.stream === from.stream && all.indexOf(e) > all.indexOf(from)).map((e) => e.id);
          const ids = got.sent.map(([id]) => id);
          expect(later.slice(later.length - ids.length)).toEqual(ids);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('EventBudget', () => {
  it("holds every store together to its bytes: aged events go first, then the adding store's own oldest; a closed store gives its bytes back", async () => {
    let now = 0;
    const budget = new EventBudget(3_000);
    const limits = { maxEvents: 1_000, maxBytes: 1_000_000, maxAgeMs: 10_000 };
    const quiet = new BoundedEventStore(limits, () => now, budget);
    const busy = new BoundedEventStore(limits, () => now, budget);
    for (let i = 0; i < 4; i++) await quiet.storeEvent('q', note(i, 500));
    expect(budget.used).toBe(quiet.heldBytes);
    now = 1_000;
    await busy.storeEvent('b', note(100, 500));
    expect(quiet.size).toBe(4);
    // Over the budget while the quiet store's events are fresh: the busy store drops its own oldest.
    for (let i = 0; i < 6; i++) await busy.storeEvent('b', note(200 + i, 500));
    expect(quiet.size).toBe(4);
    expect(busy.size).toBe(1);
    expect(budget.used).toBeLessThanOrEqual(3_000);
    // Once the quiet store's events aged out (and the busy store's not), they go first.
    now = 10_500;
    for (let i = 0; i < 3; i++) await busy.storeEvent('b', note(300 + i, 500));
    expect(quiet.size).toBe(1);
    expect(busy.size).toBe(4);
    expect(budget.used).toBe(quiet.heldBytes + busy.heldBytes);
    expect(budget.used).toBeLessThanOrEqual(3_000);
    busy.close();
    expect(budget.used).toBe(quiet.heldBytes);
    // A closed store keeps nothing more.
    await busy.storeEvent('b', note(400, 500));
    expect(busy.size).toBe(0);
    expect(budget.used).toBe(quiet.heldBytes);
  });
});

describe('EventBudget, a quiet session with one large result', () => {
  it("is not exempt: when the budget is short, the other stores' newest events go too", async () => {
    const budget = new EventBudget(10_000);
    const limits = { maxEvents: 1_000, maxBytes: 1_000_000, maxAgeMs: 600_000 };
    const quiet = new BoundedEventStore(limits, () => 0, budget);
    const busy = new BoundedEventStore(limits, () => 0, budget);
    await quiet.storeEvent('q', note(1, 8_000));
    expect(quiet.size).toBe(1);
    await busy.storeEvent('b', note(2, 4_000));
    expect(quiet.size).toBe(0);
    expect(busy.size).toBe(1);
    expect(budget.used).toBe(busy.heldBytes);
    expect(budget.used).toBeLessThanOrEqual(10_000);
  });
});
