import { describe, expect, it, vi } from 'vitest';
import { connectionIdOf, type WorkerCommandMessage, type WorkerConnectionParentEvent } from '../../machines/coordinator/worker-connection.machine.js';
import { connectionInput, coordinatorTree, HOST_ID, simulatedClock, startHost, T0 } from '../helpers/coordinator-fakes.js';

const TIMEOUT = 3_000;
const ID = connectionIdOf('w1');
type Lost = Extract<WorkerConnectionParentEvent, { type: 'worker.lost' }>;

function startConnection() {
  const clock = simulatedClock();
  const tree = coordinatorTree(clock);
  const host = startHost({ connection: tree.connection }, clock);
  const connection = host.spawn('connection', ID, connectionInput('w1', 'reg-1', clock.now(), TIMEOUT));
  return {
    clock,
    streams: tree.streams,
    host,
    connection,
    value: () => connection.getSnapshot().value as unknown,
    status: () => connection.getSnapshot().status as string,
    lost: () => host.toHost('worker.lost', ID) as Lost[],
    online: () => host.toHost('worker.online', ID),
    open(streamId = 'stream-1') {
      connection.send({ type: 'stream.opened', streamId, atMs: clock.now() });
    },
    heartbeat() {
      connection.send({ type: 'worker.heartbeat', atMs: clock.now() });
    },
    command(command: WorkerCommandMessage) {
      connection.send({ type: 'worker.command', command });
    },
  };
}

const destroy = (sessionId: string): WorkerCommandMessage => ({ kind: 'destroy_session', sessionId });

describe('worker connection: waiting for the task stream', () => {
  it('goes online when the stream opens, runs the stream logic with the stream id and tells its parent', () => {
    const c = startConnection();
    expect(c.value()).toBe('awaitingStream');
    c.clock.increment(500);
    c.open('stream-7');
    expect(c.value()).toEqual({ online: 'watching' });
    expect(c.online()).toEqual([{ type: 'worker.online', workerId: 'w1', registrationId: 'reg-1', atMs: T0 + 500 }]);
    expect(c.streams.open().map((s) => s.input)).toEqual([{ workerId: 'w1', registrationId: 'reg-1', streamId: 'stream-7' }]);
  });

  it('is lost at the deadline when neither a stream nor a heartbeat arrives, dated when the deadline ran out', () => {
    const c = startConnection();
    c.clock.increment(TIMEOUT - 1);
    expect(c.value()).toBe('awaitingStream');
    c.clock.increment(1);
    expect(c.status()).toBe('done');
    expect(c.lost()).toEqual([
      { type: 'worker.lost', workerId: 'w1', registrationId: 'reg-1', reason: 'no task stream and no heartbeat before the deadline', atMs: T0 + TIMEOUT, deregistered: false },
    ]);
  });

  it('moves the deadline with every heartbeat while it waits', () => {
    const c = startConnection();
    for (let i = 0; i < 5; i++) {
      c.clock.increment(TIMEOUT - 1);
      c.heartbeat();
    }
    expect(c.value()).toBe('awaitingStream');
    c.clock.increment(TIMEOUT - 1);
    expect(c.lost()).toHaveLength(0);
    c.clock.increment(1);
    expect(c.lost()[0]!.atMs).toBe(T0 + 6 * (TIMEOUT - 1) + 1);
  });

  it('writes no command before the stream is open', () => {
    const c = startConnection();
    c.command(destroy('early'));
    c.open();
    expect(c.streams.commands()).toEqual([]);
  });
});

describe('worker connection: online', () => {
  it('stays online while heartbeats arrive within the timeout, and announces online once', () => {
    const c = startConnection();
    c.open();
    for (let i = 0; i < 20; i++) {
      c.clock.increment(TIMEOUT - 1);
      c.heartbeat();
    }
    expect(c.value()).toEqual({ online: 'watching' });
    expect(c.lost()).toHaveLength(0);
    expect(c.online()).toHaveLength(1);
  });

  it('is lost when heartbeats stop, with atMs the last heartbeat plus the timeout, and stops the stream', () => {
    const c = startConnection();
    c.open();
    c.clock.increment(1_000);
    c.heartbeat();
    c.clock.increment(TIMEOUT + 5_000); // the timer fires at last seen + timeout, whatever the clock says after
    expect(c.lost()).toEqual([{ type: 'worker.lost', workerId: 'w1', registrationId: 'reg-1', reason: 'heartbeats stopped', atMs: T0 + 1_000 + TIMEOUT, deregistered: false }]);
    expect(c.streams.all[0]!.stopped).toBe(true);
  });

  it('writes every command to the stream in order while online', () => {
    const c = startConnection();
    c.open();
    const commands: WorkerCommandMessage[] = [destroy('a'), { kind: 'cancel_task', taskId: 't1', sessionId: 'a', reason: 'x' }, destroy('b')];
    for (const cmd of commands) c.command(cmd);
    expect(c.streams.commands('w1')).toEqual(commands);
  });

  it('is lost when the task stream closes, dated by the close', () => {
    const c = startConnection();
    c.open();
    c.clock.increment(200);
    c.streams.of('w1').close('EOF');
    expect(c.status()).toBe('done');
    expect(c.lost()).toEqual([{ type: 'worker.lost', workerId: 'w1', registrationId: 'reg-1', reason: 'task stream closed: EOF', atMs: T0 + 200, deregistered: false }]);
    expect(c.streams.open()).toHaveLength(0);
  });

  it('is lost when the stream logic fails, and the failure goes no further', () => {
    const c = startConnection();
    c.open();
    c.streams.of('w1').crash('socket reset');
    expect(c.lost()).toHaveLength(1);
    expect(c.lost()[0]!.reason).toBe('task stream failed');
    expect(c.host.errors).toEqual([]);
    expect(c.host.root.getSnapshot().status).toBe('active');
  });

  it('keeps the first stream when a second one opens for the same registration', () => {
    const c = startConnection();
    c.open('stream-1');
    c.open('stream-2');
    expect(c.streams.all.map((s) => s.input.streamId)).toEqual(['stream-1']);
    expect(c.online()).toHaveLength(1);
  });
});

describe('worker connection: lost', () => {
  it('is lost with deregistered true when the worker deregisters before it opened its stream', () => {
    const c = startConnection();
    c.clock.increment(50);
    c.connection.send({ type: 'worker.deregister', reason: 'shutdown', atMs: c.clock.now() });
    expect(c.status()).toBe('done');
    expect(c.lost()).toEqual([{ type: 'worker.lost', workerId: 'w1', registrationId: 'reg-1', reason: 'deregistered: shutdown', atMs: T0 + 50, deregistered: true }]);
  });

  it('after a deregistration, waits for the stream to end (the last results may still be on their way), then is lost as deregistered', () => {
    const c = startConnection();
    c.open();
    c.clock.increment(50);
    c.connection.send({ type: 'worker.deregister', reason: 'shutdown', atMs: c.clock.now() });
    expect(c.status()).toBe('active');
    expect(c.lost()).toEqual([]);
    c.clock.increment(20);
    c.streams.of('w1').close('EOF');
    expect(c.status()).toBe('done');
    expect(c.lost()).toEqual([{ type: 'worker.lost', workerId: 'w1', registrationId: 'reg-1', reason: 'deregistered: shutdown', atMs: T0 + 70, deregistered: true }]);
  });

  it('is lost as deregistered when the stream does not end within 5 s of the deregistration', () => {
    const c = startConnection();
    c.open();
    c.connection.send({ type: 'worker.deregister', reason: 'shutdown', atMs: c.clock.now() });
    c.clock.increment(4_999);
    expect(c.status()).toBe('active');
    c.clock.increment(1);
    expect(c.status()).toBe('done');
    expect(c.lost()).toEqual([expect.objectContaining({ reason: 'deregistered: shutdown', deregistered: true })]);
  });

  it('is lost when its shard closes it, not as a deregistration', () => {
    const c = startConnection();
    c.open();
    c.connection.send({ type: 'connection.close', reason: 'replaced', atMs: c.clock.now() });
    expect(c.lost()).toEqual([expect.objectContaining({ reason: 'replaced', deregistered: false })]);
  });

  it('reports the loss exactly once, ignores everything after and writes nothing more', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {}); // XState warns of events sent to a final actor
    const c = startConnection();
    c.open();
    c.streams.of('w1').close('EOF');
    c.connection.send({ type: 'worker.deregister', reason: 'late', atMs: c.clock.now() });
    c.heartbeat();
    c.command(destroy('late'));
    c.clock.increment(60_000);
    expect(c.lost()).toHaveLength(1);
    expect(c.streams.commands()).toEqual([]);
    expect(c.host.toHost(`xstate.done.actor.${ID}`)).toHaveLength(1);
    expect(c.host.received(HOST_ID, 'worker.lost')).toHaveLength(1);
    warn.mockRestore();
  });
});
