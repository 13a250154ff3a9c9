import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SimulatedClock } from 'xstate';
import { coordinatorLinkMachine, type CoordinatorLinkParentEvent, type Registration, type WorkerCommand } from '../../machines/coordinator-link.machine.js';
import { backoffDelay, type BackoffPolicy } from '../../machines/supervision.js';
import { controlledPromise, flush, idleCallback, taskSpec, underParent } from '../helpers/machine-fakes.js';

const policy: BackoffPolicy = { initialMs: 100, maxMs: 1_000, factor: 2 };
/** With Math.random pinned to 0.5 the jitter factor is exactly 1. */
const expectedDelay = (attempt: number) => backoffDelay(attempt, policy, () => 0.5);

function startLink() {
  const clock = new SimulatedClock();
  const register = controlledPromise<Registration, { workerId: string; attempt: number }>();
  const deregister = controlledPromise<void, { workerId: string; registrationId: string; reason: string }>();
  const heartbeats = idleCallback<{ workerId: string; registrationId: string; intervalMs: number }>();
  const streams = idleCallback<{ workerId: string; registrationId: string }>();
  const machine = coordinatorLinkMachine.provide({ actors: { register: register.logic, deregister: deregister.logic, heartbeats: heartbeats.logic, taskStream: streams.logic } });
  const t = underParent(machine, { workerId: 'w1', backoff: policy }, { clock });
  const value = () => t.child.getSnapshot().value as unknown;
  return {
    ...t,
    clock,
    register,
    deregister,
    heartbeats,
    streams,
    value,
    async succeed(registrationId = 'reg-1') {
      register.last().resolve({ registrationId, heartbeatIntervalMs: 500 });
      await flush();
    },
    async fail(message = 'connection refused') {
      register.last().reject(new Error(message));
      await flush();
    },
  };
}

describe('coordinator link machine', () => {
  beforeEach(() => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  it('registers, then holds heartbeats and the task stream while connected', async () => {
    const l = startLink();
    expect(l.value()).toBe('registering');
    expect(l.register.last().input).toEqual({ workerId: 'w1', attempt: 0 });
    await l.succeed('reg-7');
    expect(l.value()).toBe('connected');
    expect(l.sent('link.registered')).toEqual([{ type: 'link.registered', registrationId: 'reg-7' }]);
    expect(l.heartbeats.active().map((h) => h.input)).toEqual([{ workerId: 'w1', registrationId: 'reg-7', intervalMs: 500 }]);
    expect(l.streams.active().map((s) => s.input)).toEqual([{ workerId: 'w1', registrationId: 'reg-7' }]);
  });

  it('backs off after a failed registration and registers again when the delay has passed', async () => {
    const l = startLink();
    await l.fail('connection refused');
    expect(l.value()).toBe('backoff');
    expect(l.sent<CoordinatorLinkParentEvent>('link.down')).toEqual([{ type: 'link.down', reason: 'registration failed: connection refused' }]);
    l.clock.increment(expectedDelay(0) - 1);
    expect(l.register.calls).toHaveLength(1);
    l.clock.increment(1);
    expect(l.value()).toBe('registering');
    expect(l.register.calls).toHaveLength(2);
    expect(l.register.last().input).toEqual({ workerId: 'w1', attempt: 1 });
  });

  it('waits growing delays, capped at maxMs, between consecutive failed registrations', async () => {
    const l = startLink();
    const waited: number[] = [];
    for (let attempt = 0; attempt < 7; attempt++) {
      await l.fail();
      const calls = l.register.calls.length;
      let ms = 0;
      while (l.register.calls.length === calls) {
        l.clock.increment(10);
        ms += 10;
        if (ms > 100_000) throw new Error('never retried');
      }
      waited.push(ms);
    }
    expect(waited).toEqual([0, 1, 2, 3, 4, 5, 6].map(expectedDelay));
    expect(waited).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
  });

  it('starts the backoff over after a successful registration', async () => {
    const l = startLink();
    await l.fail();
    l.clock.increment(expectedDelay(0));
    await l.fail();
    l.clock.increment(expectedDelay(1));
    await l.succeed();
    expect(l.child.getSnapshot().context.attempt).toBe(0);
    l.child.send({ type: 'link.failed', reason: 'heartbeat rejected' });
    l.clock.increment(expectedDelay(0));
    expect(l.value()).toBe('registering');
    expect(l.register.last().input.attempt).toBe(1);
  });

  it.each(['heartbeats', 'streams'] as const)('backs off when the %s actor reports link.failed, stopping both', async (which) => {
    const l = startLink();
    await l.succeed();
    l[which].last().sendBack({ type: 'link.failed', reason: `${which} broke` });
    expect(l.value()).toBe('backoff');
    expect(l.sent<CoordinatorLinkParentEvent>('link.down')).toEqual([{ type: 'link.down', reason: `${which} broke` }]);
    expect(l.heartbeats.active()).toHaveLength(0);
    expect(l.streams.active()).toHaveLength(0);
    l.clock.increment(expectedDelay(0));
    await l.succeed('reg-2');
    expect(l.heartbeats.active().map((h) => h.input.registrationId)).toEqual(['reg-2']);
  });

  it('forwards commands from the task stream to its parent while connected', async () => {
    const l = startLink();
    const commands: WorkerCommand[] = [
      { type: 'command.create', requestId: 'r1', sessionId: 's1', config: { env_vars: {}, allow_network: false, language: 'python' } },
      { type: 'command.task', requestId: 'r2', spec: taskSpec('t1') },
      { type: 'command.cancel', requestId: 'r3', sessionId: 's1', taskId: 't1', reason: 'x' },
      { type: 'command.destroy', requestId: 'r4', sessionId: 's1', force: true },
    ];
    l.child.send(commands[0]!); // not connected yet: dropped
    await l.succeed();
    for (const c of commands) l.streams.last().sendBack(c);
    expect(l.received.filter((e) => e.type.startsWith('command.'))).toEqual(commands);
  });

  it('deregisters and closes (final) on link.deregister while connected', async () => {
    const l = startLink();
    await l.succeed('reg-1');
    l.child.send({ type: 'link.deregister', reason: 'worker shutting down' });
    expect(l.value()).toBe('deregistering');
    expect(l.heartbeats.active()).toHaveLength(0);
    expect(l.deregister.last().input).toEqual({ workerId: 'w1', registrationId: 'reg-1', reason: 'worker shutting down' });
    l.deregister.last().resolve();
    await flush();
    expect(l.child.getSnapshot().status).toBe('done');
    expect(l.sent('link.closed')).toEqual([{ type: 'link.closed' }]);
  });

  it('closes even when the deregister call fails', async () => {
    const l = startLink();
    await l.succeed();
    l.child.send({ type: 'link.deregister', reason: 'bye' });
    l.deregister.last().reject(new Error('coordinator gone'));
    await flush();
    expect(l.sent('link.closed')).toHaveLength(1);
  });

  it.each(['registering', 'backoff'] as const)('closes at once on link.deregister while %s, with nothing to deregister', async (from) => {
    const l = startLink();
    if (from === 'backoff') await l.fail();
    expect(l.value()).toBe(from);
    l.child.send({ type: 'link.deregister', reason: 'bye' });
    expect(l.child.getSnapshot().status).toBe('done');
    expect(l.deregister.calls).toHaveLength(0);
    expect(l.register.last().signal.aborted || l.register.last().settled).toBe(true);
    l.clock.increment(60_000);
    expect(l.register.calls).toHaveLength(1);
    expect(l.sent('link.closed')).toHaveLength(1);
  });
});
