import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay, nextSeed, shouldRestart, unitOf, type BackoffPolicy, type RestartType } from '../../machines/supervision.js';
import type { SupervisorParentEvent } from '../../machines/supervisor.machine.js';
import { supervisorHarness } from '../helpers/machine-fakes.js';

type Exited = Extract<SupervisorParentEvent, { type: 'supervisor.child_exited' }>;
type Escalated = Extract<SupervisorParentEvent, { type: 'supervisor.escalated' }>;
type ExitKind = 'normal' | 'crash' | 'abnormal';

const exitReason: Record<ExitKind, string> = {
  normal: 'exited normally',
  crash: 'crashed: boom',
  abnormal: 'exited abnormally: exit code 3',
};

function endChild(h: ReturnType<typeof supervisorHarness>, kind: ExitKind): void {
  if (kind === 'crash') h.crash('boom');
  else if (kind === 'abnormal') h.finish({ exit: 'abnormal', reason: 'exit code 3' });
  else h.finish({ exit: 'normal', reason: 'done' });
}

/** The delays the supervisor must wait before each of `n` consecutive restarts (all within one window), from its seed. */
function expectedDelays(n: number, policy: BackoffPolicy, seed: number): number[] {
  const out: number[] = [];
  let s = seed;
  for (let k = 0; k < n; k++) {
    s = nextSeed(s);
    out.push(backoffDelay(k, policy, unitOf(s)));
  }
  return out;
}

describe('supervisor: restart types', () => {
  const matrix: [RestartType, ExitKind, boolean][] = [
    ['permanent', 'normal', true],
    ['permanent', 'crash', true],
    ['permanent', 'abnormal', true],
    ['transient', 'normal', false],
    ['transient', 'crash', true],
    ['transient', 'abnormal', true],
    ['temporary', 'normal', false],
    ['temporary', 'crash', false],
    ['temporary', 'abnormal', false],
  ];

  it.each(matrix)('a %s child that ends with a %s exit is restarted: %s', (restart, kind, restarts) => {
    const h = supervisorHarness({ restart });
    expect(h.starts).toHaveLength(1);
    endChild(h, kind);
    expect(h.sent<Exited>('supervisor.child_exited')).toEqual([
      { type: 'supervisor.child_exited', childId: 'kid', abnormal: kind !== 'normal', reason: exitReason[kind], restarting: restarts },
    ]);
    if (restarts) {
      expect(h.value()).toBe('backoff');
      h.waitRestart();
      expect(h.starts).toHaveLength(2);
      expect(h.starts[1]!.input.supervision).toEqual({ restarts: 1, lastExit: exitReason[kind] });
      expect(h.status()).toBe('active');
    } else {
      expect(h.status()).toBe('done');
      expect(h.output()).toEqual({ childId: 'kid', end: 'exited', reason: exitReason[kind] });
      expect(h.sent('xstate.done.actor.child')).toHaveLength(1);
      h.clock.increment(60_000);
      expect(h.starts).toHaveLength(1);
    }
    expect(h.errors).toEqual([]);
  });

  it('starts the child with its input, under its childId as systemId, with supervision { restarts: 0, lastExit: "" }', () => {
    const h = supervisorHarness({ restart: 'permanent', childId: 'session:s9', childInput: { a: 1 } });
    expect(h.starts[0]!.input).toEqual({ a: 1, supervision: { restarts: 0, lastExit: '' } });
    expect(h.parent.system.get('session:s9')).toBe(h.supervisor.getSnapshot().children['session:s9']);
  });

  it('tells the restarted child how many restarts came before and how the previous run ended', () => {
    const h = supervisorHarness({ restart: 'permanent', intensity: { maxRestarts: 10, windowMs: 60_000 } });
    h.crash('first');
    h.waitRestart();
    h.finish({ exit: 'abnormal', reason: 'exit code 9' });
    h.waitRestart();
    h.finish();
    h.waitRestart();
    expect(h.starts.map((s) => s.input.supervision)).toEqual([
      { restarts: 0, lastExit: '' },
      { restarts: 1, lastExit: 'crashed: first' },
      { restarts: 2, lastExit: 'exited abnormally: exit code 9' },
      { restarts: 3, lastExit: 'exited normally' },
    ]);
  });

  it('passes the input given by supervisor.update_input to the next restart, not to the running child', () => {
    const h = supervisorHarness({ restart: 'permanent', childInput: { name: 'coordinator', env: {} } });
    const first = h.running();
    h.supervisor.send({ type: 'supervisor.update_input', childInput: { name: 'coordinator', env: { GRPC_PORT: '4242' } } });
    expect(h.running()).toBe(first);
    expect(h.starts).toHaveLength(1);
    h.crash();
    h.waitRestart();
    expect(h.starts[1]!.input).toEqual({ name: 'coordinator', env: { GRPC_PORT: '4242' }, supervision: { restarts: 1, lastExit: 'crashed: boom' } });
    h.crash();
    h.waitRestart();
    expect(h.starts[2]!.input.env).toEqual({ GRPC_PORT: '4242' });
  });

  it('removes a finished child from its children before starting the next one', () => {
    const h = supervisorHarness({ restart: 'permanent' });
    const first = h.running();
    h.crash();
    expect(h.supervisor.getSnapshot().children.kid).toBeUndefined();
    h.waitRestart();
    expect(h.running()).not.toBe(first);
    expect(Object.keys(h.supervisor.getSnapshot().children)).toEqual(['kid']);
  });
});

describe('supervisor: backoff', () => {
  const policy: BackoffPolicy = { initialMs: 100, maxMs: 1_000, factor: 2 };
  const measure = (seed: number, n: number): number[] => {
    const h = supervisorHarness({ restart: 'permanent', backoff: policy, intensity: { maxRestarts: 100, windowMs: 10_000_000 }, seed });
    const waited: number[] = [];
    for (let i = 0; i < n; i++) {
      h.crash();
      waited.push(h.waitRestart());
    }
    return waited;
  };

  it('waits growing delays, capped at maxMs, each the seeded jitter of the exponential step', () => {
    const waited = measure(7, 8);
    expect(waited).toEqual(expectedDelays(8, policy, 7));
    waited.forEach((d, k) => {
      const raw = Math.min(policy.maxMs, policy.initialMs * policy.factor ** k);
      expect(d).toBeGreaterThanOrEqual(Math.floor(raw * 0.8));
      expect(d).toBeLessThanOrEqual(Math.min(policy.maxMs, Math.ceil(raw * 1.2)));
    });
    // the first four bands ([80,120], [160,240], [320,480], [640,960]) do not overlap: strictly growing
    expect(waited[0]!).toBeLessThan(waited[1]!);
    expect(waited[1]!).toBeLessThan(waited[2]!);
    expect(waited[2]!).toBeLessThan(waited[3]!);
    for (const d of waited.slice(4)) {
      expect(d).toBeGreaterThanOrEqual(800);
      expect(d).toBeLessThanOrEqual(1_000);
    }
  });

  it('waits the same delays for the same seed and different ones for another seed', () => {
    expect(measure(1234, 6)).toEqual(measure(1234, 6));
    expect(measure(1234, 6)).not.toEqual(measure(99, 6));
  });

  it('does not start the child before its delay has passed', () => {
    const h = supervisorHarness({ restart: 'permanent', backoff: policy, seed: 3 });
    const [delay] = expectedDelays(1, policy, 3);
    h.crash();
    h.clock.increment(delay! - 1);
    expect(h.value()).toBe('backoff');
    expect(h.starts).toHaveLength(1);
    h.clock.increment(1);
    expect(h.value()).toBe('running');
    expect(h.starts).toHaveLength(2);
  });

  it('starts again from the initial delay once earlier restarts have left the window', () => {
    const h = supervisorHarness({ restart: 'permanent', backoff: policy, intensity: { maxRestarts: 10, windowMs: 5_000 }, seed: 21 });
    for (let i = 0; i < 4; i++) {
      h.crash();
      h.waitRestart();
    }
    h.clock.increment(5_000);
    h.crash();
    const waited = h.waitRestart();
    expect(waited).toBeGreaterThanOrEqual(80);
    expect(waited).toBeLessThanOrEqual(120);
  });
});

describe('supervisor: restart intensity', () => {
  const fast: BackoffPolicy = { initialMs: 10, maxMs: 10, factor: 1 };

  it('escalates to its parent when a child needs more than maxRestarts restarts within windowMs', () => {
    const h = supervisorHarness({ restart: 'permanent', intensity: { maxRestarts: 3, windowMs: 10_000 }, backoff: fast });
    for (let i = 0; i < 3; i++) {
      h.crash(`crash ${i + 1}`);
      h.waitRestart();
    }
    expect(h.sent('supervisor.escalated')).toEqual([]);
    h.crash('crash 4');
    expect(h.status()).toBe('done');
    const [escalated] = h.sent<Escalated>('supervisor.escalated');
    expect(escalated).toMatchObject({ type: 'supervisor.escalated', childId: 'kid' });
    expect(escalated!.reason).toContain('restarted 3 times within 10000 ms');
    expect(escalated!.reason).toContain('crashed: crash 4');
    expect(h.output()).toEqual({ childId: 'kid', end: 'escalated', reason: escalated!.reason });
    expect(h.supervisor.getSnapshot().children.kid).toBeUndefined();
    h.clock.increment(60_000);
    expect(h.starts).toHaveLength(4);
    expect(h.errors).toEqual([]);
  });

  it('tells its parent the exit that escalates is not followed by a restart', () => {
    const h = supervisorHarness({ restart: 'permanent', intensity: { maxRestarts: 1, windowMs: 60_000 }, backoff: fast });
    h.crash('first');
    h.waitRestart();
    h.crash('second');
    const exits = h.sent<Extract<SupervisorParentEvent, { type: 'supervisor.child_exited' }>>('supervisor.child_exited');
    expect(exits.map((e) => [e.restarting, e.abnormal])).toEqual([
      [true, true],
      [false, true],
    ]);
    expect(h.sent('supervisor.escalated')).toHaveLength(1);
  });

  it('counts abnormal outputs and normal exits of a permanent child toward the intensity too', () => {
    const h = supervisorHarness({ restart: 'permanent', intensity: { maxRestarts: 2, windowMs: 10_000 }, backoff: fast });
    h.finish({ exit: 'abnormal', reason: 'exit code 1' });
    h.waitRestart();
    h.finish();
    h.waitRestart();
    h.finish({ exit: 'abnormal', reason: 'exit code 1' });
    expect(h.output()?.end).toBe('escalated');
  });

  it('forgets restarts older than the window', () => {
    const h = supervisorHarness({ restart: 'permanent', intensity: { maxRestarts: 3, windowMs: 10_000 }, backoff: fast });
    h.crash(); // t=0: counted until t=10000
    h.waitRestart();
    h.clock.increment(1_000);
    h.crash(); // t≈1010: counted until ≈11010
    h.waitRestart();
    h.crash();
    h.waitRestart();
    h.clock.set(10_000);
    h.crash(); // the first restart has left the window: 3 in it again, allowed
    expect(h.value()).toBe('backoff');
    h.waitRestart();
    h.crash(); // still before ≈11010: a fourth within the window
    expect(h.output()?.end).toBe('escalated');
  });

  it('never escalates a child that crashes less often than the intensity allows', () => {
    const h = supervisorHarness({ restart: 'permanent', intensity: { maxRestarts: 2, windowMs: 1_000 }, backoff: fast });
    for (let i = 0; i < 20; i++) {
      h.crash();
      h.waitRestart();
      h.clock.increment(600); // two restarts per 1.2 s at most
    }
    expect(h.status()).toBe('active');
    expect(h.starts).toHaveLength(21);
  });
});

describe('supervisor: stopping', () => {
  it('sends the stop event and ends stopped when the child finishes in time, without restarting it', () => {
    const h = supervisorHarness({ restart: 'permanent' }, { childOptions: { finishOnStop: 'child.stop' } });
    h.stop();
    expect(h.childReceived).toEqual([{ type: 'child.stop' }]);
    expect(h.status()).toBe('done');
    expect(h.output()).toEqual({ childId: 'kid', end: 'stopped', reason: 'exited normally' });
    expect(h.sent('supervisor.child_exited')).toEqual([]);
    h.clock.increment(60_000);
    expect(h.starts).toHaveLength(1);
  });

  it('stops the child outright after shutdownTimeoutMs when it does not finish', () => {
    const h = supervisorHarness({ restart: 'permanent', shutdownTimeoutMs: 1_000 });
    const child = h.running();
    h.stop();
    expect(h.value()).toBe('stopping');
    expect(h.childReceived).toEqual([{ type: 'child.stop' }]);
    h.clock.increment(999);
    expect(h.value()).toBe('stopping');
    expect(child.getSnapshot().status).toBe('active');
    h.clock.increment(1);
    expect(h.status()).toBe('done');
    expect(h.output()?.end).toBe('stopped');
    expect(child.getSnapshot().status).toBe('stopped');
    expect(h.starts).toHaveLength(1);
  });

  it('stops the child at once when it has no stop event', () => {
    const h = supervisorHarness({ restart: 'permanent', stopEvent: null });
    const child = h.running();
    h.stop();
    expect(h.status()).toBe('done');
    expect(h.output()?.end).toBe('stopped');
    expect(child.getSnapshot().status).toBe('stopped');
    expect(h.childReceived).toEqual([]);
  });

  it('sends the stop event given with supervisor.stop instead of the configured one', () => {
    const h = supervisorHarness({ restart: 'transient', stopEvent: { type: 'session.drain', atMs: 0 } });
    h.stop({ type: 'session.drain', atMs: 1_234 });
    expect(h.childReceived).toEqual([{ type: 'session.drain', atMs: 1_234 }]);
  });

  it('ends stopped, never restarting, when stopped during the backoff', () => {
    const h = supervisorHarness({ restart: 'permanent' });
    h.crash();
    expect(h.value()).toBe('backoff');
    h.stop();
    expect(h.status()).toBe('done');
    expect(h.output()).toEqual({ childId: 'kid', end: 'stopped', reason: 'crashed: boom' });
    h.clock.increment(60_000);
    expect(h.starts).toHaveLength(1);
  });

  it('does not restart a child that crashes while it is being stopped', () => {
    const h = supervisorHarness({ restart: 'permanent' });
    h.stop();
    h.crash('crashed while draining');
    expect(h.status()).toBe('done');
    expect(h.output()).toEqual({ childId: 'kid', end: 'stopped', reason: 'crashed: crashed while draining' });
    h.clock.increment(60_000);
    expect(h.starts).toHaveLength(1);
  });
});

describe('supervisor: transparency', () => {
  it("forwards the child's other parent-bound events to its own parent, unchanged", () => {
    const h = supervisorHarness({ restart: 'permanent' });
    h.tell({ type: 'session.changed', report: { state: 'READY' } } as never);
    h.tell({ type: 'link.collect' });
    expect(h.received.filter((e) => !e.type.startsWith('xstate.'))).toEqual([
      { type: 'session.changed', report: { state: 'READY' } },
      { type: 'link.collect' },
    ]);
  });

  it('keeps forwarding while the child is being stopped', () => {
    const h = supervisorHarness({ restart: 'permanent' });
    h.stop();
    h.tell({ type: 'last.words' });
    expect(h.sent('last.words')).toHaveLength(1);
  });

  it('does not forward xstate.* or supervisor.* events the child sends', () => {
    const h = supervisorHarness({ restart: 'permanent' });
    h.tell({ type: 'xstate.custom' });
    h.tell({ type: 'supervisor.child_exited', childId: 'fake' } as never);
    h.tell({ type: 'after.them' });
    expect(h.received.map((e) => e.type)).toEqual(['after.them']);
  });

  it("does not pass the child's own done and error events up: the parent hears of them as supervisor.child_exited", () => {
    const h = supervisorHarness({ restart: 'permanent' });
    h.crash();
    h.waitRestart();
    h.finish();
    expect(h.received.map((e) => e.type)).toEqual(['supervisor.child_exited', 'supervisor.child_exited']);
  });
});

describe('supervisor: property', () => {
  it('never restarts more than maxRestarts times within any window before escalating, escalates exactly when the budget is spent, and never restarts a temporary child', () => {
    // Crashes weigh most: runs that reach the intensity limit are the interesting ones.
    const kind = fc.oneof(
      { arbitrary: fc.constant<ExitKind>('crash'), weight: 4 },
      { arbitrary: fc.constant<ExitKind>('abnormal'), weight: 2 },
      { arbitrary: fc.constant<ExitKind>('normal'), weight: 1 },
    );
    const step = fc.record({ gap: fc.integer({ min: 0, max: 1_500 }), kind });
    fc.assert(
      fc.property(
        fc.constantFrom<RestartType>('permanent', 'transient', 'temporary'),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 50, max: 3_000 }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.array(step, { maxLength: 40 }),
        (restart, maxRestarts, windowMs, seed, steps) => {
          const h = supervisorHarness({ restart, intensity: { maxRestarts, windowMs }, backoff: { initialMs: 5, maxMs: 200, factor: 2 }, seed });
          const decisions: number[] = []; // when the supervisor decided to restart (observed)
          const inWindow = (now: number) => decisions.filter((d) => now - d < windowMs).length;
          for (const s of steps) {
            h.clock.increment(s.gap);
            if (h.status() !== 'active') break;
            if (h.value() !== 'running') continue; // in backoff: no child to end
            const now = h.clock.now();
            const budgetLeft = inWindow(now) < maxRestarts;
            endChild(h, s.kind);
            if (!shouldRestart(restart, s.kind !== 'normal')) {
              expect(h.output()?.end).toBe('exited');
              break;
            }
            if (budgetLeft) {
              expect(h.value()).toBe('backoff');
              decisions.push(now);
              expect(inWindow(now)).toBeLessThanOrEqual(maxRestarts);
            } else {
              expect(h.output()?.end).toBe('escalated');
              expect(h.sent('supervisor.escalated')).toHaveLength(1);
              break;
            }
          }
          if (restart === 'temporary') expect(h.starts).toHaveLength(1);
          // every start after the first follows one restart decision
          expect(h.starts.length - 1).toBeLessThanOrEqual(decisions.length);
          expect(h.starts.length - 1).toBeGreaterThanOrEqual(decisions.length - 1);
          expect(h.errors).toEqual([]);
        },
      ),
      { numRuns: 200 },
    );
  });
});
