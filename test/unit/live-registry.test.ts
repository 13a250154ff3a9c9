/** The live view's records, from a real actor tree's inspection events: tree order, states that move, bounded events, stops swept, and a worker that can speak only for itself. */
import { describe, expect, it } from 'vitest';
import { assign, createActor, setup, stopChild, type AnyActorRef } from 'xstate';
import { EVENTS_PER_ACTOR, LiveRegistry, definitionOf } from '../../src/live/registry.js';

const child = setup({}).createMachine({ id: 'child', initial: 'idle', states: { idle: { on: { go: 'busy' } }, busy: { on: { done: 'idle' } } } });
const parent = setup({ actors: { child } }).createMachine({
  id: 'parent',
  context: { n: 0 },
  initial: 'up',
  states: {
    up: {
      on: {
        add: { actions: assign(({ spawn, context }) => (spawn('child', { id: `c${context.n}`, systemId: `child:${context.n}` }), { n: context.n + 1 })) },
        remove: { actions: stopChild('c0') },
        ping: {},
      },
    },
  },
});

/** A clock two seconds on at every reading: the sorted list is never served from its one-second cache. */
const clock = () => {
  let t = 0;
  return () => (t += 2_000);
};

describe('LiveRegistry', () => {
  it('keeps every actor in tree order, follows its state, bounds its events, and forgets stopped ones', () => {
    const live = new LiveRegistry('coordinator', false, clock());
    const root = createActor(parent, { inspect: live.listener, systemId: 'root' }).start();
    root.send({ type: 'add' });
    root.send({ type: 'add' });
    const ids = live.sorted().map((a) => [a.id, a.depth]);
    expect(ids).toEqual([['root', 0], ['child:0', 1], ['child:1', 1]]);
    const c0 = root.getSnapshot().children['c0'] as AnyActorRef;
    c0.send({ type: 'go' });
    const rec = live.sorted().find((a) => a.id === 'child:0')!;
    expect(rec).toMatchObject({ machine: 'child', value: 'busy', status: 'active', process: 'coordinator' });
    expect(rec.events.at(-1)!.type).toBe('go');
    for (let i = 0; i < EVENTS_PER_ACTOR * 3; i++) root.send({ type: 'ping' });
    expect(live.get(live.sorted()[0]!.key)!.events).toHaveLength(EVENTS_PER_ACTOR);
    root.send({ type: 'remove' });
    expect(live.sweep()).toBe(1);
    expect(live.sorted().map((a) => a.id)).toEqual(['root', 'child:1']);
    expect(live.definition('child', 'coordinator')).toMatchObject({ id: 'child', initial: 'idle', states: { idle: { on: { go: 'busy' } } } });
  });

  it('takes forwarded records for the worker that sent them only, and drops them with it', () => {
    const live = new LiveRegistry('coordinator', false, clock());
    const rec = (key: string) => ({ key, process: '', id: key, machine: 'session', parent: '', value: 'READY', status: 'active', events: [], updatedAtMs: 1 });
    live.applyRemote('worker-1', { reset: true, actors: [rec('worker-1/x:1'), rec('worker-2/x:1')], removed: ['coordinator/x:0'], definitions: { session: { id: 'session' } } });
    expect(live.sorted().map((a) => a.key)).toEqual(['worker-1/x:1']);
    expect(live.sorted()[0]!.process).toBe('worker-1');
    live.dropProcess('worker-1');
    expect(live.size).toBe(0);
  });

  it("never lets a worker (even one named like this process) touch this process's own records or definitions", () => {
    const live = new LiveRegistry('coordinator', false, clock());
    createActor(parent, { inspect: live.listener, systemId: 'root' }).start();
    const key = live.sorted()[0]!.key;
    const fake = { key, process: '', id: 'evil', machine: 'parent', parent: '', value: 'x', status: 'active', events: [], updatedAtMs: 1 };
    live.applyRemote('coordinator', { reset: true, actors: [fake], removed: [key], definitions: { parent: { id: 'evil' } } });
    live.dropProcess('coordinator', 's');
    expect(live.get(key)!.id).toBe('root');
    expect(live.definition('parent')).toMatchObject({ id: 'parent' });
    // A worker's machine of the same name is its own.
    live.applyRemote('worker-1', { reset: true, actors: [], removed: [], definitions: { parent: { id: 'theirs' } } });
    expect(live.definition('parent')).toMatchObject({ id: 'parent' });
    expect(live.definition('parent', 'worker-1')).toEqual({ id: 'theirs' });
  });

  it("does not let an old stream's end drop what the worker's new stream sent", () => {
    const live = new LiveRegistry('coordinator', false, clock());
    const rec = { key: 'worker-1/x:1', process: '', id: 'session:a', machine: 'session', parent: '', value: 'READY', status: 'active', events: [], updatedAtMs: 1 };
    live.applyRemote('worker-1', { reset: true, actors: [rec], removed: [], definitions: {} }, 'stream-old');
    live.applyRemote('worker-1', { reset: true, actors: [rec], removed: [], definitions: {} }, 'stream-new');
    live.dropProcess('worker-1', 'stream-old');
    expect(live.size).toBe(1);
    live.dropProcess('worker-1', 'stream-new');
    expect(live.size).toBe(0);
  });

  it('coalesces changes for a forwarder: one record per actor however many events', () => {
    const live = new LiveRegistry('worker-1', true, clock());
    const root = createActor(parent, { inspect: live.listener }).start();
    for (let i = 0; i < 100; i++) root.send({ type: 'ping' });
    const first = live.take(10);
    expect(first.actors).toHaveLength(1);
    expect(live.take(10).actors).toHaveLength(0);
  });

  it("keeps a definition's states and transitions, not its code", () => {
    const d = definitionOf({ id: 'm', context: { secret: 'x' }, entry: [() => 1], states: { a: { on: { e: { target: 'b', guard: { type: 'g', params: { k: 1 } }, actions: ['x'] } } }, b: { type: 'final' } } });
    expect(d).toEqual({ id: 'm', states: { a: { on: { e: { target: 'b', guard: { type: 'g' } } } }, b: { type: 'final' } } });
  });
});
