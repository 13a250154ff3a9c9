import { describe, expect, it, vi } from 'vitest';
import type { AnyActorRef } from 'xstate';
import { sessionProxyIdOf, sessionViewOf, type SessionProxyContext, type SessionProxySnapshot } from '../../machines/coordinator/session-proxy.machine.js';
import { shardIdOf, type ShardContext, type ShardInput, type ShardParentEvent } from '../../machines/coordinator/shard.machine.js';
import { taskProxyIdOf, type TaskProxyEmitted } from '../../machines/coordinator/task-proxy.machine.js';
import { connectionIdOf } from '../../machines/coordinator/worker-connection.machine.js';
import type { SessionReport } from '../../machines/domain/sessions.js';
import { coordinatorTree, errorOf, registration, sessionDescription, sessionReport, shardInput, simulatedClock, startHost, T0, taskSpec } from '../helpers/coordinator-fakes.js';

const SHARD = shardIdOf('w1');
const CONNECTION = connectionIdOf('w1');
type Load = Extract<ShardParentEvent, { type: 'shard.load' }>;
type Warning = Extract<ShardParentEvent, { type: 'coordinator.warning' }>;

function startShard(overrides: Partial<Omit<ShardInput, 'workerId'>> = {}) {
  const clock = simulatedClock();
  const tree = coordinatorTree(clock);
  const host = startHost({ shard: tree.shard }, clock);
  const shard = host.spawn('shard', SHARD, shardInput('w1', overrides));
  let streams = 0;
  let requests = 0;
  const t = {
    clock,
    tree,
    host,
    shard,
    ctx: () => shard.getSnapshot().context as ShardContext,
    register(registrationId: string, sessions: SessionReport[]) {
      shard.send({ type: 'shard.register', registration: registration(registrationId), sessions, atMs: clock.now() });
    },
    /** The worker opens its task stream (the root routes stream.opened to the connection). */
    open() {
      host.must(CONNECTION).send({ type: 'stream.opened', streamId: `stream-${++streams}`, atMs: clock.now() });
    },
    worker: () => tree.streams.of('w1'),
    loseStream(reason = 'EOF') {
      tree.streams.of('w1').close(reason);
    },
    proxy(sessionId: string): AnyActorRef {
      return host.must(sessionProxyIdOf(sessionId));
    },
    proxyCtx: (sessionId: string) => t.proxy(sessionId).getSnapshot().context as SessionProxyContext,
    view: (sessionId: string) => sessionViewOf(t.proxy(sessionId).getSnapshot() as SessionProxySnapshot),
    loads: () => host.toHost('shard.load', SHARD) as Load[],
    lastLoad: () => t.loads().at(-1),
    warnings: () => host.toHost('coordinator.warning', SHARD) as Warning[],
    bucketSizes: () => Object.fromEntries(Object.keys(t.ctx().buckets).map((b) => [b, Object.keys((host.must(b).getSnapshot() as { children: object }).children).length])),
    create(sessionId: string) {
      shard.send({ type: 'session.create', description: sessionDescription(sessionId), atMs: clock.now() });
    },
    submit(sessionId: string, taskId: string) {
      return host.ask(t.proxy(sessionId), { type: 'task.submit', requestId: `r${++requests}`, spec: taskSpec(taskId, sessionId), followerId: 'c', atMs: clock.now() }, ['task.accepted', 'task.rejected']);
    },
    destroy(sessionId: string, force = true) {
      t.proxy(sessionId).send({ type: 'session.destroy', requestId: `r${++requests}`, force, atMs: clock.now() });
    },
    outcomesOf: (taskId: string) => host.emitted<TaskProxyEmitted>('task.update', taskProxyIdOf(taskId)).filter((e) => e.update.type === 'outcome'),
  };
  return t;
}

const reports = (...ids: string[]) => ids.map((id) => sessionReport(id));

describe('shard: a registration', () => {
  it('spawns the registration\'s connection and a mirror proxy per listed session, unreachable until the stream opens', () => {
    const t = startShard();
    t.register('reg-1', [sessionReport('s1'), sessionReport('s2', { state: 'IDLE' })]);
    expect(t.host.must(CONNECTION).getSnapshot().value).toBe('awaitingStream');
    expect(t.view('s1')).toMatchObject({ state: 'READY', workerId: 'w1', unreachableSinceMs: T0 });
    expect(t.view('s2').state).toBe('IDLE');
    expect(t.proxyCtx('s1').reachable).toBe(false);
    expect(t.lastLoad()).toEqual({ type: 'shard.load', workerId: 'w1', sessions: 2, online: false, registration: registration('reg-1') });
    t.open();
    expect(t.proxyCtx('s1')).toMatchObject({ reachable: true, unreachableSinceMs: 0 });
    expect(t.proxyCtx('s2').reachable).toBe(true);
    expect(t.lastLoad()).toMatchObject({ sessions: 2, online: true });
    // No create for sessions the worker already holds.
    expect(t.tree.streams.commands('w1')).toEqual([]);
  });

  it('passes a later registration\'s reports to the proxies it already has instead of making new ones', () => {
    const t = startShard();
    t.register('reg-1', reports('s1'));
    t.open();
    const proxy = t.proxy('s1');
    t.register('reg-2', [sessionReport('s1', { state: 'IDLE' })]);
    expect(t.proxy('s1')).toBe(proxy);
    expect(t.view('s1').state).toBe('IDLE');
    expect(t.ctx().sessions).toBe(1);
  });

  it('marks the proxies its worker no longer lists FAILED, saying why', () => {
    const t = startShard();
    t.register('reg-1', reports('s1', 's2'));
    t.register('reg-2', reports('s1'));
    expect(t.view('s2')).toMatchObject({ state: 'FAILED', failureReason: expect.stringContaining('registered again without this session') });
    expect(t.view('s1')).toMatchObject({ state: 'READY', failureReason: '' });
  });

  it('re-registering while online first ends the tasks sent through the old registration WORKER_LOST', () => {
    const t = startShard();
    t.register('reg-1', reports('s1'));
    t.open();
    expect(t.submit('s1', 't1').type).toBe('task.accepted');
    const oldStream = t.worker();
    t.register('reg-2', reports('s1'));
    expect(t.outcomesOf('t1').map((e) => e.update)).toEqual([{ type: 'outcome', outcome: { type: 'error', error: expect.objectContaining({ code: 'WORKER_LOST', message: expect.stringContaining('registered again') }) } }]);
    expect(oldStream.stopped).toBe(true);
    expect(t.host.must(CONNECTION).getSnapshot()).toMatchObject({ value: 'awaitingStream', context: { registrationId: 'reg-2' } });
    expect(t.ctx()).toMatchObject({ online: false, registration: { registrationId: 'reg-2' } });
  });

  it('ignores online and lost news of a registration that is not the current one', () => {
    const t = startShard();
    t.register('reg-1', reports('s1'));
    t.register('reg-2', reports('s1'));
    t.shard.send({ type: 'worker.online', workerId: 'w1', registrationId: 'reg-1', atMs: t.clock.now() });
    expect(t.ctx().online).toBe(false);
    expect(t.proxyCtx('s1').reachable).toBe(false);
    t.open();
    t.shard.send({ type: 'worker.lost', workerId: 'w1', registrationId: 'reg-1', reason: 'old', atMs: t.clock.now(), deregistered: false });
    expect(t.ctx().online).toBe(true);
    expect(t.proxyCtx('s1').reachable).toBe(true);
  });
});

describe('shard: buckets and counts', () => {
  it('puts at most bucketSize proxies in a bucket and opens a new bucket only when all are full', () => {
    const t = startShard({ bucketSize: 2 });
    t.register('reg-1', reports('s1', 's2', 's3', 's4', 's5'));
    expect(t.bucketSizes()).toEqual({ 'bucket:w1:0': 2, 'bucket:w1:1': 2, 'bucket:w1:2': 1 });
    expect(t.ctx().buckets).toEqual({ 'bucket:w1:0': 2, 'bucket:w1:1': 2, 'bucket:w1:2': 1 });
    t.open();
    t.destroy('s1');
    t.worker().reply('s1', true);
    expect(t.ctx().buckets).toEqual({ 'bucket:w1:0': 1, 'bucket:w1:1': 2, 'bucket:w1:2': 1 });
    t.create('s6');
    t.create('s7');
    t.create('s8');
    expect(t.bucketSizes()).toEqual({ 'bucket:w1:0': 2, 'bucket:w1:1': 2, 'bucket:w1:2': 2, 'bucket:w1:3': 1 });
  });

  it('tells its parent its count on every create and every end', () => {
    const t = startShard();
    t.register('reg-1', []);
    t.open();
    t.create('s1');
    t.create('s2');
    expect(t.tree.streams.commandsOf('create_session', 'w1').map((c) => c.description.sessionId)).toEqual(['s1', 's2']);
    t.worker().reply('s1', false, errorOf('CAPACITY_EXHAUSTED'));
    t.worker().report(sessionReport('s2'));
    t.destroy('s2');
    t.worker().reply('s2', true);
    expect(t.loads().map((l) => l.sessions)).toEqual([0, 0, 1, 2, 1, 0]);
    expect(t.ctx().sessions).toBe(0);
  });

  it('drops a crashed proxy from its count with a warning, and the next registration brings it back', () => {
    const t = startShard();
    t.register('reg-1', reports('s1', 's2'));
    // A malformed report makes the proxy's guard throw: the proxy crashes, its bucket survives.
    t.proxy('s1').send({ type: 'session.reported', workerId: 'w1', atMs: 0 });
    expect(t.host.get(sessionProxyIdOf('s1'))).toBeUndefined();
    expect(t.ctx().sessions).toBe(1);
    expect(t.warnings()).toEqual([expect.objectContaining({ message: expect.stringContaining('session proxy crashed'), details: expect.objectContaining({ workerId: 'w1', sessionId: 's1' }) })]);
    expect(t.lastLoad()?.sessions).toBe(1);
    t.register('reg-2', reports('s1', 's2'));
    expect(t.view('s1').state).toBe('READY');
    expect(t.ctx().sessions).toBe(2);
    expect(t.host.errors).toEqual([]);
  });

  it('removes a crashed bucket with its count and a warning, and the next registration brings its sessions back', () => {
    const t = startShard({ bucketSize: 2 });
    t.register('reg-1', reports('s1', 's2', 's3'));
    t.host.must('bucket:w1:0').send({ type: 'bucket.spawn', input: {} }); // crashes the bucket's own action
    expect(t.ctx().buckets).toEqual({ 'bucket:w1:1': 1 });
    expect(t.ctx().sessions).toBe(1);
    expect(t.warnings()).toEqual([expect.objectContaining({ message: 'a bucket of session proxies crashed', details: { workerId: 'w1', childId: 'bucket:w1:0', sessions: '2' } })]);
    expect(t.lastLoad()?.sessions).toBe(1);
    expect(t.host.get(sessionProxyIdOf('s1'))).toBeUndefined();
    t.register('reg-2', reports('s1', 's2', 's3'));
    expect(['s1', 's2', 's3'].map((id) => t.view(id).state)).toEqual(['READY', 'READY', 'READY']);
    expect(t.ctx().sessions).toBe(3);
    expect(t.host.errors).toEqual([]);
  });

  it('passes a proxy\'s conflict on to its parent as a warning', () => {
    const t = startShard();
    t.register('reg-1', reports('s1'));
    t.open();
    t.proxy('s1').send({ type: 'session.reported', workerId: 'w2', report: sessionReport('s1'), atMs: t.clock.now() });
    expect(t.warnings()).toEqual([expect.objectContaining({ message: expect.stringContaining('w2'), details: { workerId: 'w1', sessionId: 's1' } })]);
  });
});

describe('shard: its worker away and back', () => {
  it('tells every proxy in every bucket when the worker is lost and when it is online again', () => {
    const t = startShard({ bucketSize: 2 });
    const ids = ['s1', 's2', 's3', 's4', 's5'];
    t.register('reg-1', reports(...ids));
    t.open();
    expect(ids.every((id) => t.proxyCtx(id).reachable)).toBe(true);
    t.clock.increment(1_000);
    t.loseStream();
    expect(ids.map((id) => t.proxyCtx(id).unreachableSinceMs)).toEqual(ids.map(() => T0 + 1_000));
    expect(t.lastLoad()).toMatchObject({ online: false, sessions: 5 });
    t.register('reg-2', reports(...ids));
    t.open();
    expect(ids.every((id) => t.proxyCtx(id).reachable)).toBe(true);
    expect(t.lastLoad()).toMatchObject({ online: true, sessions: 5 });
  });

  it('treats a crashed connection as a lost worker: tasks end WORKER_LOST and its sessions refuse new ones', () => {
    const t = startShard();
    t.register('reg-1', reports('s1'));
    t.open();
    t.submit('s1', 't1');
    // A close without a reason makes the connection's own action throw.
    t.host.must(CONNECTION).send({ type: 'connection.close', atMs: t.clock.now() });
    expect(t.host.errors).toEqual([]);
    expect(t.host.get(CONNECTION)).toBeUndefined();
    expect(t.outcomesOf('t1').map((e) => e.update)).toEqual([
      { type: 'outcome', outcome: expect.objectContaining({ type: 'error', error: expect.objectContaining({ code: 'WORKER_LOST', message: expect.stringContaining('the connection actor crashed') }) }) },
    ]);
    expect(t.proxyCtx('s1').reachable).toBe(false);
    expect(t.submit('s1', 't2')).toMatchObject({ type: 'task.rejected', error: { code: 'UNAVAILABLE' } });
    expect(t.lastLoad()).toMatchObject({ online: false });
  });

  it('destroys, once its worker is online again, the sessions destroyed while it was away that it still lists', () => {
    const t = startShard();
    t.register('reg-1', reports('s1', 's2', 's3'));
    t.open();
    t.loseStream();
    t.destroy('s1');
    t.destroy('s3');
    expect(t.ctx().tombstones).toEqual(['s1', 's3']);
    t.register('reg-2', reports('s1', 's2'));
    expect(t.tree.streams.commandsOf('destroy_session', 'w1')).toEqual([]);
    t.open();
    expect(t.tree.streams.commandsOf('destroy_session', 'w1')).toEqual([{ kind: 'destroy_session', sessionId: 's1' }]);
    expect(t.ctx().tombstones).toEqual([]);
    // Once only: another loss and return sends nothing more.
    t.loseStream();
    t.register('reg-3', reports('s2'));
    t.open();
    expect(t.tree.streams.commandsOf('destroy_session', 'w1')).toHaveLength(1);
  });

  // A session the user destroyed while its worker was away must not show READY again when the worker lists it.
  it('does not bring back a session that was destroyed while its worker was away', () => {
    const t = startShard();
    t.register('reg-1', reports('s1', 's2'));
    t.open();
    t.loseStream();
    t.destroy('s1');
    t.register('reg-2', reports('s1', 's2'));
    expect(t.host.get(sessionProxyIdOf('s1'))).toBeUndefined();
  });

  it('does not retire while it owes its lost worker the destroys of sessions destroyed meanwhile', () => {
    const t = startShard();
    t.register('reg-1', reports('s1', 's2'));
    t.open();
    t.host.must(CONNECTION).send({ type: 'worker.deregister', reason: 'shutdown', atMs: t.clock.now() });
    t.worker().close('EOF');
    expect(t.ctx()).toMatchObject({ online: false, lost: true, registration: null });
    expect(t.shard.getSnapshot().status).toBe('active');
    t.destroy('s1');
    t.destroy('s2');
    expect(t.ctx()).toMatchObject({ sessions: 0, tombstones: ['s1', 's2'] });
    expect(t.shard.getSnapshot().status).toBe('active');
  });

  it('ends a session still being made when its worker is lost, and retires when that was the last one', () => {
    const t = startShard();
    t.register('reg-1', []);
    t.open();
    t.create('s1');
    t.loseStream();
    expect(t.ctx().sessions).toBe(0);
    expect(t.shard.getSnapshot().status).toBe('done');
  });

  it('stays while empty as long as its worker was never lost', () => {
    const t = startShard();
    t.register('reg-1', []);
    t.open();
    t.create('s1');
    t.worker().reply('s1', false, errorOf('INTERNAL'));
    expect(t.ctx().sessions).toBe(0);
    expect(t.shard.getSnapshot().status).toBe('active');
  });

  it('tells every proxy the coordinator drains, so they refuse new tasks', () => {
    const t = startShard({ bucketSize: 1 });
    t.register('reg-1', reports('s1', 's2'));
    t.open();
    t.shard.send({ type: 'coordinator.draining' });
    for (const id of ['s1', 's2']) expect(t.submit(id, `t-${id}`)).toMatchObject({ type: 'task.rejected', error: { code: 'UNAVAILABLE' } });
  });
});

vi.spyOn(console, 'warn').mockImplementation(() => {});
