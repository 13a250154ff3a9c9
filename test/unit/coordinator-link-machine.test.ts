import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backoffDelay, nextSeed, unitOf, type BackoffPolicy } from '../../machines/supervision.js';
import type { CoordinatorLinkParentEvent } from '../../machines/worker/coordinator-link.machine.js';
import type { WorkerCommand } from '../../machines/worker/worker.machine.js';
import { flush, linkHarness, sessionDescription, sessionReport, taskSpec } from '../helpers/machine-fakes.js';

const policy: BackoffPolicy = { initialMs: 100, maxMs: 1_000, factor: 2 };

/** The delays after consecutive failures 0..n-1: attempt k uses the k-th seed of the sequence (the input seed first). */
function expectedDelays(seed: number, n: number): number[] {
  const out: number[] = [];
  let s = seed;
  for (let k = 0; k < n; k++) {
    out.push(backoffDelay(k, policy, unitOf(s)));
    s = nextSeed(s);
  }
  return out;
}

type Harness = ReturnType<typeof linkHarness>;

/** Fails registration `n` times in a row, measuring how long each backoff lasted (until the link collected again). */
async function measureBackoffs(l: Harness, n: number): Promise<number[]> {
  const waited: number[] = [];
  for (let i = 0; i < n; i++) {
    l.answerCollect();
    await l.fail();
    const collects = l.sent('link.collect').length;
    let ms = 0;
    while (l.sent('link.collect').length === collects) {
      l.clock.increment(1);
      if (++ms > 100_000) throw new Error('never registered again');
    }
    waited.push(ms);
  }
  return waited;
}

const commands: WorkerCommand[] = [
  { type: 'command.create', requestId: 'r1', description: sessionDescription(), atMs: 1 },
  { type: 'command.task', requestId: 'r2', spec: taskSpec('t1'), atMs: 2 },
  { type: 'command.cancel', requestId: 'r3', sessionId: 's1', taskId: 't1', reason: 'x', atMs: 3 },
  { type: 'command.destroy', requestId: 'r4', sessionId: 's1', atMs: 4 },
  { type: 'command.put_metadata', requestId: 'r5', sessionId: 's1', metadata: { a: 'b' }, version: 2, atMs: 5 },
];
const forwarded = (l: Harness) => l.received.filter((e) => e.type.startsWith('command.'));

describe('coordinator link machine', () => {
  beforeEach(() => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  describe('registering', () => {
    it('stops retrying when the coordinator refuses the credential, telling the worker why; other failures back off', async () => {
      for (const code of ['UNAUTHENTICATED', 'PERMISSION_DENIED']) {
        const l = linkHarness({ backoff: policy });
        l.answerCollect();
        l.register.last().reject(Object.assign(new Error('invalid worker token'), { code }));
        await flush();
        expect(l.value()).toBe('refused');
        expect(l.sent('link.refused')).toEqual([{ type: 'link.refused', reason: "the coordinator refused this worker's credential: invalid worker token" }]);
        // No retry, however long it waits.
        const collects = l.sent('link.collect').length;
        l.clock.increment(60_000);
        expect(l.sent('link.collect')).toHaveLength(collects);
      }
      const l = linkHarness({ backoff: policy });
      l.answerCollect();
      l.register.last().reject(Object.assign(new Error('no route'), { code: 'UNAVAILABLE' }));
      await flush();
      expect(l.value()).toBe('backoff');
      expect(l.sent('link.refused')).toEqual([]);
    });

    it('asks the worker for its sessions first and registers only once it has them', async () => {
      const l = linkHarness({ backoff: policy });
      expect(l.value()).toEqual({ registering: 'collecting' });
      expect(l.sent('link.collect')).toEqual([{ type: 'link.collect' }]);
      expect(l.register.calls).toHaveLength(0);
      const held = [sessionReport('READY', { sessionId: 's1' }), sessionReport('FAILED', { sessionId: 's2' })];
      l.answerCollect(held);
      expect(l.value()).toEqual({ registering: 'calling' });
      expect(l.register.last().input).toEqual({ workerId: 'w1', attempt: 0, sessions: held });
    });

    it('becomes connected on success: tells the worker, runs heartbeats at the given interval and opens the task stream', async () => {
      const l = linkHarness({ backoff: policy });
      l.answerCollect();
      await l.succeed('reg-7', 500, 1_234);
      expect(l.value()).toBe('connected');
      expect(l.sent<CoordinatorLinkParentEvent>('link.registered')).toEqual([{ type: 'link.registered', registrationId: 'reg-7', atMs: 1_234 }]);
      expect(l.heartbeats.active().map((h) => h.input)).toEqual([{ workerId: 'w1', registrationId: 'reg-7', intervalMs: 500 }]);
      expect(l.streams.active().map((s) => s.input)).toEqual([{ workerId: 'w1', registrationId: 'reg-7' }]);
    });
  });

  describe('backoff', () => {
    it('backs off after a failed registration, then collects the sessions again and registers with the new list', async () => {
      const l = linkHarness({ backoff: policy, seed: 11 });
      l.answerCollect([sessionReport('READY')]);
      await l.fail('connection refused');
      expect(l.value()).toBe('backoff');
      expect(l.sent<CoordinatorLinkParentEvent>('link.down')).toEqual([{ type: 'link.down', reason: 'registration failed: connection refused' }]);
      const [first] = expectedDelays(11, 1);
      l.clock.increment(first! - 1);
      expect(l.value()).toBe('backoff');
      expect(l.sent('link.collect')).toHaveLength(1);
      l.clock.increment(1);
      expect(l.value()).toEqual({ registering: 'collecting' });
      expect(l.sent('link.collect')).toHaveLength(2);
      expect(l.register.calls).toHaveLength(1);
      const now = [sessionReport('BUSY'), sessionReport('READY', { sessionId: 's2' })];
      l.answerCollect(now);
      expect(l.register.last().input).toEqual({ workerId: 'w1', attempt: 1, sessions: now });
    });

    it('waits growing delays, capped at maxMs, with jitter drawn from its seed', async () => {
      const l = linkHarness({ backoff: policy, seed: 11 });
      const waited = await measureBackoffs(l, 7);
      expect(waited).toEqual(expectedDelays(11, 7));
      expect(waited[0]!).toBeLessThan(waited[1]!);
      expect(waited[1]!).toBeLessThan(waited[2]!);
      expect(waited[2]!).toBeLessThan(waited[3]!);
      for (const d of waited) expect(d).toBeLessThanOrEqual(policy.maxMs);
      for (const d of waited.slice(4)) expect(d).toBeGreaterThanOrEqual(800);
    });

    it('waits the same delays for the same seed and different ones for another', async () => {
      const a = await measureBackoffs(linkHarness({ backoff: policy, seed: 77 }), 5);
      const b = await measureBackoffs(linkHarness({ backoff: policy, seed: 77 }), 5);
      const c = await measureBackoffs(linkHarness({ backoff: policy, seed: 78 }), 5);
      expect(a).toEqual(b);
      expect(a).not.toEqual(c);
    });

    it('starts the backoff over after a successful registration', async () => {
      const l = linkHarness({ backoff: policy, seed: 5 });
      await measureBackoffs(l, 2);
      l.answerCollect();
      expect(l.register.last().input.attempt).toBe(2);
      await l.succeed();
      expect(l.link.getSnapshot().context.attempt).toBe(0);
      l.link.send({ type: 'link.failed', reason: 'heartbeat rejected' });
      const waitedAfter = await (async () => {
        let ms = 0;
        const collects = l.sent('link.collect').length;
        while (l.sent('link.collect').length === collects) {
          l.clock.increment(1);
          ms++;
        }
        return ms;
      })();
      expect(waitedAfter).toBeGreaterThanOrEqual(80);
      expect(waitedAfter).toBeLessThanOrEqual(120);
      l.answerCollect();
      expect(l.register.last().input.attempt).toBe(1);
    });

    it.each(['heartbeats', 'streams'] as const)('backs off when the %s actor reports link.failed, stopping both', async (which) => {
      const l = linkHarness({ backoff: policy });
      l.answerCollect();
      await l.succeed();
      l[which].last().sendBack({ type: 'link.failed', reason: `${which} broke` });
      expect(l.value()).toBe('backoff');
      expect(l.sent<CoordinatorLinkParentEvent>('link.down')).toEqual([{ type: 'link.down', reason: `${which} broke` }]);
      expect(l.heartbeats.active()).toHaveLength(0);
      expect(l.streams.active()).toHaveLength(0);
      l.clock.increment(policy.maxMs);
      l.answerCollect();
      await l.succeed('reg-2');
      expect(l.heartbeats.active().map((h) => h.input.registrationId)).toEqual(['reg-2']);
      expect(l.streams.active().map((s) => s.input.registrationId)).toEqual(['reg-2']);
    });
  });

  describe('commands', () => {
    it('forwards the commands of the task stream to the worker while connected', async () => {
      const l = linkHarness({ backoff: policy });
      l.answerCollect();
      await l.succeed();
      for (const c of commands) l.streams.last().sendBack(c);
      expect(forwarded(l)).toEqual(commands);
    });

    it('forwards no command while registering or backing off', async () => {
      const l = linkHarness({ backoff: policy });
      l.link.send(commands[0]!);
      l.answerCollect();
      l.link.send(commands[1]!);
      await l.fail();
      l.link.send(commands[2]!);
      expect(forwarded(l)).toEqual([]);
    });
  });

  describe('closing', () => {
    it('deregisters on link.deregister while connected, keeping the task stream open until it is closed', async () => {
      const l = linkHarness({ backoff: policy });
      l.answerCollect();
      await l.succeed('reg-1');
      l.link.send({ type: 'link.deregister', reason: 'worker shutting down' });
      expect(l.value()).toBe('deregistering');
      expect(l.heartbeats.active()).toHaveLength(0);
      expect(l.streams.active()).toHaveLength(1);
      expect(l.deregister.last().input).toEqual({ workerId: 'w1', registrationId: 'reg-1', reason: 'worker shutting down' });
      l.deregister.last().resolve();
      await flush();
      expect(l.link.getSnapshot().status).toBe('done');
      expect(l.streams.active()).toHaveLength(0);
    });

    it('closes even when the deregister call fails', async () => {
      const l = linkHarness({ backoff: policy });
      l.answerCollect();
      await l.succeed();
      l.link.send({ type: 'link.deregister', reason: 'bye' });
      l.deregister.last().reject(new Error('coordinator gone'));
      await flush();
      expect(l.link.getSnapshot().status).toBe('done');
      expect(l.streams.active()).toHaveLength(0);
    });

    it.each(['collecting', 'calling', 'backoff'] as const)('closes at once on link.deregister while %s, with nothing to deregister and no retry', async (from) => {
      const l = linkHarness({ backoff: policy });
      if (from !== 'collecting') l.answerCollect();
      if (from === 'backoff') await l.fail();
      l.link.send({ type: 'link.deregister', reason: 'bye' });
      expect(l.link.getSnapshot().status).toBe('done');
      expect(l.deregister.calls).toHaveLength(0);
      if (from === 'calling') expect(l.register.last().signal.aborted).toBe(true);
      const collects = l.sent('link.collect').length;
      l.clock.increment(60_000);
      expect(l.sent('link.collect')).toHaveLength(collects);
    });
  });
});
