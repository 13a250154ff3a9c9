import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allSlots, choose, emptyPlacement, setSlot, slotOf, updateSlot, type PlacementIndex, type WorkerSlot } from '../../machines/coordinator/placement.js';

const slot = (overrides: Partial<WorkerSlot> = {}): WorkerSlot => ({ registrationId: 'reg', instanceId: 'inst', maxSessions: 4, load: 0, online: true, ...overrides });

function indexOf(slots: Record<string, WorkerSlot>): PlacementIndex {
  let index = emptyPlacement();
  for (const [id, s] of Object.entries(slots)) index = setSlot(index, id, s);
  return index;
}

/** The rule, by brute force: online and below max only; load asc, free desc, id asc. */
function bruteForce(slots: Map<string, WorkerSlot>): string {
  const candidates = [...slots.entries()].filter(([, s]) => s.online && s.load < s.maxSessions);
  candidates.sort(([aId, a], [bId, b]) => a.load - b.load || b.maxSessions - b.load - (a.maxSessions - a.load) || (aId < bId ? -1 : aId > bId ? 1 : 0));
  return candidates[0]?.[0] ?? '';
}

// Enough ids that many share one of the 32 groups.
const workerId = fc.integer({ min: 0, max: 79 }).map((n) => `w${n}`);
const slotArb = fc.record({
  registrationId: fc.constantFrom('reg-a', 'reg-b'),
  instanceId: fc.constantFrom('inst-a', 'inst-b'),
  maxSessions: fc.integer({ min: 0, max: 6 }),
  load: fc.integer({ min: 0, max: 7 }),
  online: fc.boolean(),
});
type Op = { kind: 'set'; id: string; slot: WorkerSlot } | { kind: 'update'; id: string; patch: Partial<WorkerSlot> } | { kind: 'remove'; id: string };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('set' as const), id: workerId, slot: slotArb }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('update' as const),
      id: workerId,
      patch: fc.record({ load: fc.integer({ min: 0, max: 7 }), online: fc.boolean(), maxSessions: fc.integer({ min: 0, max: 6 }) }, { requiredKeys: [] }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), id: workerId }) },
);

function apply(index: PlacementIndex, model: Map<string, WorkerSlot>, op: Op): PlacementIndex {
  switch (op.kind) {
    case 'set':
      model.set(op.id, op.slot);
      return setSlot(index, op.id, op.slot);
    case 'update': {
      const before = model.get(op.id);
      if (before) model.set(op.id, { ...before, ...op.patch });
      return updateSlot(index, op.id, op.patch);
    }
    case 'remove':
      model.delete(op.id);
      return setSlot(index, op.id, undefined);
  }
}

describe('placement: choosing a worker', () => {
  it('always chooses what a brute-force least-loaded scan chooses, over any sequence of changes', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => {
        let index = emptyPlacement();
        const model = new Map<string, WorkerSlot>();
        for (const op of ops) {
          index = apply(index, model, op);
          const expected = bruteForce(model);
          const got = choose(index, '');
          if (expected === '') expect(got.ok).toBe(false);
          else expect(got).toEqual({ ok: true, workerId: expected });
          expect(index.online).toBe([...model.values()].filter((s) => s.online).length);
        }
        expect(new Map(allSlots(index))).toEqual(model);
        for (const [id, s] of model) expect(slotOf(index, id)).toEqual(s);
      }),
      { numRuns: 300 },
    );
  });

  it('answers a requested worker by its own slot only: NOT_FOUND when unknown or offline, CAPACITY_EXHAUSTED when full', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), workerId, (ops, requested) => {
        let index = emptyPlacement();
        const model = new Map<string, WorkerSlot>();
        for (const op of ops) index = apply(index, model, op);
        const s = model.get(requested);
        const got = choose(index, requested);
        if (!s || !s.online) expect(got).toMatchObject({ ok: false, code: 'NOT_FOUND' });
        else if (s.load >= s.maxSessions) expect(got).toMatchObject({ ok: false, code: 'CAPACITY_EXHAUSTED' });
        else expect(got).toEqual({ ok: true, workerId: requested });
      }),
      { numRuns: 300 },
    );
  });

  it('breaks equal loads by the most free slots, then by the smallest id', () => {
    expect(choose(indexOf({ a: slot({ maxSessions: 2 }), b: slot({ maxSessions: 5 }) }), '')).toEqual({ ok: true, workerId: 'b' });
    expect(choose(indexOf({ b: slot(), a: slot() }), '')).toEqual({ ok: true, workerId: 'a' });
    expect(choose(indexOf({ a: slot({ load: 1 }), b: slot() }), '')).toEqual({ ok: true, workerId: 'b' });
  });

  it('never chooses a worker that is offline or at its maximum, even when it is the least loaded', () => {
    const index = indexOf({ a: slot({ online: false }), b: slot({ load: 2, maxSessions: 2 }), c: slot({ load: 3 }) });
    expect(choose(index, '')).toEqual({ ok: true, workerId: 'c' });
  });

  it('names the requested worker and its limit in its refusals', () => {
    const index = indexOf({ full: slot({ load: 3, maxSessions: 3 }), away: slot({ online: false }) });
    expect(choose(index, 'nope')).toEqual({ ok: false, code: 'NOT_FOUND', message: 'worker_id: no worker named "nope" is connected' });
    expect(choose(index, 'away')).toMatchObject({ ok: false, code: 'NOT_FOUND', message: expect.stringContaining('"away"') });
    expect(choose(index, 'full')).toEqual({ ok: false, code: 'CAPACITY_EXHAUSTED', message: 'worker full already runs its maximum of 3 sessions' });
  });

  it('says no worker is connected when none is online, and how many are full otherwise', () => {
    expect(choose(emptyPlacement(), '')).toMatchObject({ ok: false, code: 'CAPACITY_EXHAUSTED', message: expect.stringContaining('no worker is connected') });
    expect(choose(indexOf({ a: slot({ online: false }) }), '')).toMatchObject({ message: expect.stringContaining('no worker is connected') });
    const full = indexOf({ a: slot({ load: 1, maxSessions: 1 }), b: slot({ load: 2, maxSessions: 2 }), c: slot({ online: false }) });
    expect(choose(full, '')).toEqual({ ok: false, code: 'CAPACITY_EXHAUSTED', message: 'all 2 connected workers are at their session limit; destroy a session or add a worker' });
  });
});

describe('placement: structural sharing', () => {
  it('copies at most one group per change and keeps every untouched group and slot the same object', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 20, maxLength: 80 }), opArb, (ops, change) => {
        let index = emptyPlacement();
        const model = new Map<string, WorkerSlot>();
        for (const op of ops) index = apply(index, model, op);
        const next = apply(index, model, change);
        const groups = new Set([...Object.keys(index.groups), ...Object.keys(next.groups)]);
        const changed = [...groups].filter((g) => index.groups[g] !== next.groups[g]);
        expect(changed.length).toBeLessThanOrEqual(1);
        // Inside the copied group, every other worker's slot is the same object.
        for (const g of changed) {
          const before = index.groups[g]?.workers ?? {};
          const after = next.groups[g]?.workers ?? {};
          for (const id of Object.keys(after)) if (id !== change.id && id in before) expect(after[id]).toBe(before[id]);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('leaves the index untouched when an update names a worker it does not hold', () => {
    const index = indexOf({ a: slot() });
    expect(updateSlot(index, 'zz', { load: 3 })).toBe(index);
  });

  it('returns the same index when an update changes nothing, and a new one when any field changes', () => {
    const index = indexOf({ a: slot({ load: 2 }) });
    expect(updateSlot(index, 'a', { load: 2, online: true })).toBe(index);
    const changed = updateSlot(index, 'a', { load: 2, online: false });
    expect(changed).not.toBe(index);
    expect(slotOf(changed, 'a')).toMatchObject({ load: 2, online: false });
  });

  it('never changes the index it was given', () => {
    const index = indexOf({ a: slot(), b: slot({ load: 1 }) });
    const frozen = JSON.stringify(index);
    setSlot(index, 'a', slot({ load: 4 }));
    updateSlot(index, 'b', { online: false });
    setSlot(index, 'b', undefined);
    expect(JSON.stringify(index)).toBe(frozen);
  });
});
