import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, fromCallback, SimulatedClock, type AnyActorLogic, type AnyActorRef } from 'xstate';
import { chooseWorker, coordinatorMachine, workerChildId, type CoordinatorContext, type CoordinatorEmitted } from '../../machines/coordinator.machine.js';
import { sessionChildId, sessionMachine, sessionStateOf, type SessionSnapshot } from '../../machines/session.machine.js';
import { taskMachine } from '../../machines/task.machine.js';
import { workerConnectionMachine, type StreamHandle } from '../../machines/worker-connection.machine.js';
import type { SessionConfig } from '../../src/domain/sessions.js';
import {
  collectEmitted,
  controlledPromise,
  fakeExecutor,
  flush,
  idleCallback,
  inspectAll,
  resultOutcome,
  taskSpec,
  taskUpdateCollector,
} from '../helpers/machine-fakes.js';

const config: SessionConfig = { env_vars: {}, allow_network: false, language: 'python' };
const stream: StreamHandle = { kind: 'stream-handle' };
const HEARTBEAT_TIMEOUT = 3_000;

function startCoordinator(overrides: { session?: AnyActorLogic; workerConnection?: AnyActorLogic } = {}) {
  const clock = new SimulatedClock();
  const exec = fakeExecutor();
  const prepare = controlledPromise<{ workspacePath: string }, { sessionId: string; workerId: string; config: SessionConfig }>();
  const release = controlledPromise<void, { sessionId: string; workerId: string; remove: boolean; force: boolean }>();
  const streams = idleCallback<{ workerId: string; registrationId: string; stream: StreamHandle }>();
  const session = sessionMachine.provide({
    actors: { task: taskMachine.provide({ actors: { executor: exec.logic } }), prepareWorkspace: prepare.logic, releaseWorkspace: release.logic },
  });
  const machine = coordinatorMachine.provide({
    actors: {
      session: (overrides.session ?? session) as typeof session,
      workerConnection: (overrides.workerConnection ?? workerConnectionMachine.provide({ actors: { workerStream: streams.logic } })) as typeof workerConnectionMachine,
    },
  });
  const updates = taskUpdateCollector();
  const actor = createActor(machine, { input: { idleTimeoutMs: 0, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT, drainTimeoutMs: 5_000 }, clock, inspect: inspectAll(updates.inspect) });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  const emitted = collectEmitted(actor) as CoordinatorEmitted[];
  actor.start();
  const of = <T extends CoordinatorEmitted['type']>(type: T) => emitted.filter((e): e is Extract<CoordinatorEmitted, { type: T }> => e.type === type);
  return {
    actor,
    clock,
    exec,
    prepare,
    release,
    streams,
    errors,
    emitted,
    outcomes: updates.outcomes,
    of,
    ctx: (): CoordinatorContext => actor.getSnapshot().context,
    register(workerId: string, registrationId: string, maxSessions = 10) {
      actor.send({ type: 'worker.register', workerId, registrationId, maxSessions, isolation: 'bwrap', hostname: `${workerId}.local` });
    },
    online(workerId: string, registrationId: string, maxSessions = 10) {
      this.register(workerId, registrationId, maxSessions);
      actor.send({ type: 'stream.opened', workerId, registrationId, stream });
    },
    create(sessionId: string, workerId = '') {
      actor.send({ type: 'session.create', sessionId, workerId, workspaceId: sessionId, config, metadata: {} });
    },
    session(sessionId: string): AnyActorRef {
      const ref = actor.system.get(sessionChildId(sessionId));
      if (!ref) throw new Error(`no session ${sessionId}`);
      return ref;
    },
    sessionState(sessionId: string) {
      return sessionStateOf(this.session(sessionId).getSnapshot() as SessionSnapshot);
    },
    placedOn(workerId: string): string[] {
      return Object.entries(actor.getSnapshot().context.placements)
        .filter(([, w]) => w === workerId)
        .map(([s]) => s);
    },
  };
}

describe('coordinator machine', () => {
  beforeEach(() => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  describe('workers', () => {
    it('registers a worker, supervises a connection actor for it and marks it online once its stream opens', () => {
      const c = startCoordinator();
      c.register('w1', 'reg-1');
      expect(c.of('worker.registered')).toEqual([{ type: 'worker.registered', workerId: 'w1', registrationId: 'reg-1' }]);
      expect(c.ctx().workers.w1).toMatchObject({ registrationId: 'reg-1', maxSessions: 10, online: false });
      expect(c.actor.system.get(workerChildId('w1', 'reg-1'))).toBeDefined();
      c.actor.send({ type: 'stream.opened', workerId: 'w1', registrationId: 'reg-1', stream });
      expect(c.ctx().workers.w1!.online).toBe(true);
      expect(c.streams.active()).toHaveLength(1);
    });

    it('emits worker.unknown for a heartbeat, stream or deregister of a registration it does not know', () => {
      const c = startCoordinator();
      c.online('w1', 'reg-1');
      c.actor.send({ type: 'worker.heartbeat', workerId: 'w1', registrationId: 'reg-2' });
      c.actor.send({ type: 'worker.heartbeat', workerId: 'w9', registrationId: 'reg-1' });
      c.actor.send({ type: 'stream.opened', workerId: 'w9', registrationId: 'reg-9', stream });
      c.actor.send({ type: 'worker.deregister', workerId: 'w9', registrationId: 'reg-9', reason: 'x' });
      expect(c.of('worker.unknown')).toEqual([
        { type: 'worker.unknown', workerId: 'w1', registrationId: 'reg-2' },
        { type: 'worker.unknown', workerId: 'w9', registrationId: 'reg-1' },
        { type: 'worker.unknown', workerId: 'w9', registrationId: 'reg-9' },
        { type: 'worker.unknown', workerId: 'w9', registrationId: 'reg-9' },
      ]);
      expect(c.ctx().workers.w1!.online).toBe(true);
    });

    it('keeps a worker whose heartbeats arrive, and forgets one whose heartbeats stop', () => {
      const c = startCoordinator();
      c.online('w1', 'reg-1');
      c.online('w2', 'reg-2');
      for (let i = 0; i < 5; i++) {
        c.clock.increment(HEARTBEAT_TIMEOUT - 100);
        c.actor.send({ type: 'worker.heartbeat', workerId: 'w1', registrationId: 'reg-1' });
        c.actor.send({ type: 'worker.heartbeat', workerId: 'w2', registrationId: 'reg-2' });
      }
      c.clock.increment(HEARTBEAT_TIMEOUT - 100);
      c.actor.send({ type: 'worker.heartbeat', workerId: 'w1', registrationId: 'reg-1' });
      c.clock.increment(100);
      expect(Object.keys(c.ctx().workers)).toEqual(['w1']);
      expect(c.actor.getSnapshot().children[workerChildId('w2', 'reg-2')]).toBeUndefined();
      c.actor.send({ type: 'worker.heartbeat', workerId: 'w2', registrationId: 'reg-2' });
      expect(c.of('worker.unknown')).toHaveLength(1);
    });

    it('forgets a worker that deregisters', () => {
      const c = startCoordinator();
      c.online('w1', 'reg-1');
      c.actor.send({ type: 'worker.deregister', workerId: 'w1', registrationId: 'reg-1', reason: 'shutdown' });
      expect(c.ctx().workers).toEqual({});
      expect(c.streams.active()).toHaveLength(0);
    });
  });

  describe('placement', () => {
    it('spreads six creates over two workers 3+3, counting placements the workers have not reported yet', () => {
      const c = startCoordinator();
      c.online('w1', 'reg-1');
      c.online('w2', 'reg-2');
      for (let i = 0; i < 6; i++) c.create(`s${i}`);
      expect(c.prepare.pending()).toHaveLength(6);
      expect(c.placedOn('w1')).toHaveLength(3);
      expect(c.placedOn('w2')).toHaveLength(3);
      expect(c.of('session.placed')).toHaveLength(6);
      expect(c.of('session.rejected')).toHaveLength(0);
    });

    it('prefers the worker with the most free slots when loads are equal', () => {
      const c = startCoordinator();
      c.online('w1', 'reg-1', 2);
      c.online('w2', 'reg-2', 5);
      c.create('s1');
      expect(c.of('session.placed')[0]!.workerId).toBe('w2');
    });

    it('never places a session on a worker that is registered but not yet online', () => {
      const c = startCoordinator();
      c.register('w1', 'reg-1');
      c.online('w2', 'reg-2');
      for (let i = 0; i < 3; i++) c.create(`s${i}`);
      expect(c.placedOn('w2')).toHaveLength(3);
      c.create('s9', 'w1');
      expect(c.of('session.rejected')[0]).toMatchObject({ sessionId: 's9', error: { code: 'CAPACITY_EXHAUSTED' } });
    });

    it('rejects with CAPACITY_EXHAUSTED (retriable) once every worker is at maxSessions', () => {
      const c = startCoordinator();
      c.online('w1', 'reg-1', 2);
      c.online('w2', 'reg-2', 1);
      for (let i = 0; i < 4; i++) c.create(`s${i}`);
      expect(c.of('session.placed').map((e) => e.sessionId)).toEqual(['s0', 's1', 's2']);
      const [rejected] = c.of('session.rejected');
      expect(rejected).toMatchObject({ type: 'session.rejected', sessionId: 's3', error: { code: 'CAPACITY_EXHAUSTED', retriable: true } });
      expect(c.actor.system.get(sessionChildId('s3'))).toBeUndefined();
    });

    it('rejects with CAPACITY_EXHAUSTED when no worker is connected', () => {
      const c = startCoordinator();
      c.create('s1');
      expect(c.of('session.rejected')[0]!.error.message).toContain('no worker is connected');
    });

    it('places a session on the requested worker, and rejects a full one', () => {
      const c = startCoordinator();
      c.online('w1', 'reg-1', 1);
      c.online('w2', 'reg-2', 5);
      c.create('s1', 'w1');
      expect(c.placedOn('w1')).toEqual(['s1']);
      c.create('s2', 'w1');
      expect(c.of('session.rejected')[0]).toMatchObject({ sessionId: 's2', error: { code: 'CAPACITY_EXHAUSTED' } });
    });

    it('rejects a requested worker_id that is not registered with NOT_FOUND', () => {
      const c = startCoordinator();
      c.online('w1', 'reg-1');
      c.create('s1', 'nope');
      expect(c.of('session.rejected')).toEqual([{ type: 'session.rejected', sessionId: 's1', error: expect.objectContaining({ code: 'NOT_FOUND', retriable: false }) }]);
    });

    it('frees the capacity of a session once it terminates', async () => {
      const c = startCoordinator();
      c.online('w1', 'reg-1', 1);
      c.create('s1');
      c.create('s2');
      expect(c.of('session.rejected').map((e) => e.sessionId)).toEqual(['s2']);
      c.prepare.calls[0]!.resolve({ workspacePath: '/ws/s1' });
      await flush();
      c.session('s1').send({ type: 'session.destroy', force: false, requestId: 'r1' });
      c.release.last().resolve();
      await flush();
      expect(c.of('session.terminated')).toEqual([{ type: 'session.terminated', sessionId: 's1' }]);
      expect(c.actor.getSnapshot().children[sessionChildId('s1')]).toBeUndefined();
      expect(c.ctx().placements).toEqual({});
      c.create('s3');
      expect(c.placedOn('w1')).toEqual(['s3']);
    });

    it('chooseWorker is deterministic: ties go to the first worker id', () => {
      const ctx: CoordinatorContext = {
        idleTimeoutMs: 0,
        heartbeatTimeoutMs: 1,
        drainTimeoutMs: 1,
        workers: {
          b: { registrationId: 'reg-b', maxSessions: 2, isolation: '', hostname: '', online: true, registeredAtMs: 0 },
          a: { registrationId: 'reg-a', maxSessions: 2, isolation: '', hostname: '', online: true, registeredAtMs: 0 },
        },
        placements: {},
      };
      expect(chooseWorker(ctx, '')).toEqual({ workerId: 'a' });
      expect(chooseWorker({ ...ctx, placements: { x: 'a' } }, '')).toEqual({ workerId: 'b' });
    });
  });

  describe('losing workers', () => {
    async function withRunningTasks() {
      const c = startCoordinator();
      c.online('w1', 'reg-1');
      c.online('w2', 'reg-2');
      c.create('s1', 'w1');
      c.create('s2', 'w1');
      c.create('s3', 'w2');
      for (const call of c.prepare.calls) call.resolve({ workspacePath: `/ws/${call.input.sessionId}` });
      await flush();
      c.session('s1').send({ type: 'task.submit', spec: taskSpec('t1', 's1') });
      c.session('s1').send({ type: 'task.submit', spec: taskSpec('t2', 's1') });
      c.session('s3').send({ type: 'task.submit', spec: taskSpec('t3', 's3') });
      expect(c.exec.active().map((r) => r.spec.taskId)).toEqual(['t1', 't3']);
      return c;
    }

    it('fails the sessions of a worker whose heartbeats stop and ends their tasks WORKER_LOST', async () => {
      const c = await withRunningTasks();
      c.clock.increment(HEARTBEAT_TIMEOUT - 1);
      c.actor.send({ type: 'worker.heartbeat', workerId: 'w2', registrationId: 'reg-2' });
      c.clock.increment(1);
      expect(c.sessionState('s1')).toBe('FAILED');
      expect(c.sessionState('s2')).toBe('FAILED');
      expect(c.sessionState('s3')).toBe('BUSY');
      for (const id of ['t1', 't2']) {
        expect(c.outcomes.get(id)).toHaveLength(1);
        expect(c.outcomes.get(id)![0]).toMatchObject({ type: 'error', error: { code: 'WORKER_LOST', retriable: true } });
      }
      expect(c.outcomes.get('t3')).toBeUndefined();
      expect(c.exec.active().map((r) => r.spec.taskId)).toEqual(['t3']);
      expect(Object.keys(c.ctx().workers)).toEqual(['w2']);
      expect(c.placedOn('w1')).toEqual([]);
      expect(c.placedOn('w2')).toEqual(['s3']);
    });

    it('fails the sessions of a worker whose stream closes', async () => {
      const c = await withRunningTasks();
      c.streams.instances[0]!.crash('reset');
      expect(c.sessionState('s1')).toBe('FAILED');
      expect(c.outcomes.get('t1')![0]).toMatchObject({ error: { code: 'WORKER_LOST' } });
      expect(c.errors).toEqual([]);
    });

    it('fails the old sessions when the same worker id registers again', async () => {
      const c = await withRunningTasks();
      c.register('w1', 'reg-5');
      expect(c.sessionState('s1')).toBe('FAILED');
      expect(c.sessionState('s2')).toBe('FAILED');
      expect(c.outcomes.get('t1')![0]).toMatchObject({ error: { code: 'WORKER_LOST' } });
      expect(c.actor.getSnapshot().children[workerChildId('w1', 'reg-1')]).toBeUndefined();
      expect(c.actor.getSnapshot().children[workerChildId('w1', 'reg-5')]).toBeDefined();
      expect(c.ctx().workers.w1).toMatchObject({ registrationId: 'reg-5', online: false });
      c.actor.send({ type: 'worker.heartbeat', workerId: 'w1', registrationId: 'reg-1' });
      expect(c.of('worker.unknown')).toEqual([{ type: 'worker.unknown', workerId: 'w1', registrationId: 'reg-1' }]);
      // the new registration still works and the old one's timer is gone
      c.actor.send({ type: 'stream.opened', workerId: 'w1', registrationId: 'reg-5', stream });
      c.clock.increment(HEARTBEAT_TIMEOUT - 1);
      c.actor.send({ type: 'worker.heartbeat', workerId: 'w1', registrationId: 'reg-5' });
      c.clock.increment(HEARTBEAT_TIMEOUT - 1);
      expect(c.ctx().workers.w1!.online).toBe(true);
    });

    it('lets a failed session be destroyed afterwards', async () => {
      const c = await withRunningTasks();
      c.actor.send({ type: 'worker.deregister', workerId: 'w1', registrationId: 'reg-1', reason: 'bye' });
      c.session('s1').send({ type: 'session.destroy', force: false, requestId: 'r' });
      c.release.last().resolve();
      await flush();
      expect(c.of('session.terminated').map((e) => e.sessionId)).toEqual(['s1']);
    });
  });

  describe('supervision', () => {
    it('reports a session whose logic crashes as terminated and frees its slot', () => {
      const crashing = fromCallback(() => {
        throw new Error('session logic crashed');
      });
      const c = startCoordinator({ session: crashing as unknown as AnyActorLogic });
      c.online('w1', 'reg-1', 1);
      c.create('s1');
      expect(c.errors).toEqual([]);
      expect(c.of('session.terminated')).toEqual([{ type: 'session.terminated', sessionId: 's1' }]);
      expect(c.ctx().placements).toEqual({});
      expect(c.actor.getSnapshot().children[sessionChildId('s1')]).toBeUndefined();
    });

    it('treats a crashed worker connection actor as a lost worker', () => {
      const crashing = fromCallback(({ receive }) => {
        receive(() => {
          throw new Error('connection logic crashed');
        });
      });
      const c = startCoordinator({ workerConnection: crashing as unknown as AnyActorLogic });
      c.register('w1', 'reg-1');
      c.actor.send({ type: 'worker.heartbeat', workerId: 'w1', registrationId: 'reg-1' });
      expect(c.errors).toEqual([]);
      expect(c.ctx().workers).toEqual({});
      expect(c.actor.getSnapshot().status).toBe('active');
    });

    it('ignores session.prepared and session.failed reports', () => {
      const c = startCoordinator();
      const before = c.actor.getSnapshot().context;
      c.actor.send({ type: 'session.prepared', sessionId: 'x', requestId: '', workspacePath: '' });
      c.actor.send({ type: 'session.failed', sessionId: 'x', requestId: '', reason: '' });
      expect(c.actor.getSnapshot().context).toBe(before);
    });
  });

  it('finishes tasks on healthy workers normally', async () => {
    const c = startCoordinator();
    c.online('w1', 'reg-1');
    c.create('s1');
    c.prepare.last().resolve({ workspacePath: '/ws/s1' });
    await flush();
    c.session('s1').send({ type: 'task.submit', spec: taskSpec('t1', 's1') });
    c.exec.run('t1').finish(resultOutcome());
    expect(c.outcomes.get('t1')).toEqual([resultOutcome()]);
    expect(c.sessionState('s1')).toBe('READY');
  });
});
