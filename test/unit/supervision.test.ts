import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay, defaultBackoff, hasRestartBudget, recordRestart, shouldRestart, type BackoffPolicy, type RestartIntensity } from '../../machines/supervision.js';

const policy: BackoffPolicy = { initialMs: 100, maxMs: 5_000, factor: 2 };
const mid = () => 0.5;

describe('backoffDelay', () => {
  it('starts at initialMs and doubles with each consecutive failure when the jitter is neutral', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, policy, mid))).toEqual([100, 200, 400, 800, 1_600, 3_200]);
  });

  it('never exceeds maxMs, however many failures and whatever the jitter', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
        expect(backoffDelay(attempt, policy, () => r)).toBeLessThanOrEqual(policy.maxMs);
      }),
    );
    expect(backoffDelay(1_000, policy, () => 0.999)).toBe(policy.maxMs);
    expect(backoffDelay(Number.MAX_SAFE_INTEGER, defaultBackoff, mid)).toBe(defaultBackoff.maxMs);
  });

  it('keeps the jitter within ±20% of the un-jittered delay', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
        const raw = Math.min(policy.maxMs, policy.initialMs * policy.factor ** attempt);
        const d = backoffDelay(attempt, policy, () => r);
        expect(d).toBeGreaterThanOrEqual(Math.floor(raw * 0.8));
        expect(d).toBeLessThanOrEqual(Math.min(policy.maxMs, Math.ceil(raw * 1.2)));
      }),
    );
  });

  it('never shrinks from one attempt to the next at the same jitter', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 60 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
        expect(backoffDelay(attempt + 1, policy, () => r)).toBeGreaterThanOrEqual(backoffDelay(attempt, policy, () => r));
      }),
    );
  });

  it('treats a negative attempt as the first one', () => {
    expect(backoffDelay(-3, policy, mid)).toBe(100);
  });

  it('uses Math.random for the jitter by default and stays within bounds', () => {
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(2, policy);
      expect(d).toBeGreaterThanOrEqual(320);
      expect(d).toBeLessThanOrEqual(480);
    }
  });
});

describe('restart intensity', () => {
  const intensity: RestartIntensity = { maxRestarts: 3, windowMs: 1_000 };

  it('allows maxRestarts restarts within the window and refuses the next one', () => {
    let history: number[] = [];
    for (const t of [0, 100, 200]) {
      expect(hasRestartBudget(history, t, intensity)).toBe(true);
      history = recordRestart(history, t, intensity);
    }
    expect(history).toEqual([0, 100, 200]);
    expect(hasRestartBudget(history, 300, intensity)).toBe(false);
  });

  it('forgets restarts once they are windowMs old', () => {
    const history = [0, 100, 200];
    expect(hasRestartBudget(history, 999, intensity)).toBe(false);
    expect(hasRestartBudget(history, 1_000, intensity)).toBe(true);
    expect(recordRestart(history, 1_150, intensity)).toEqual([200, 1_150]);
  });

  it('keeps the recorded history within maxRestarts when every restart asked for budget first', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 500 }), { maxLength: 60 }), (gaps) => {
        let now = 0;
        let history: number[] = [];
        for (const gap of gaps) {
          now += gap;
          if (hasRestartBudget(history, now, intensity)) history = recordRestart(history, now, intensity);
          expect(history.filter((t) => now - t < intensity.windowMs).length).toBeLessThanOrEqual(intensity.maxRestarts);
        }
      }),
    );
  });

  it('restarts permanent children always, transient ones only after an abnormal exit, temporary ones never', () => {
    expect(shouldRestart('permanent', false)).toBe(true);
    expect(shouldRestart('permanent', true)).toBe(true);
    expect(shouldRestart('transient', true)).toBe(true);
    expect(shouldRestart('transient', false)).toBe(false);
    expect(shouldRestart('temporary', true)).toBe(false);
    expect(shouldRestart('temporary', false)).toBe(false);
  });
});
