/**
 * The Stately inspector's CPU budget, against a real WebSocket server on 127.0.0.1 and a real
 * actor: within budget every event arrives, in order; out of credit, each actor's events fold
 * into its latest state (one snapshot saying how many were skipped), the actor still ends on its
 * current state, and the log says so once when it starts and once when it ends. The clock is the
 * test's: the inspector's "cost" is what the clock says.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { assign, createActor, setup } from 'xstate';
import { WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../src/log/logger.js';
import { COALESCED, startStatelyInspector, type StatelyInspector } from '../../src/inspection/stately.js';

const counter = setup({ types: { context: {} as { n: number }, events: {} as { type: 'inc' } } }).createMachine({
  id: 'counter',
  context: { n: 0 },
  on: { inc: { actions: assign({ n: ({ context }) => context.n + 1 }) } },
});

interface Sent {
  type: string;
  event?: { type: string; skipped?: number };
  snapshot?: { context?: { n: number } };
}

const until = async (what: () => boolean, ms = 5_000) => {
  const t0 = Date.now();
  while (!what()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

let cleanup: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanup.reverse()) c();
  cleanup = [];
});

async function setupInspector(budget: number, now: () => number) {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => server.once('listening', r));
  const received: Sent[] = [];
  server.on('connection', (ws) => ws.on('message', (d) => received.push(JSON.parse(String(d)) as Sent)));
  const logs: Array<{ level: string; msg: string }> = [];
  const logger = {
    info: (_o: unknown, msg: string) => logs.push({ level: 'info', msg }),
    warn: (_o: unknown, msg: string) => logs.push({ level: 'warn', msg }),
  } as unknown as Logger;
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const inspector: StatelyInspector = startStatelyInspector({ url, processName: 'test', logger, budget, now });
  cleanup.push(() => server.close(), () => inspector.stop());
  await until(() => inspector.connected());
  const actor = createActor(counter, { inspect: inspector.listener }).start();
  cleanup.push(() => actor.stop());
  return { received, logs, inspector, actor };
}

describe('the Stately inspector within its CPU budget', () => {
  it('sends every event in order while the work costs nothing', async () => {
    const { received, inspector, actor } = await setupInspector(0.03, () => 0);
    for (let i = 0; i < 200; i++) actor.send({ type: 'inc' });
    await until(() => received.filter((m) => m.type === '@xstate.snapshot').length >= 201);
    const counts = received.filter((m) => m.type === '@xstate.snapshot').map((m) => m.snapshot!.context!.n);
    expect(counts).toEqual(Array.from({ length: 201 }, (_, i) => i));
    expect(received.filter((m) => m.type === '@xstate.event' && m.event!.type === 'inc')).toHaveLength(200);
    expect(inspector.coalesced()).toBe(0);
  });

  it('out of credit, folds an actor\'s events into its latest state, and says so once at each end', async () => {
    let clock = 0;
    let costPerReading = 0;
    const { received, logs, inspector, actor } = await setupInspector(0.03, () => (clock += costPerReading));
    await until(() => received.some((m) => m.type === '@xstate.actor'));
    // Each reading of the clock now says 10 ms went by inside the inspector: a turn of 1,000 events spends its credit at once.
    costPerReading = 10;
    for (let i = 0; i < 1_000; i++) actor.send({ type: 'inc' });
    await until(() => inspector.coalesced() > 0);
    for (let i = 0; i < 1_000; i++) actor.send({ type: 'inc' });
    // Work is free again and time passes: the credit comes back and the marked actor is sent as it is now.
    costPerReading = 0;
    clock += 1_000_000;
    await until(() => inspector.pending() === 0 && received.some((m) => m.event?.type === COALESCED));
    const snapshots = received.filter((m) => m.type === '@xstate.snapshot');
    expect(snapshots.at(-1)!.snapshot!.context!.n).toBe(2_000);
    const folded = received.filter((m) => m.event?.type === COALESCED);
    expect(folded).toHaveLength(1);
    // Every event is either sent or counted in the folded snapshot: none vanishes unaccounted.
    const sentIncs = received.filter((m) => m.type === '@xstate.event' && m.event!.type === 'inc').length;
    const sentSnapshots = snapshots.length - 1 - folded.length; // less the initial one and the folded one
    expect(sentIncs).toBeLessThan(2_000);
    expect(sentIncs + sentSnapshots + folded[0]!.event!.skipped!).toBe(4_000);
    expect(inspector.dropped()).toBe(0);
    // Events after catching up are sent as they happen again.
    actor.send({ type: 'inc' });
    await until(() => received.at(-1)?.snapshot?.context?.n === 2_001);
    expect(logs.filter((l) => l.level === 'warn' && l.msg.includes('CPU budget'))).toHaveLength(1);
    expect(logs.filter((l) => l.level === 'info' && l.msg.includes('back within its CPU budget'))).toHaveLength(1);
  });
});
