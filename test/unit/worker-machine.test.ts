import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, SimulatedClock, type AnyActorRef } from 'xstate';
import { coordinatorLinkMachine, type Registration } from '../../machines/coordinator-link.machine.js';
import { sessionChildId, sessionMachine, sessionStateOf, type SessionSnapshot } from '../../machines/session.machine.js';
import { taskMachine } from '../../machines/task.machine.js';
import { LINK_ID, workerMachine, type WorkerEmitted, type WorkerInput } from '../../machines/worker.machine.js';
import type { SessionConfig } from '../../src/domain/sessions.js';
import { collectEmitted, controlledPromise, fakeExecutor, flush, idleCallback, resultOutcome, taskSpec, taskUpdateCollector, type FakeExecutorOptions } from '../helpers/machine-fakes.js';

const config: SessionConfig = { env_vars: {}, allow_network: false, language: 'python' };

function startWorker(overrides: Partial<WorkerInput> = {}, execOptions: FakeExecutorOptions = {}) {
  const clock = new SimulatedClock();
  const exec = fakeExecutor(execOptions);
  const prepare = controlledPromise<{ workspacePath: string }, { sessionId: string; workerId: string; config: SessionConfig }>();
  const release = controlledPromise<void, { sessionId: string; workerId: string; remove: boolean; force: boolean }>();
  const register = controlledPromise<Registration, { workerId: string; attempt: number }>();
  const deregister = controlledPromise<void, { workerId: string; registrationId: string; reason: string }>();
  const heartbeats = idleCallback<{ workerId: string; registrationId: string; intervalMs: number }>();
  const streams = idleCallback<{ workerId: string; registrationId: string }>();
  const machine = workerMachine.provide({
    actors: {
      session: sessionMachine.provide({
        actors: { task: taskMachine.provide({ actors: { executor: exec.logic } }), prepareWorkspace: prepare.logic, releaseWorkspace: release.logic },
      }),
      link: coordinatorLinkMachine.provide({ actors: { register: register.logic, deregister: deregister.logic, heartbeats: heartbeats.logic, taskStream: streams.logic } }),
    },
  });
  const updates = taskUpdateCollector();
  const actor = createActor(machine, {
    input: {
      workerId: 'w1',
      maxSessions: 2,
      drainTimeoutMs: 5_000,
      backoff: { initialMs: 100, maxMs: 1_000, factor: 2 },
      linkIntensity: { maxRestarts: 2, windowMs: 10_000 },
      ...overrides,
    },
    clock,
    inspect: updates.inspect,
  });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  const emitted = collectEmitted(actor) as WorkerEmitted[];
  actor.start();
  const replies = () => emitted.filter((e): e is Extract<WorkerEmitted, { type: 'coordinator.reply' }> => e.type === 'coordinator.reply');
  return {
    actor,
    clock,
    exec,
    prepare,
    release,
    register,
    deregister,
    heartbeats,
    streams,
    errors,
    emitted,
    outcomes: updates.outcomes,
    replies,
    reply: (requestId: string) => replies().find((r) => r.requestId === requestId)?.reply,
    value: () => actor.getSnapshot().value as unknown,
    link: (): AnyActorRef | undefined => actor.system.get(LINK_ID),
    session(id: string): AnyActorRef | undefined {
      return actor.system.get(sessionChildId(id));
    },
    sessionState(id: string) {
      return sessionStateOf(this.session(id)!.getSnapshot() as SessionSnapshot);
    },
    async connect(registrationId = 'reg-1') {
      register.last().resolve({ registrationId, heartbeatIntervalMs: 1_000 });
      await flush();
    },
    create(sessionId: string, requestId = `create-${sessionId}`) {
      actor.send({ type: 'command.create', requestId, sessionId, config });
    },
    async createReady(sessionId: string) {
      this.create(sessionId);
      prepare.last().resolve({ workspacePath: `/ws/${sessionId}` });
      await flush();
    },
  };
}

describe('worker machine', () => {
  beforeEach(() => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  describe('commands', () => {
    it('creates a session on command.create and answers once its workspace is prepared', async () => {
      const w = startWorker();
      w.create('s1', 'r1');
      expect(w.session('s1')).toBeDefined();
      expect(w.prepare.last().input).toEqual({ sessionId: 's1', workerId: 'w1', config });
      expect(w.replies()).toEqual([]);
      w.prepare.last().resolve({ workspacePath: '/ws/s1' });
      await flush();
      expect(w.reply('r1')).toEqual({ ok: true, workspacePath: '/ws/s1' });
      expect(w.actor.getSnapshot().context.sessionIds).toEqual(['s1']);
    });

    it('answers a create whose workspace cannot be prepared with an INTERNAL error', async () => {
      const w = startWorker();
      w.create('s1', 'r1');
      w.prepare.last().reject(new Error('venv failed'));
      await flush();
      expect(w.reply('r1')).toMatchObject({ ok: false, error: { code: 'INTERNAL' } });
      expect(w.reply('r1')!.error!.message).toContain('venv failed');
    });

    it('refuses a second session with the same id with FAILED_PRECONDITION', () => {
      const w = startWorker();
      w.create('s1', 'r1');
      w.create('s1', 'r2');
      expect(w.reply('r2')).toMatchObject({ ok: false, error: { code: 'FAILED_PRECONDITION' } });
      expect(w.prepare.calls).toHaveLength(1);
    });

    it('refuses sessions beyond MAX_SESSIONS with a CAPACITY_EXHAUSTED reply', () => {
      const w = startWorker({ maxSessions: 2 });
      w.create('s1');
      w.create('s2');
      w.create('s3', 'r3');
      expect(w.reply('r3')).toEqual({ ok: false, error: expect.objectContaining({ code: 'CAPACITY_EXHAUSTED', retriable: true }) });
      expect(w.reply('r3')!.error!.message).toContain('MAX_SESSIONS');
      expect(w.session('s3')).toBeUndefined();
    });

    it('runs command.task in its session and cancels it on command.cancel', async () => {
      const w = startWorker();
      await w.createReady('s1');
      w.actor.send({ type: 'command.task', requestId: 'r', spec: taskSpec('t1', 's1') });
      expect(w.exec.active().map((r) => r.spec.taskId)).toEqual(['t1']);
      w.actor.send({ type: 'command.cancel', requestId: 'r', sessionId: 's1', taskId: 't1', reason: 'client' });
      expect(w.exec.run('t1').cancels).toEqual(['client']);
    });

    it('emits task.error SESSION_NOT_FOUND for a task of a session it does not hold', () => {
      const w = startWorker();
      w.actor.send({ type: 'command.task', requestId: 'r', spec: taskSpec('t1', 'ghost') });
      expect(w.emitted).toEqual([{ type: 'task.error', sessionId: 'ghost', taskId: 't1', error: expect.objectContaining({ code: 'SESSION_NOT_FOUND' }) }]);
      expect(w.exec.runs).toHaveLength(0);
    });

    it('ignores a cancel for a session it does not hold', () => {
      const w = startWorker();
      w.actor.send({ type: 'command.cancel', requestId: 'r', sessionId: 'ghost', taskId: 't1', reason: 'x' });
      expect(w.emitted).toEqual([]);
      expect(w.errors).toEqual([]);
    });

    it('destroys a session on command.destroy (forcing a running task to cancel) and answers when it is gone', async () => {
      const w = startWorker({}, { finishOnCancel: true });
      await w.createReady('s1');
      w.actor.send({ type: 'command.task', requestId: 'r', spec: taskSpec('t1', 's1') });
      w.actor.send({ type: 'command.destroy', requestId: 'd1', sessionId: 's1', force: false });
      expect(w.exec.run('t1').cancels).toEqual(['session destroyed']);
      expect(w.reply('d1')).toBeUndefined();
      expect(w.release.last().input).toMatchObject({ sessionId: 's1', remove: true });
      w.release.last().resolve();
      await flush();
      expect(w.reply('d1')).toEqual({ ok: true });
      expect(w.session('s1')).toBeUndefined();
      expect(w.actor.getSnapshot().context.sessionIds).toEqual([]);
      // capacity is free again
      w.create('s2', 'r2');
      w.create('s3', 'r3');
      expect(w.reply('r3')).toBeUndefined();
    });

    it('answers a destroy of a session it does not hold with ok (idempotent)', () => {
      const w = startWorker();
      w.actor.send({ type: 'command.destroy', requestId: 'd1', sessionId: 'ghost', force: false });
      expect(w.reply('d1')).toEqual({ ok: true });
    });

    it('receives commands through its coordinator link', async () => {
      const w = startWorker();
      await w.connect();
      w.streams.last().sendBack({ type: 'command.create', requestId: 'r1', sessionId: 's1', config });
      expect(w.session('s1')).toBeDefined();
    });

    it('destroys its sessions when the link registers under a new registration (the coordinator forgot them)', async () => {
      const w = startWorker();
      await w.connect('reg-1');
      await w.createReady('s1');
      w.heartbeats.last().sendBack({ type: 'link.failed', reason: 'coordinator restarted' });
      w.clock.increment(1_000);
      await w.connect('reg-2');
      expect(w.release.calls).toHaveLength(1);
      w.release.last().resolve();
      await flush();
      expect(w.actor.getSnapshot().context.sessionIds).toEqual([]);
    });

    it('keeps its sessions when the link re-registers under the same registration', async () => {
      const w = startWorker();
      await w.connect('reg-1');
      await w.createReady('s1');
      w.heartbeats.last().sendBack({ type: 'link.failed', reason: 'blip' });
      w.clock.increment(1_000);
      await w.connect('reg-1');
      expect(w.release.calls).toHaveLength(0);
      expect(w.sessionState('s1')).toBe('READY');
    });
  });

  describe('shutdown', () => {
    it('drains sessions, then deregisters, then stops', async () => {
      const w = startWorker();
      await w.connect('reg-1');
      await w.createReady('s1');
      await w.createReady('s2');
      w.actor.send({ type: 'command.task', requestId: 'r', spec: taskSpec('t1', 's1') });
      w.actor.send({ type: 'worker.shutdown' });
      expect(w.value()).toBe('draining');
      // the idle session goes at once, keeping its files; the busy one waits for its task
      expect(w.release.calls.map((c) => c.input)).toEqual([{ sessionId: 's2', workerId: 'w1', remove: false, force: true }]);
      expect(w.exec.run('t1').cancels).toEqual([]);
      // no new work while draining
      w.create('s3', 'r3');
      expect(w.reply('r3')).toMatchObject({ ok: false, error: { code: 'FAILED_PRECONDITION' } });
      w.actor.send({ type: 'command.task', requestId: 'r', spec: taskSpec('t2', 's1') });
      expect(w.emitted.find((e) => e.type === 'task.error')).toMatchObject({ taskId: 't2', error: { code: 'WORKER_LOST' } });
      w.release.calls[0]!.resolve();
      await flush();
      expect(w.value()).toBe('draining');
      w.exec.run('t1').finish(resultOutcome());
      expect(w.outcomes.get('t1')).toEqual([resultOutcome()]);
      w.release.last().resolve();
      await flush();
      expect(w.value()).toBe('deregistering');
      expect(w.deregister.last().input).toEqual({ workerId: 'w1', registrationId: 'reg-1', reason: 'worker shutting down' });
      w.deregister.last().resolve();
      await flush();
      expect(w.actor.getSnapshot().status).toBe('done');
      expect(w.value()).toBe('stopped');
    });

    it('cancels a task that outlives the drain timeout', async () => {
      const w = startWorker({ drainTimeoutMs: 2_000 }, { finishOnCancel: true });
      await w.connect();
      await w.createReady('s1');
      w.actor.send({ type: 'command.task', requestId: 'r', spec: taskSpec('t1', 's1') });
      w.actor.send({ type: 'worker.shutdown' });
      w.clock.increment(2_000);
      expect(w.exec.run('t1').cancels).toEqual(['drain timeout']);
      w.release.last().resolve();
      await flush();
      expect(w.value()).toBe('deregistering');
    });

    it('stops without a deregister call when the link never registered', async () => {
      const w = startWorker();
      w.actor.send({ type: 'worker.shutdown' });
      expect(w.deregister.calls).toHaveLength(0);
      expect(w.actor.getSnapshot().status).toBe('done');
    });
  });

  describe('supervising the coordinator link', () => {
    it('restarts a crashed link within the restart intensity', async () => {
      let now = 1_000_000;
      vi.spyOn(Date, 'now').mockImplementation(() => now);
      const w = startWorker({ linkIntensity: { maxRestarts: 2, windowMs: 10_000 } });
      for (let i = 0; i < 2; i++) {
        await w.connect(`reg-${i}`);
        const before = w.link();
        w.heartbeats.last().crash('heartbeat timer threw');
        expect(w.errors).toEqual([]);
        expect(w.link()).toBeDefined();
        expect(w.link()).not.toBe(before);
        expect(w.link()!.getSnapshot().value).toBe('registering');
        now += 1_000;
      }
      expect(w.actor.getSnapshot().context.linkRestarts).toHaveLength(2);
      expect(w.value()).toBe('running');
    });

    it('allows further restarts once old ones leave the window', async () => {
      let now = 1_000_000;
      vi.spyOn(Date, 'now').mockImplementation(() => now);
      const w = startWorker({ linkIntensity: { maxRestarts: 2, windowMs: 10_000 } });
      for (let i = 0; i < 5; i++) {
        await w.connect(`reg-${i}`);
        w.heartbeats.last().crash('boom');
        now += 6_000;
      }
      expect(w.value()).toBe('running');
      expect(w.actor.getSnapshot().context.escalation).toBe('');
    });

    it('escalates beyond the restart intensity: shuts the worker down and stops', async () => {
      let now = 1_000_000;
      vi.spyOn(Date, 'now').mockImplementation(() => now);
      const w = startWorker({ linkIntensity: { maxRestarts: 2, windowMs: 10_000 } });
      await w.createReady('s1');
      for (let i = 0; i < 3; i++) {
        await w.connect('reg-1');
        w.heartbeats.last().crash('boom');
        now += 1_000;
      }
      expect(w.actor.getSnapshot().context.escalation).toContain('crashed too often');
      expect(w.value()).toBe('draining');
      expect(w.release.last().input).toMatchObject({ sessionId: 's1', remove: false });
      w.release.last().resolve();
      await flush();
      expect(w.errors).toEqual([]);
      expect(w.actor.getSnapshot().status).toBe('done');
      expect(w.value()).toBe('stopped');
    });
  });
});
