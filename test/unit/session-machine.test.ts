import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SimulatedClock, type AnyActorRef } from 'xstate';
import {
  MAX_TASK_RECORDS,
  findTaskRecord,
  sessionMachine,
  sessionStateOf,
  type SessionInput,
  type SessionParentEvent,
  type SessionSnapshot,
} from '../../machines/session.machine.js';
import { taskMachine } from '../../machines/task.machine.js';
import type { SessionConfig } from '../../src/domain/sessions.js';
import {
  collectEmitted,
  controlledPromise,
  failedOutcome,
  fakeExecutor,
  flush,
  inspectAll,
  microstepTrail,
  resultOutcome,
  sessionInput,
  taskSpec,
  taskUpdateCollector,
  underParent,
  type FakeExecutorOptions,
} from '../helpers/machine-fakes.js';

type PrepareInput = { sessionId: string; workerId: string; config: SessionConfig };
type ReleaseInput = { sessionId: string; workerId: string; remove: boolean; force: boolean };

function startSession(overrides: Partial<SessionInput> = {}, execOptions: FakeExecutorOptions = {}, taskActions: Record<string, () => void> = {}) {
  const clock = new SimulatedClock();
  const exec = fakeExecutor(execOptions);
  const prepare = controlledPromise<{ workspacePath: string }, PrepareInput>();
  const release = controlledPromise<void, ReleaseInput>();
  const machine = sessionMachine.provide({
    actors: { task: taskMachine.provide({ actors: { executor: exec.logic }, actions: taskActions }), prepareWorkspace: prepare.logic, releaseWorkspace: release.logic },
  });
  const updates = taskUpdateCollector();
  const steps = microstepTrail((ref) => ref.id === 'child');
  const t = underParent(machine, sessionInput(overrides), { clock, inspect: inspectAll(updates.inspect, steps.inspect) });
  const session = t.child as AnyActorRef;
  const emitted = collectEmitted(session);
  const snap = () => session.getSnapshot() as SessionSnapshot;
  const api = {
    ...t,
    clock,
    exec,
    prepare,
    release,
    session,
    emitted,
    outcomes: updates.outcomes,
    trail: steps.trail,
    snap,
    state: () => sessionStateOf(snap()),
    submit: (taskId: string, sequence = 0) => session.send({ type: 'task.submit', spec: taskSpec(taskId, 's1', sequence) }),
    async ready() {
      prepare.last().resolve({ workspacePath: '/ws/s1' });
      await flush();
    },
  };
  return api;
}

describe('session machine', () => {
  beforeEach(() => {
    // sends to finished actors are expected here; keep the dev warnings out of the output
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  describe('preparing the workspace', () => {
    it('starts INITIALIZING and becomes READY when the workspace is prepared, telling the parent', async () => {
      const s = startSession();
      expect(s.state()).toBe('INITIALIZING');
      expect(s.prepare.last().input).toMatchObject({ sessionId: 's1', workerId: 'w1' });
      await s.ready();
      expect(s.state()).toBe('READY');
      expect(s.snap().context.workspacePath).toBe('/ws/s1');
      expect(s.sent<SessionParentEvent>('session.prepared')).toEqual([{ type: 'session.prepared', sessionId: 's1', requestId: 'req-create', workspacePath: '/ws/s1' }]);
    });

    it('becomes FAILED when the workspace cannot be prepared, telling the parent why', async () => {
      const s = startSession();
      s.prepare.last().reject(new Error('disk full'));
      await flush();
      expect(s.state()).toBe('FAILED');
      const [failed] = s.sent<Extract<SessionParentEvent, { type: 'session.failed' }>>('session.failed');
      expect(failed).toMatchObject({ sessionId: 's1', requestId: 'req-create' });
      expect(failed!.reason).toContain('disk full');
    });

    it('keeps tasks submitted while INITIALIZING and runs them once READY', async () => {
      const s = startSession();
      s.submit('t1');
      expect(s.exec.runs).toHaveLength(0);
      await s.ready();
      expect(s.state()).toBe('BUSY');
      expect(s.exec.active().map((r) => r.spec.taskId)).toEqual(['t1']);
    });

    it('fails queued tasks when preparation fails', async () => {
      const s = startSession();
      s.submit('t1');
      s.prepare.last().reject(new Error('no venv'));
      await flush();
      expect(s.outcomes.get('t1')).toHaveLength(1);
      expect(s.exec.runs).toHaveLength(0);
      expect(s.snap().context.queue).toEqual([]);
    });
  });

  describe('running tasks', () => {
    it('runs tasks one at a time in arrival order', async () => {
      const s = startSession();
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.submit('t3');
      expect(s.state()).toBe('BUSY');
      expect(s.exec.active().map((r) => r.spec.taskId)).toEqual(['t1']);
      expect(s.snap().context.queue).toEqual(['t2', 't3']);
      s.exec.run('t1').finish(resultOutcome());
      expect(s.exec.active().map((r) => r.spec.taskId)).toEqual(['t2']);
      s.exec.run('t2').finish(resultOutcome());
      expect(s.exec.active().map((r) => r.spec.taskId)).toEqual(['t3']);
      s.exec.run('t3').finish(resultOutcome());
      expect(s.exec.runs.map((r) => r.spec.taskId)).toEqual(['t1', 't2', 't3']);
      expect(s.state()).toBe('READY');
      expect(Object.values(s.snap().context.tasks).map((r) => r.state)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    });

    it('stays usable when user code fails: a FAILURE or TIMEOUT result returns the session to READY', async () => {
      const s = startSession();
      await s.ready();
      s.submit('t1');
      s.exec.run('t1').finish(resultOutcome('FAILURE'));
      expect(s.state()).toBe('READY');
      s.submit('t2');
      s.exec.run('t2').finish(resultOutcome('TIMEOUT'));
      expect(s.state()).toBe('READY');
      expect(s.snap().context.tasks.t1!.state).toBe('failed');
      expect(s.snap().context.tasks.t2!.state).toBe('timed_out');
    });

    it('cancels a queued task without running it and keeps running the current one', async () => {
      const s = startSession();
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.session.send({ type: 'task.cancel', taskId: 't2', reason: 'client' });
      expect(s.state()).toBe('BUSY');
      expect(s.outcomes.get('t2')![0]).toMatchObject({ status: 'CANCELLED' });
      s.exec.run('t1').finish(resultOutcome());
      expect(s.exec.runs.map((r) => r.spec.taskId)).toEqual(['t1']);
      expect(s.state()).toBe('READY');
    });

    it('forwards a cancel of the running task to its executor', async () => {
      const s = startSession({}, { finishOnCancel: true });
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'task.cancel', taskId: 't1', reason: 'client' });
      expect(s.exec.run('t1').cancels).toEqual(['client']);
      expect(s.snap().context.tasks.t1!.state).toBe('cancelled');
      expect(s.state()).toBe('READY');
    });

    it('never runs a repeated task id twice', async () => {
      const s = startSession();
      await s.ready();
      s.submit('t1');
      s.submit('t1');
      s.exec.run('t1').finish(resultOutcome());
      s.submit('t1');
      expect(s.exec.runs).toHaveLength(1);
      expect(s.outcomes.get('t1')).toHaveLength(1);
      expect(s.state()).toBe('READY');
    });

    it('finds a task record by its client sequence number', async () => {
      const s = startSession();
      await s.ready();
      s.submit('t1', 7);
      expect(findTaskRecord(s.snap(), { sequence: 7 })?.taskId).toBe('t1');
      expect(findTaskRecord(s.snap(), { taskId: 't1' })?.sequence).toBe(7);
      expect(findTaskRecord(s.snap(), { sequence: 8 })).toBeUndefined();
    });
  });

  describe('idling', () => {
    it('goes READY → IDLE after idleTimeout without activity', async () => {
      const s = startSession({ idleTimeoutMs: 1_000 });
      await s.ready();
      s.clock.increment(999);
      expect(s.state()).toBe('READY');
      s.clock.increment(1);
      expect(s.state()).toBe('IDLE');
    });

    it('restarts the idle countdown after each task', async () => {
      const s = startSession({ idleTimeoutMs: 1_000 });
      await s.ready();
      s.clock.increment(900);
      s.submit('t1');
      s.clock.increment(500);
      s.exec.run('t1').finish(resultOutcome());
      s.clock.increment(900);
      expect(s.state()).toBe('READY');
      s.clock.increment(100);
      expect(s.state()).toBe('IDLE');
    });

    it('never idles when idleTimeout is 0', async () => {
      const s = startSession({ idleTimeoutMs: 0 });
      await s.ready();
      s.clock.increment(10 * 24 * 3600 * 1000);
      expect(s.state()).toBe('READY');
    });

    it('goes IDLE → READY → BUSY when a new task arrives', async () => {
      const s = startSession({ idleTimeoutMs: 1_000 });
      await s.ready();
      s.clock.increment(1_000);
      expect(s.state()).toBe('IDLE');
      s.submit('t1');
      expect(s.state()).toBe('BUSY');
      expect(s.trail.slice(-3)).toEqual(['IDLE', 'READY', 'BUSY']);
      expect(s.exec.active()).toHaveLength(1);
    });
  });

  describe('failing', () => {
    it.each(['INTERNAL', 'WORKER_LOST'] as const)('goes BUSY → FAILED on a %s error outcome and ends the queued tasks', async (code) => {
      const s = startSession();
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.submit('t3');
      s.exec.run('t1').finish(failedOutcome(code, 'the sandbox broke'));
      expect(s.state()).toBe('FAILED');
      expect(s.snap().context.failureReason).toContain('the sandbox broke');
      for (const id of ['t2', 't3']) {
        expect(s.outcomes.get(id)).toHaveLength(1);
        expect(s.outcomes.get(id)![0]).toMatchObject({ type: 'error', error: { code: 'WORKER_LOST' } });
      }
      expect(s.exec.runs).toHaveLength(1);
      expect(s.snap().context.queue).toEqual([]);
      expect(s.snap().context.current).toBeNull();
    });

    it('stays READY on a non-machinery error outcome such as LIMIT_EXCEEDED', async () => {
      const s = startSession();
      await s.ready();
      s.submit('t1');
      s.exec.run('t1').finish(failedOutcome('LIMIT_EXCEEDED'));
      expect(s.state()).toBe('READY');
    });

    it('goes BUSY → FAILED when the executor itself crashes (an INTERNAL outcome)', async () => {
      const s = startSession();
      await s.ready();
      s.submit('t1');
      s.exec.run('t1').crash('runner died');
      expect(s.state()).toBe('FAILED');
      expect(s.errors).toEqual([]);
    });

    it.each(['READY', 'IDLE', 'BUSY'] as const)('goes %s → FAILED when the worker is lost, ending live tasks with WORKER_LOST', async (from) => {
      const s = startSession({ idleTimeoutMs: 1_000 });
      await s.ready();
      if (from === 'IDLE') s.clock.increment(1_000);
      if (from === 'BUSY') {
        s.submit('t1');
        s.submit('t2');
      }
      expect(s.state()).toBe(from);
      s.session.send({ type: 'worker.lost', reason: 'heartbeats stopped' });
      expect(s.state()).toBe('FAILED');
      if (from === 'BUSY') {
        expect(s.outcomes.get('t1')![0]).toMatchObject({ error: { code: 'WORKER_LOST' } });
        expect(s.outcomes.get('t2')![0]).toMatchObject({ error: { code: 'WORKER_LOST' } });
        expect(s.exec.active()).toHaveLength(0);
      }
    });

    it('rejects new tasks when FAILED with FAILED_PRECONDITION, emitted and recorded', async () => {
      const s = startSession();
      await s.ready();
      s.session.send({ type: 'worker.lost', reason: 'gone' });
      s.submit('t9');
      const rejected = s.emitted.filter((e) => e.type === 'task.rejected');
      expect(rejected).toEqual([{ type: 'task.rejected', sessionId: 's1', taskId: 't9', error: expect.objectContaining({ code: 'FAILED_PRECONDITION' }) }]);
      expect(s.snap().context.tasks.t9).toMatchObject({ state: 'errored', outcome: { type: 'error', error: { code: 'FAILED_PRECONDITION' } } });
      expect(s.exec.runs).toHaveLength(0);
      s.submit('t9');
      expect(s.emitted.filter((e) => e.type === 'task.rejected')).toHaveLength(1);
    });
  });

  describe('supervising its tasks', () => {
    it('ends a task whose actor crashed as an INTERNAL error, once, and fails the session without crashing itself', async () => {
      const s = startSession({}, {}, {
        markStarted: () => {
          throw new Error('boom');
        },
      });
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      await flush();
      expect(s.state()).toBe('FAILED');
      expect(findTaskRecord(s.snap(), { taskId: 't1' })?.outcome).toMatchObject({ type: 'error', error: { code: 'INTERNAL', retriable: true } });
      expect(findTaskRecord(s.snap(), { taskId: 't2' })?.state).toBe('errored');
      expect(s.errors).toEqual([]);
      expect(s.snap().status).toBe('active');
    });
  });

  describe('destroying and draining', () => {
    it.each(['READY', 'IDLE', 'FAILED'] as const)('goes %s → DRAINING → TERMINATED on destroy, releasing the workspace', async (from) => {
      const s = startSession({ idleTimeoutMs: 1_000 });
      await s.ready();
      if (from === 'IDLE') s.clock.increment(1_000);
      if (from === 'FAILED') s.session.send({ type: 'worker.lost', reason: 'x' });
      expect(s.state()).toBe(from);
      s.session.send({ type: 'session.destroy', force: false, requestId: 'req-destroy' });
      expect(s.state()).toBe('DRAINING');
      expect(s.release.last().input).toEqual({ sessionId: 's1', workerId: 'w1', remove: true, force: true });
      s.release.last().resolve();
      await flush();
      expect(s.session.getSnapshot().status).toBe('done');
      expect(s.state()).toBe('TERMINATED');
      expect(s.sent('session.terminated')).toEqual([{ type: 'session.terminated', sessionId: 's1', requestId: 'req-destroy' }]);
    });

    it('terminates even when releasing the workspace fails', async () => {
      const s = startSession();
      await s.ready();
      s.session.send({ type: 'session.destroy', force: false, requestId: 'r' });
      s.release.last().reject(new Error('busy files'));
      await flush();
      expect(s.state()).toBe('TERMINATED');
      expect(s.sent('session.terminated')).toHaveLength(1);
    });

    it('stops preparing and terminates when destroyed while INITIALIZING', async () => {
      const s = startSession();
      const prep = s.prepare.last();
      s.session.send({ type: 'session.destroy', force: false, requestId: 'r' });
      expect(prep.signal.aborted).toBe(true);
      s.release.last().resolve();
      await flush();
      expect(s.state()).toBe('TERMINATED');
    });

    it('ignores destroy without force while BUSY', async () => {
      const s = startSession();
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'session.destroy', force: false, requestId: 'r' });
      expect(s.state()).toBe('BUSY');
      expect(s.exec.run('t1').cancels).toEqual([]);
      expect(s.release.calls).toHaveLength(0);
    });

    it('cancels the running and queued tasks on a forced destroy while BUSY, then terminates', async () => {
      const s = startSession({}, { finishOnCancel: true });
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.session.send({ type: 'session.destroy', force: true, requestId: 'r' });
      expect(s.exec.run('t1').cancels).toEqual(['session destroyed']);
      expect(s.exec.runs).toHaveLength(1);
      expect(s.outcomes.get('t1')![0]).toMatchObject({ status: 'CANCELLED' });
      expect(s.outcomes.get('t2')![0]).toMatchObject({ status: 'CANCELLED' });
      expect(s.release.calls).toHaveLength(1);
      s.release.last().resolve();
      await flush();
      expect(s.state()).toBe('TERMINATED');
    });

    it('still terminates after a forced destroy when the executor ignores the cancel (cancelGrace)', async () => {
      const s = startSession();
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'session.destroy', force: true, requestId: 'r' });
      expect(s.release.calls).toHaveLength(0);
      s.clock.increment(10_000);
      expect(s.release.calls).toHaveLength(1);
    });

    it('lets the running task finish on drain, keeps the workspace files, and rejects new tasks meanwhile', async () => {
      const s = startSession({ drainTimeoutMs: 5_000 });
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.session.send({ type: 'session.drain' });
      expect(s.state()).toBe('DRAINING');
      expect(s.exec.run('t1').cancels).toEqual([]);
      expect(s.outcomes.get('t2')![0]).toMatchObject({ status: 'CANCELLED' });
      s.submit('t3');
      expect(s.emitted.filter((e) => e.type === 'task.rejected').map((e) => (e as unknown as { taskId: string }).taskId)).toEqual(['t3']);
      s.clock.increment(4_000);
      s.exec.run('t1').finish(resultOutcome());
      expect(s.outcomes.get('t1')![0]).toMatchObject({ status: 'SUCCESS' });
      expect(s.release.last().input.remove).toBe(false);
      s.release.last().resolve();
      await flush();
      expect(s.state()).toBe('TERMINATED');
    });

    it('cancels the running task when it outlives drainTimeout', async () => {
      const s = startSession({ drainTimeoutMs: 5_000 }, { finishOnCancel: true });
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'session.drain' });
      s.clock.increment(4_999);
      expect(s.exec.run('t1').cancels).toEqual([]);
      s.clock.increment(1);
      expect(s.exec.run('t1').cancels).toEqual(['drain timeout']);
      expect(s.release.calls).toHaveLength(1);
    });

    it('upgrades a drain to a destroy: the running task is cancelled and the workspace is removed', async () => {
      const s = startSession({ drainTimeoutMs: 5_000 }, { finishOnCancel: true });
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'session.drain' });
      expect(s.exec.run('t1').cancels).toEqual([]);
      s.session.send({ type: 'session.destroy', force: false, requestId: 'r9' });
      expect(s.exec.run('t1').cancels).toEqual(['session destroyed']);
      expect(s.release.last().input.remove).toBe(true);
      s.release.last().resolve();
      await flush();
      expect(s.state()).toBe('TERMINATED');
      expect(s.snap().context.destroyRequestId).toBe('r9');
    });

    it('ends live tasks with WORKER_LOST when the worker is lost while DRAINING', async () => {
      const s = startSession();
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'session.drain' });
      s.session.send({ type: 'worker.lost', reason: 'gone' });
      expect(s.outcomes.get('t1')![0]).toMatchObject({ error: { code: 'WORKER_LOST' } });
      expect(s.release.calls).toHaveLength(1);
    });

    it('does nothing once TERMINATED', async () => {
      const s = startSession();
      await s.ready();
      s.session.send({ type: 'session.destroy', force: false, requestId: 'r' });
      s.release.last().resolve();
      await flush();
      const before = s.session.getSnapshot();
      s.submit('t1');
      s.session.send({ type: 'session.destroy', force: true, requestId: 'again' });
      s.session.send({ type: 'worker.lost', reason: 'x' });
      s.clock.increment(60_000);
      await flush();
      expect(s.session.getSnapshot()).toBe(before);
      expect(s.sent('session.terminated')).toHaveLength(1);
      expect(s.exec.runs).toHaveLength(0);
    });
  });

  describe('metadata and records', () => {
    it('merges metadata on a merge put and replaces it otherwise', async () => {
      const s = startSession({ metadata: { a: '1', b: '2' } });
      s.session.send({ type: 'metadata.put', metadata: { b: '3', c: '4' }, merge: true });
      expect(s.snap().context.metadata).toEqual({ a: '1', b: '3', c: '4' });
      s.session.send({ type: 'metadata.put', metadata: { z: '9' }, merge: false });
      expect(s.snap().context.metadata).toEqual({ z: '9' });
    });

    it(`keeps at most ${MAX_TASK_RECORDS} task records, forgetting the oldest finished and never a live task`, async () => {
      const quick = (id: string) => id.startsWith('q');
      const s = startSession({}, { onStart: (run) => (quick(run.spec.taskId) ? run.finish(resultOutcome()) : undefined) });
      await s.ready();
      for (let i = 0; i < MAX_TASK_RECORDS + 4; i++) s.submit(`q${i}`);
      await flush();
      expect(s.outcomes.size).toBe(MAX_TASK_RECORDS + 4);
      s.submit('live-running');
      s.submit('live-queued');
      for (let i = 0; i < 10; i++) s.submit(`late${i}`);
      const ctx = s.snap().context;
      expect(Object.keys(ctx.tasks)).toHaveLength(MAX_TASK_RECORDS);
      expect(ctx.order).toHaveLength(MAX_TASK_RECORDS);
      expect(ctx.tasks['live-running']?.state).toBe('running');
      expect(ctx.tasks['live-queued']?.state).toBe('queued');
      for (let i = 0; i < 10; i++) expect(ctx.tasks[`late${i}`]?.state).toBe('queued');
      expect(ctx.tasks.q0).toBeUndefined();
      expect(ctx.tasks[`q${MAX_TASK_RECORDS + 3}`]?.state).toBe('succeeded');
    });
  });
});
