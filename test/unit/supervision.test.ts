import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay, defaultBackoff, nextSeed, reasonOf, shouldRestart, unitOf, type BackoffPolicy } from '../../machines/supervision.js';
import { supervisorIdOf, supervisorInput } from '../../machines/supervisor.machine.js';

const policy: BackoffPolicy = { initialMs: 100, maxMs: 5_000, factor: 2 };
/** 0.5 makes the jitter factor exactly 1 (0.8 + 0.4 × 0.5). */
const neutral = 0.5;
const unit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

describe('backoffDelay', () => {
  it('starts at initialMs and multiplies by factor with each consecutive failure when the jitter is neutral', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, policy, neutral))).toEqual([100, 200, 400, 800, 1_600, 3_200]);
    expect([0, 1, 2].map((n) => backoffDelay(n, { initialMs: 10, maxMs: 1_000, factor: 3 }, neutral))).toEqual([10, 30, 90]);
  });

  it('never exceeds maxMs, however many failures and whatever the jitter', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), unit, (attempt, u) => {
        expect(backoffDelay(attempt, policy, u)).toBeLessThanOrEqual(policy.maxMs);
      }),
    );
    expect(backoffDelay(1_000, policy, 0.999)).toBe(policy.maxMs);
    expect(backoffDelay(Number.MAX_SAFE_INTEGER, defaultBackoff, neutral)).toBe(defaultBackoff.maxMs);
  });

  it('keeps the jitter within ±20% of the un-jittered delay', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), unit, (attempt, u) => {
        const raw = Math.min(policy.maxMs, policy.initialMs * policy.factor ** attempt);
        const d = backoffDelay(attempt, policy, u);
        expect(d).toBeGreaterThanOrEqual(Math.floor(raw * 0.8));
        expect(d).toBeLessThanOrEqual(Math.min(policy.maxMs, Math.ceil(raw * 1.2)));
      }),
    );
    expect(backoffDelay(0, policy, 0)).toBe(80);
    expect(backoffDelay(0, policy, 0.99999)).toBe(120);
  });

  it('never shrinks from one attempt to the next at the same jitter', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 60 }), unit, (attempt, u) => {
        expect(backoffDelay(attempt + 1, policy, u)).toBeGreaterThanOrEqual(backoffDelay(attempt, policy, u));
      }),
    );
  });

  it('treats a negative attempt as the first one', () => {
    expect(backoffDelay(-3, policy, neutral)).toBe(100);
  });

  it('is a function of its arguments only (no hidden randomness)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 30 }), unit, (attempt, u) => {
        expect(backoffDelay(attempt, policy, u)).toBe(backoffDelay(attempt, policy, u));
      }),
    );
  });
});

describe('the seeded jitter generator', () => {
  it('gives the same sequence for the same seed and a different one for another seed', () => {
    const run = (seed: number) => {
      const out: number[] = [];
      let s = seed;
      for (let i = 0; i < 8; i++) out.push((s = nextSeed(s)));
      return out;
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
  });

  it('never yields 0, even from a 0 seed, and maps every seed into [0, 1)', () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (seed) => {
        const next = nextSeed(seed);
        expect(next).not.toBe(0);
        expect(Number.isInteger(next)).toBe(true);
        const u = unitOf(next);
        expect(u).toBeGreaterThanOrEqual(0);
        expect(u).toBeLessThan(1);
      }),
    );
    expect(nextSeed(0)).not.toBe(0);
    expect(unitOf(0)).toBe(0);
    expect(unitOf(-1)).toBeLessThan(1);
  });

  it('spreads the units over [0, 1) rather than sticking to one value', () => {
    let s = 1;
    const units: number[] = [];
    for (let i = 0; i < 1_000; i++) units.push(unitOf((s = nextSeed(s))));
    const low = units.filter((u) => u < 0.5).length;
    expect(low).toBeGreaterThan(400);
    expect(low).toBeLessThan(600);
  });
});

describe('restart types', () => {
  it('restarts permanent children always, transient ones only after an abnormal exit, temporary ones never', () => {
    expect(shouldRestart('permanent', false)).toBe(true);
    expect(shouldRestart('permanent', true)).toBe(true);
    expect(shouldRestart('transient', true)).toBe(true);
    expect(shouldRestart('transient', false)).toBe(false);
    expect(shouldRestart('temporary', true)).toBe(false);
    expect(shouldRestart('temporary', false)).toBe(false);
  });
});

describe('reasonOf', () => {
  it('turns Errors, strings and other values into one plain string', () => {
    expect(reasonOf(new Error('disk full'))).toBe('disk full');
    expect(reasonOf('just text')).toBe('just text');
    expect(reasonOf({ code: 7 })).toBe('{"code":7}');
    expect(reasonOf(undefined)).toBe('undefined');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(reasonOf(cyclic)).toBe('[object Object]');
  });
});

describe('supervisor specs', () => {
  it('names a supervisor after its child', () => {
    expect(supervisorIdOf('session:s1')).toBe('sup:session:s1');
    expect(supervisorIdOf('link')).toBe('sup:link');
  });

  it('fills the usual defaults and keeps what the spec gives', () => {
    expect(supervisorInput({ childId: 'pool', restart: 'permanent' })).toEqual({
      childId: 'pool',
      restart: 'permanent',
      intensity: { maxRestarts: 5, windowMs: 60_000 },
      backoff: { initialMs: 250, maxMs: 30_000, factor: 2 },
      shutdownTimeoutMs: 5_000,
      stopEvent: null,
      childInput: {},
      seed: 1,
    });
    expect(supervisorInput({ childId: 'x', restart: 'temporary', seed: 9, stopEvent: { type: 'x.stop' } })).toMatchObject({ restart: 'temporary', seed: 9, stopEvent: { type: 'x.stop' } });
  });
});
