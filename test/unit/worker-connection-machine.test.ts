import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SimulatedClock } from 'xstate';
import { workerConnectionMachine, type StreamHandle, type WorkerConnectionParentEvent } from '../../machines/worker-connection.machine.js';
import { idleCallback, underParent } from '../helpers/machine-fakes.js';

const stream: StreamHandle = { kind: 'stream-handle' };

function startConnection(heartbeatTimeoutMs = 3_000) {
  const clock = new SimulatedClock();
  const streams = idleCallback<{ workerId: string; registrationId: string; stream: StreamHandle }>();
  const machine = workerConnectionMachine.provide({ actors: { workerStream: streams.logic } });
  const t = underParent(machine, { workerId: 'w1', registrationId: 'reg-1', maxSessions: 4, isolation: 'bwrap', hostname: 'h', heartbeatTimeoutMs }, { clock });
  const value = () => t.child.getSnapshot().value as unknown;
  const lost = () => t.sent<Extract<WorkerConnectionParentEvent, { type: 'worker.lost' }>>('worker.lost');
  return { ...t, clock, streams, value, lost };
}

describe('worker connection machine', () => {
  beforeEach(() => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  it('waits for the task stream, then goes online, runs the stream actor and tells the parent', () => {
    const c = startConnection();
    expect(c.value()).toBe('awaitingStream');
    c.child.send({ type: 'stream.opened', stream });
    expect(c.value()).toEqual({ online: 'watching' });
    expect(c.sent('worker.online')).toEqual([{ type: 'worker.online', workerId: 'w1', registrationId: 'reg-1' }]);
    expect(c.streams.active().map((s) => s.input)).toEqual([{ workerId: 'w1', registrationId: 'reg-1', stream }]);
  });

  it('is lost when neither a stream nor a heartbeat arrives before heartbeatTimeout', () => {
    const c = startConnection(3_000);
    c.clock.increment(2_999);
    expect(c.value()).toBe('awaitingStream');
    c.clock.increment(1);
    expect(c.child.getSnapshot().status).toBe('done');
    expect(c.lost()).toHaveLength(1);
    expect(c.lost()[0]!.reason).toContain('no task stream');
  });

  it('stays awaiting the stream while heartbeats arrive', () => {
    const c = startConnection(3_000);
    for (let i = 0; i < 5; i++) {
      c.clock.increment(2_000);
      c.child.send({ type: 'worker.heartbeat' });
    }
    expect(c.value()).toBe('awaitingStream');
    expect(c.lost()).toHaveLength(0);
  });

  it('stays online for as long as heartbeats keep arriving within heartbeatTimeout', () => {
    const c = startConnection(3_000);
    c.child.send({ type: 'stream.opened', stream });
    for (let i = 0; i < 20; i++) {
      c.clock.increment(2_900);
      c.child.send({ type: 'worker.heartbeat' });
    }
    expect(c.value()).toEqual({ online: 'watching' });
    expect(c.lost()).toHaveLength(0);
    expect(c.sent('worker.online')).toHaveLength(1);
  });

  it('is lost with worker.lost to the parent when heartbeats stop for heartbeatTimeout', () => {
    const c = startConnection(3_000);
    c.child.send({ type: 'stream.opened', stream });
    c.clock.increment(1_000);
    c.child.send({ type: 'worker.heartbeat' });
    c.clock.increment(2_999);
    expect(c.lost()).toHaveLength(0);
    c.clock.increment(1);
    expect(c.lost()).toEqual([{ type: 'worker.lost', workerId: 'w1', registrationId: 'reg-1', reason: 'heartbeats stopped' }]);
    expect(c.streams.active()).toHaveLength(0);
  });

  it('is lost when the task stream closes', () => {
    const c = startConnection();
    c.child.send({ type: 'stream.opened', stream });
    c.child.send({ type: 'stream.closed', reason: 'EOF' });
    expect(c.child.getSnapshot().status).toBe('done');
    expect(c.lost()[0]!.reason).toBe('task stream closed: EOF');
    expect(c.streams.active()).toHaveLength(0);
  });

  it('is lost when the stream actor fails', () => {
    const c = startConnection();
    c.child.send({ type: 'stream.opened', stream });
    c.streams.last().crash('socket reset');
    expect(c.lost()[0]!.reason).toBe('task stream failed');
    expect(c.errors).toEqual([]);
  });

  it.each(['awaitingStream', 'online'] as const)('is lost when the worker deregisters (from %s)', (from) => {
    const c = startConnection();
    if (from === 'online') c.child.send({ type: 'stream.opened', stream });
    c.child.send({ type: 'worker.deregister', reason: 'shutdown' });
    expect(c.child.getSnapshot().status).toBe('done');
    expect(c.lost()[0]!.reason).toBe('deregistered: shutdown');
  });

  it('reports the loss exactly once and ignores everything after', () => {
    const c = startConnection();
    c.child.send({ type: 'stream.opened', stream });
    c.child.send({ type: 'stream.closed', reason: 'EOF' });
    c.child.send({ type: 'worker.deregister', reason: 'late' });
    c.child.send({ type: 'worker.heartbeat' });
    c.clock.increment(60_000);
    expect(c.lost()).toHaveLength(1);
  });

  it('keeps the first stream when a second stream.opened arrives', () => {
    const c = startConnection();
    c.child.send({ type: 'stream.opened', stream });
    c.child.send({ type: 'stream.opened', stream: { kind: 'stream-handle' } });
    expect(c.streams.instances).toHaveLength(1);
    expect(c.sent('worker.online')).toHaveLength(1);
  });
});
