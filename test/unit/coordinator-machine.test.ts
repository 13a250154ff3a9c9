import { describe, expect, it, vi } from 'vitest';
import { COORDINATOR_ID, type CoordinatorContext, type CoordinatorEmitted, type CoordinatorInput } from '../../machines/coordinator/coordinator.machine.js';
import { slotOf } from '../../machines/coordinator/placement.js';
import { sessionProxyIdOf, sessionViewOf, type SessionProxyContext, type SessionProxySnapshot } from '../../machines/coordinator/session-proxy.machine.js';
import { shardIdOf, type ShardContext } from '../../machines/coordinator/shard.machine.js';
import { connectionIdOf } from '../../machines/coordinator/worker-connection.machine.js';
import type { SessionReport } from '../../machines/domain/sessions.js';
import { supervisorIdOf } from '../../machines/supervisor.machine.js';
import { coordinatorInput, coordinatorTree, errorOf, registration, sessionDescription, sessionReport, simulatedClock, startSystem, T0, taskSpec } from '../helpers/coordinator-fakes.js';

type Placed = Extract<CoordinatorEmitted, { type: 'session.placed' }>;
type Rejected = Extract<CoordinatorEmitted, { type: 'session.rejected' }>;

function startCoordinator(overrides: Partial<CoordinatorInput> = {}) {
  const clock = simulatedClock();
  const tree = coordinatorTree(clock);
  const sys = startSystem(tree.coordinator, { clock, input: coordinatorInput(overrides), systemId: COORDINATOR_ID });
  const root = sys.root;
  let requests = 0;
  let streams = 0;
  const t = {
    ...sys,
    tree,
    ctx: () => root.getSnapshot().context as CoordinatorContext,
    slot: (workerId: string) => slotOf(t.ctx().placement, workerId),
    register(workerId: string, registrationId: string, opts: { instanceId?: string; maxSessions?: number; sessions?: SessionReport[] } = {}) {
      root.send({
        type: 'worker.register',
        workerId,
        registration: registration(registrationId, { instanceId: opts.instanceId ?? `inst-${workerId}`, maxSessions: opts.maxSessions ?? 10 }),
        sessions: opts.sessions ?? [],
        atMs: clock.now(),
      });
    },
    open(workerId: string, registrationId: string) {
      root.send({ type: 'stream.opened', workerId, registrationId, streamId: `stream-${++streams}`, atMs: clock.now() });
    },
    online(workerId: string, registrationId: string, opts: { instanceId?: string; maxSessions?: number; sessions?: SessionReport[] } = {}) {
      t.register(workerId, registrationId, opts);
      t.open(workerId, registrationId);
    },
    heartbeat(workerId: string, registrationId: string) {
      root.send({ type: 'worker.heartbeat', workerId, registrationId, atMs: clock.now() });
    },
    create(sessionId: string, workerId = ''): Placed | Rejected {
      return sys.ask(root, { type: 'session.create', requestId: `create-${++requests}`, workerId, description: sessionDescription(sessionId), atMs: clock.now() }, ['session.placed', 'session.rejected']);
    },
    rejected(sessionId: string, workerId = ''): Rejected {
      const a = t.create(sessionId, workerId);
      if (a.type !== 'session.rejected') throw new Error(`${sessionId} was placed on ${a.workerId}`);
      return a;
    },
    proxyCtx: (sessionId: string) => sys.must(sessionProxyIdOf(sessionId)).getSnapshot().context as SessionProxyContext,
    view: (sessionId: string) => sessionViewOf(sys.must(sessionProxyIdOf(sessionId)).getSnapshot() as SessionProxySnapshot),
    shardCtx: (workerId: string) => sys.must(shardIdOf(workerId)).getSnapshot().context as ShardContext,
    submit(sessionId: string, taskId: string) {
      return sys.ask(sessionProxyIdOf(sessionId), { type: 'task.submit', requestId: `submit-${++requests}`, spec: taskSpec(taskId, sessionId), followerId: 'c', atMs: clock.now() }, ['task.accepted', 'task.rejected']);
    },
    destroy(sessionId: string) {
      sys.must(sessionProxyIdOf(sessionId)).send({ type: 'session.destroy', requestId: `destroy-${++requests}`, force: true, atMs: clock.now() });
    },
    warnings: () => sys.emitted<Extract<CoordinatorEmitted, { type: 'coordinator.warning' }>>('coordinator.warning', COORDINATOR_ID),
  };
  return t;
}

describe('coordinator: workers registering', () => {
  it('makes the worker\'s shard under its supervisor on registration, answers worker.registered, and marks it online when its stream opens', () => {
    const c = startCoordinator();
    c.register('w1', 'reg-1', { maxSessions: 3 });
    expect(c.emitted('worker.registered', COORDINATOR_ID)).toEqual([{ type: 'worker.registered', workerId: 'w1', registrationId: 'reg-1' }]);
    expect(c.get(supervisorIdOf(shardIdOf('w1')))).toBeDefined();
    expect(c.get(shardIdOf('w1'))).toBeDefined();
    expect(c.get(connectionIdOf('w1'))).toBeDefined();
    expect(c.slot('w1')).toEqual({ registrationId: 'reg-1', instanceId: 'inst-w1', maxSessions: 3, load: 0, online: false });
    c.open('w1', 'reg-1');
    expect(c.slot('w1')?.online).toBe(true);
    expect(c.tree.streams.open('w1')).toHaveLength(1);
  });

  it('refuses FAILED_PRECONDITION a second live process with the same worker id, and leaves the first one\'s sessions alone', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1', { instanceId: 'first', sessions: [sessionReport('s1')] });
    c.register('w1', 'reg-2', { instanceId: 'second', sessions: [] });
    expect(c.emitted('worker.refused', COORDINATOR_ID)).toEqual([
      { type: 'worker.refused', workerId: 'w1', registrationId: 'reg-2', error: expect.objectContaining({ code: 'ALREADY_EXISTS', message: expect.stringContaining('WORKER_ID') }) },
    ]);
    expect(c.emitted('worker.registered', COORDINATOR_ID)).toHaveLength(1);
    expect(c.view('s1')).toMatchObject({ state: 'READY', workerId: 'w1', unreachableSinceMs: 0 });
    expect(c.proxyCtx('s1').reachable).toBe(true);
    expect(c.shardCtx('w1').registration?.registrationId).toBe('reg-1');
    expect(c.slot('w1')).toMatchObject({ registrationId: 'reg-1', instanceId: 'first', online: true });
    expect(c.tree.streams.of('w1').stopped).toBe(false);
    expect(c.submit('s1', 't1').type).toBe('task.accepted');
  });

  it('accepts the same process registering again, and a new process once the first is seen gone', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1', { instanceId: 'first', sessions: [sessionReport('s1')] });
    c.register('w1', 'reg-2', { instanceId: 'first', sessions: [sessionReport('s1')] });
    expect(c.emitted('worker.refused')).toEqual([]);
    expect(c.get(connectionIdOf('w1'))?.getSnapshot().context).toMatchObject({ registrationId: 'reg-2' });
    c.open('w1', 'reg-2');
    c.tree.streams.of('w1').close('EOF');
    expect(c.slot('w1')?.online).toBe(false);
    c.register('w1', 'reg-3', { instanceId: 'second' });
    expect(c.emitted('worker.registered', COORDINATOR_ID).map((e) => e.registrationId)).toEqual(['reg-1', 'reg-2', 'reg-3']);
  });

  it('answers worker.unknown to heartbeats, streams and deregistrations of registrations it does not hold', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1');
    c.register('w1', 'reg-2');
    c.heartbeat('w1', 'reg-1');
    c.heartbeat('w9', 'reg-1');
    c.root.send({ type: 'stream.opened', workerId: 'w9', registrationId: 'reg-9', streamId: 'x', atMs: c.clock.now() });
    c.root.send({ type: 'worker.deregister', workerId: 'w1', registrationId: 'reg-1', reason: 'late', atMs: c.clock.now() });
    c.heartbeat('w1', 'reg-2');
    expect(c.emitted('worker.unknown', COORDINATOR_ID)).toEqual([
      { type: 'worker.unknown', workerId: 'w1', registrationId: 'reg-1' },
      { type: 'worker.unknown', workerId: 'w9', registrationId: 'reg-1' },
      { type: 'worker.unknown', workerId: 'w9', registrationId: 'reg-9' },
      { type: 'worker.unknown', workerId: 'w1', registrationId: 'reg-1' },
    ]);
    expect(c.shardCtx('w1').registration?.registrationId).toBe('reg-2');
  });

  it('keeps a worker whose heartbeats arrive through it, and marks one lost whose heartbeats stop', () => {
    const c = startCoordinator({ shard: { ...coordinatorInput().shard, heartbeatTimeoutMs: 3_000 } });
    c.online('w1', 'reg-1', { sessions: [sessionReport('s1')] });
    c.online('w2', 'reg-2', { sessions: [sessionReport('s2')] });
    for (let i = 0; i < 5; i++) {
      c.clock.increment(2_900);
      c.heartbeat('w1', 'reg-1');
      c.heartbeat('w2', 'reg-2');
    }
    c.clock.increment(2_900);
    c.heartbeat('w1', 'reg-1');
    c.clock.increment(100);
    expect(c.slot('w1')?.online).toBe(true);
    expect(c.slot('w2')?.online).toBe(false);
    expect(c.proxyCtx('s2').unreachableSinceMs).toBe(T0 + 5 * 2_900 + 3_000);
    expect(c.proxyCtx('s1').reachable).toBe(true);
  });

  it('a deregistered worker can no longer be asked for by name, while its sessions wait for it', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1', { sessions: [sessionReport('s1')] });
    c.root.send({ type: 'worker.deregister', workerId: 'w1', registrationId: 'reg-1', reason: 'SIGTERM', atMs: c.clock.now() });
    // The worker closes its stream after deregistering; only then is it gone here.
    c.tree.streams.of('w1').close('EOF');
    expect(c.rejected('s2', 'w1').error).toMatchObject({ code: 'NOT_FOUND' });
    expect(c.view('s1')).toMatchObject({ state: 'READY', unreachableSinceMs: T0 });
    expect(c.slot('w1')).toMatchObject({ online: false, registrationId: '' });
  });
});

describe('coordinator: placing sessions', () => {
  it('places on the least loaded worker and counts a placement at once: two creates on two equal workers go one each', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1');
    c.online('w2', 'reg-2');
    const first = c.create('s1') as Placed;
    const second = c.create('s2') as Placed;
    expect([first.type, second.type]).toEqual(['session.placed', 'session.placed']);
    expect(new Set([first.workerId, second.workerId])).toEqual(new Set(['w1', 'w2']));
    expect(c.tree.streams.commandsOf('create_session', first.workerId).map((cmd) => cmd.description.sessionId)).toEqual(['s1']);
    expect(c.tree.streams.commandsOf('create_session', second.workerId).map((cmd) => cmd.description.sessionId)).toEqual(['s2']);
    for (let i = 3; i <= 6; i++) c.create(`s${i}`);
    expect([c.slot('w1')?.load, c.slot('w2')?.load]).toEqual([3, 3]);
  });

  it('counts the sessions a worker lists when it registers', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1', { sessions: [sessionReport('a'), sessionReport('b')] });
    c.online('w2', 'reg-2', { sessions: [sessionReport('c')] });
    expect(c.slot('w1')?.load).toBe(2);
    expect((c.create('s1') as Placed).workerId).toBe('w2');
    expect((c.create('s2') as Placed).workerId).toBe('w1'); // 2 and 2 with equal room: the smaller id
  });

  it('rejects CAPACITY_EXHAUSTED saying no worker is connected when none is online', () => {
    const c = startCoordinator();
    expect(c.rejected('s1').error).toMatchObject({ code: 'CAPACITY_EXHAUSTED', retriable: true, message: expect.stringContaining('no worker is connected') });
    c.register('w1', 'reg-1');
    expect(c.rejected('s2').error.message).toContain('no worker is connected');
    expect(c.get(sessionProxyIdOf('s1'))).toBeUndefined();
  });

  it('rejects CAPACITY_EXHAUSTED once every worker is full, and the requested worker by its own state', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1', { maxSessions: 1 });
    c.online('w2', 'reg-2', { maxSessions: 5 });
    expect(c.create('s1', 'w1')).toMatchObject({ type: 'session.placed', workerId: 'w1' });
    expect(c.rejected('s2', 'w1').error).toMatchObject({ code: 'CAPACITY_EXHAUSTED', message: expect.stringContaining('maximum of 1') });
    expect(c.rejected('s3', 'nope').error).toMatchObject({ code: 'NOT_FOUND', retriable: false });
    for (let i = 0; i < 5; i++) c.create(`x${i}`);
    expect(c.rejected('s4').error).toMatchObject({ code: 'CAPACITY_EXHAUSTED', message: expect.stringContaining('all 2 connected workers') });
  });

  it('frees a worker\'s slot when one of its sessions ends', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1', { maxSessions: 1 });
    c.create('s1');
    expect(c.rejected('s2').error.code).toBe('CAPACITY_EXHAUSTED');
    c.tree.streams.of('w1').reply('s1', false, errorOf('INTERNAL', 'no venv'));
    expect(c.slot('w1')?.load).toBe(0);
    expect(c.create('s3')).toMatchObject({ type: 'session.placed', workerId: 'w1' });
  });
});

describe('coordinator: recovering and draining', () => {
  it('is recovering until recoveryGraceMs has passed, then serving, and places sessions in both', () => {
    const c = startCoordinator({ recoveryGraceMs: 30_000 });
    c.online('w1', 'reg-1');
    expect(c.root.getSnapshot().value).toBe('recovering');
    expect(c.create('s1').type).toBe('session.placed');
    c.clock.increment(29_999);
    expect(c.root.getSnapshot().value).toBe('recovering');
    c.clock.increment(1);
    expect(c.root.getSnapshot().value).toBe('serving');
    expect(c.create('s2').type).toBe('session.placed');
  });

  it('when draining, rejects creates UNAVAILABLE and every proxy of every worker refuses new tasks', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1', { sessions: [sessionReport('s1')] });
    c.online('w2', 'reg-2', { sessions: [sessionReport('s2')] });
    c.root.send({ type: 'coordinator.drain' });
    expect(c.root.getSnapshot().value).toBe('draining');
    expect(c.rejected('s3').error).toMatchObject({ code: 'UNAVAILABLE', retriable: true });
    for (const id of ['s1', 's2']) expect(c.submit(id, `t-${id}`)).toMatchObject({ type: 'task.rejected', error: { code: 'UNAVAILABLE', message: expect.stringContaining('shutting down') } });
    expect(c.tree.streams.commandsOf('assign_task')).toEqual([]);
  });
});

describe('coordinator: sessions moving and shards ending', () => {
  it('moves a session to the shard of the worker that adopted it while its own worker was away', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1', { sessions: [sessionReport('s1'), sessionReport('keep')] });
    c.tree.streams.of('w1').close('EOF');
    const adopted = sessionReport('s1', { description: { restartedAtMs: T0 + 5, survivalNote: 'adopted' } });
    c.online('w2', 'reg-2', { sessions: [adopted] });
    expect(c.received(shardIdOf('w2'), 'session.adopt', COORDINATOR_ID)).toEqual([expect.objectContaining({ type: 'session.adopt', report: expect.objectContaining({ state: 'READY' }) })]);
    expect(c.proxyCtx('s1')).toMatchObject({ workerId: 'w2', reachable: true });
    expect(c.shardCtx('w2').sessions).toBe(1);
    expect(c.shardCtx('w1').sessions).toBe(1);
    expect([c.slot('w1')?.load, c.slot('w2')?.load]).toEqual([1, 1]);
    expect(c.submit('s1', 't1').type).toBe('task.accepted');
    expect(c.tree.streams.commandsOf('assign_task', 'w2').map((cmd) => cmd.spec.taskId)).toEqual(['t1']);
  });

  it('forgets a lost worker whose shard has no session left, and makes it a new shard when it comes back', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1');
    c.root.send({ type: 'worker.deregister', workerId: 'w1', registrationId: 'reg-1', reason: 'bye', atMs: c.clock.now() });
    c.tree.streams.of('w1').close('EOF');
    expect(c.get(supervisorIdOf(shardIdOf('w1')))).toBeUndefined();
    expect(c.slot('w1')).toBeUndefined();
    expect(c.rejected('s1', 'w1').error.code).toBe('NOT_FOUND');
    c.online('w1', 'reg-2', { sessions: [sessionReport('s9')] });
    expect(c.slot('w1')).toMatchObject({ online: true, load: 1 });
    expect(c.view('s9').state).toBe('READY');
  });

  // The tombstone lives in the shard: a lost worker's shard must not retire before the destroy reached the worker.
  it('still destroys the last session of a lost worker when the worker comes back', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1', { sessions: [sessionReport('s1')] });
    c.tree.streams.of('w1').close('EOF');
    c.destroy('s1');
    c.online('w1', 'reg-2', { sessions: [sessionReport('s1')] });
    expect(c.tree.streams.commandsOf('destroy_session', 'w1')).toEqual([{ kind: 'destroy_session', sessionId: 's1' }]);
  });

  it('survives a crashing shard: its supervisor restarts it, the root warns, and the worker\'s next registration restores it', () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1', { sessions: [sessionReport('s1')] });
    // A registration without its session list makes the shard's own action throw.
    c.must(shardIdOf('w1')).send({ type: 'shard.register', registration: registration('reg-x'), atMs: c.clock.now() });
    expect(c.errors).toEqual([]);
    expect(c.warnings()).toEqual([expect.objectContaining({ message: 'shard:w1 crashed; restarting it' })]);
    expect(c.get(sessionProxyIdOf('s1'))).toBeUndefined();
    c.clock.increment(1_000); // past the restart backoff
    expect(c.get(shardIdOf('w1'))).toBeDefined();
    c.heartbeat('w1', 'reg-1');
    expect(c.emitted('worker.unknown', COORDINATOR_ID)).toHaveLength(1);
    c.online('w1', 'reg-2', { sessions: [sessionReport('s1')] });
    expect(c.view('s1')).toMatchObject({ state: 'READY', unreachableSinceMs: 0 });
    expect(c.slot('w1')).toMatchObject({ online: true, load: 1, registrationId: 'reg-2' });
  });
});

vi.spyOn(console, 'warn').mockImplementation(() => {});
