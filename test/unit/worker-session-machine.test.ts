import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { recordOf, taskIdsOf } from '../../machines/domain/tasks.js';
import type { SessionState } from '../../machines/domain/sessions.js';
import { sessionChildId, sessionStateOf } from '../../machines/worker/session.machine.js';
import { CANCEL_GRACE_MS } from '../../machines/worker/task.machine.js';
import { failedOutcome, flush, resultOutcome, sessionDescription, sessionHarness, type FakeExecutorOptions, type SessionInputOverrides } from '../helpers/machine-fakes.js';

const start = (overrides: SessionInputOverrides = {}, exec: FakeExecutorOptions = {}, fakes: Parameters<typeof sessionHarness>[2] = {}) => sessionHarness(overrides, exec, fakes);
type Harness = ReturnType<typeof start>;

/** Drive a ready session into `state` (IDLE needs an idle timeout; BUSY leaves t-busy running). */
async function into(s: Harness, state: 'INITIALIZING' | 'READY' | 'IDLE' | 'BUSY' | 'FAILED'): Promise<void> {
  if (state === 'INITIALIZING') return;
  await s.ready();
  if (state === 'IDLE') s.clock.increment(s.input.description.idleTimeoutMs);
  if (state === 'BUSY') s.submit('t-busy');
  if (state === 'FAILED') {
    s.submit('t-fail');
    s.exec.run('t-fail').finish(failedOutcome('WORKER_LOST', 'the sandbox broke'));
  }
  expect(s.state()).toBe(state);
}

describe('worker session machine', () => {
  beforeEach(() => {
    // sends to finished actors are expected here; keep the dev warnings out of the output
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  describe('INITIALIZING', () => {
    it('reports INITIALIZING, prepares the workspace from its description, and becomes READY with the prepared path', async () => {
      const s = start();
      expect(s.state()).toBe('INITIALIZING');
      expect(s.reportStates()).toEqual(['INITIALIZING']);
      expect(s.prepare.last().input).toEqual({ description: s.input.description, origin: 'create', restarts: 0 });
      expect(s.persist.last().input).toEqual({ sessionId: 's1' });
      s.clock.increment(500);
      await s.ready();
      expect(s.state()).toBe('READY');
      const last = s.reports().at(-1)!;
      expect(last).toEqual({ description: { ...s.input.description, lastActivityMs: 500 }, state: 'READY', workspacePath: '/ws/s1', failureReason: '', gone: false, incarnation: '#0' });
    });

    it('saves the description it got from the disk once the workspace is ready', async () => {
      const s = start();
      expect(s.saved()).toEqual([]);
      await s.ready({ description: sessionDescription({ metadata: { from: 'disk' }, metadataVersion: 2 }) });
      expect(s.saved()).toEqual([expect.objectContaining({ sessionId: 's1', metadata: { from: 'disk' }, metadataVersion: 2 })]);
      expect(s.snapshot().context.description.metadata).toEqual({ from: 'disk' });
    });

    it('becomes FAILED when the workspace cannot be prepared, reporting why', async () => {
      const s = start();
      s.prepare.last().reject(new Error('disk full'));
      await flush();
      expect(s.state()).toBe('FAILED');
      const last = s.reports().at(-1)!;
      expect(last.state).toBe('FAILED');
      expect(last.failureReason).toBe('workspace could not be prepared: disk full');
    });

    it('keeps tasks submitted while INITIALIZING and runs them once READY', async () => {
      const s = start();
      s.submit('t1');
      expect(s.exec.runs).toHaveLength(0);
      await s.ready();
      expect(s.state()).toBe('BUSY');
      expect(s.exec.active().map((r) => r.spec.taskId)).toEqual(['t1']);
      expect(s.reportStates()).toEqual(['INITIALIZING', 'READY', 'BUSY']);
    });

    it('cancels the queued tasks when preparation fails', async () => {
      const s = start();
      s.submit('t1');
      s.prepare.last().reject(new Error('no venv'));
      await flush();
      expect(s.outcomes.get('t1')).toEqual([expect.objectContaining({ type: 'result', status: 'CANCELLED' })]);
      expect(s.exec.runs).toHaveLength(0);
      expect(s.snapshot().context.queue).toEqual([]);
    });
  });

  describe('reports', () => {
    it('reports every state change to its parent, with the state it entered, through a whole life', async () => {
      const s = start({ description: { idleTimeoutMs: 1_000 } });
      await s.ready();
      s.submit('t1');
      s.exec.run('t1').finish(resultOutcome('FAILURE'));
      s.clock.increment(1_000);
      s.submit('t2');
      s.exec.run('t2').finish(failedOutcome('WORKER_LOST'));
      s.session.send({ type: 'session.destroy', atMs: s.clock.now() });
      s.release.last().resolve();
      await flush();
      const expected: SessionState[] = ['INITIALIZING', 'READY', 'BUSY', 'READY', 'IDLE', 'READY', 'BUSY', 'FAILED', 'DRAINING', 'TERMINATED'];
      expect(s.reportStates()).toEqual(expected);
      expect(s.trail).toEqual(expected);
      expect(s.reports().map((r) => r.gone)).toEqual([...expected.slice(0, -1).map(() => false), true]);
    });

    it('carries the latest description in each report (last activity of the tasks)', async () => {
      const s = start();
      await s.ready();
      s.submit('t1', 1_000);
      s.exec.run('t1').finish(resultOutcome('SUCCESS', { finishedAtMs: 1_800 }));
      expect(s.reports().at(-1)).toMatchObject({ state: 'READY', description: { lastActivityMs: 1_800 } });
    });
  });

  describe('READY, BUSY and the task queue', () => {
    it('runs tasks one at a time in arrival order', async () => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.submit('t3');
      expect(s.state()).toBe('BUSY');
      expect(s.exec.active().map((r) => r.spec.taskId)).toEqual(['t1']);
      expect(s.snapshot().context.queue).toEqual(['t2', 't3']);
      s.exec.run('t1').finish();
      expect(s.exec.active().map((r) => r.spec.taskId)).toEqual(['t2']);
      s.exec.run('t2').finish();
      expect(s.exec.active().map((r) => r.spec.taskId)).toEqual(['t3']);
      s.exec.run('t3').finish();
      expect(s.exec.runs.map((r) => r.spec.taskId)).toEqual(['t1', 't2', 't3']);
      expect(s.state()).toBe('READY');
      const book = s.snapshot().context.book;
      expect(taskIdsOf(book)).toEqual(['t1', 't2', 't3']);
      expect(book.records.map((r) => r.state)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    });

    it.each(['FAILURE', 'TIMEOUT', 'CANCELLED'] as const)('goes back BUSY → READY when user code ends %s (the session stays usable)', async (status) => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.exec.run('t1').finish(resultOutcome(status));
      expect(s.state()).toBe('READY');
      s.submit('t2');
      expect(s.exec.active().map((r) => r.spec.taskId)).toEqual(['t2']);
    });

    it('goes back to READY on an error outcome that is not the machinery breaking (LIMIT_EXCEEDED)', async () => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.exec.run('t1').finish(failedOutcome('LIMIT_EXCEEDED'));
      expect(s.state()).toBe('READY');
    });

    it('never runs a repeated task id twice, while it runs or after it ended, and refuses the repeat saying why (it reaches the worker only when the coordinator forgot it)', async () => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.submit('t1');
      expect(s.snapshot().context.queue).toEqual([]);
      expect(s.refused().at(-1)).toMatchObject({ taskId: 't1', error: { code: 'FAILED_PRECONDITION', message: expect.stringContaining('is still running') } });
      s.exec.run('t1').finish();
      s.submit('t1');
      expect(s.exec.runs).toHaveLength(1);
      expect(s.outcomes.get('t1')).toHaveLength(1);
      expect(s.refused().at(-1)).toMatchObject({ taskId: 't1', error: { code: 'FAILED_PRECONDITION', message: expect.stringContaining('ended SUCCEEDED') } });
      expect(s.refused()).toHaveLength(2);
      expect(s.state()).toBe('READY');
    });

    it('cancels a queued task without running it and keeps running the current one', async () => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.session.send({ type: 'task.cancel', taskId: 't2', reason: 'client', atMs: 5 });
      expect(s.state()).toBe('BUSY');
      expect(s.outcomes.get('t2')).toEqual([expect.objectContaining({ status: 'CANCELLED' })]);
      expect(s.snapshot().context.queue).toEqual([]);
      s.exec.run('t1').finish();
      expect(s.exec.runs.map((r) => r.spec.taskId)).toEqual(['t1']);
      expect(s.state()).toBe('READY');
    });

    it('forwards a cancel of the running task to its executor', async () => {
      const s = start({}, { finishOnCancel: true });
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'task.cancel', taskId: 't1', reason: 'client', atMs: 5 });
      expect(s.exec.run('t1').cancels).toEqual(['client']);
      expect(recordOf(s.snapshot().context.book, 't1')!.state).toBe('cancelled');
      expect(s.state()).toBe('READY');
    });

    it('ignores a cancel of a task it does not run', async () => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.exec.run('t1').finish();
      s.session.send({ type: 'task.cancel', taskId: 't1', reason: 'late', atMs: 5 });
      s.session.send({ type: 'task.cancel', taskId: 'ghost', reason: 'never', atMs: 5 });
      expect(s.state()).toBe('READY');
      expect(s.errors).toEqual([]);
    });

    it('stops each task actor once it ended', async () => {
      const s = start();
      await s.ready();
      s.submit('t1');
      expect(s.snapshot().children['task:t1']).toBeDefined();
      s.exec.run('t1').finish();
      expect(s.snapshot().children['task:t1']).toBeUndefined();
      expect(s.parent.system.get('task:t1')).toBeUndefined();
    });
  });

  describe('IDLE', () => {
    it('goes READY → IDLE after the idle timeout from its description, saving and reporting', async () => {
      const s = start({ description: { idleTimeoutMs: 1_000 } });
      await s.ready();
      const saves = s.saved().length;
      s.clock.increment(999);
      expect(s.state()).toBe('READY');
      s.clock.increment(1);
      expect(s.state()).toBe('IDLE');
      expect(s.reportStates().at(-1)).toBe('IDLE');
      expect(s.saved()).toHaveLength(saves + 1);
    });

    it('restarts the idle countdown after each task', async () => {
      const s = start({ description: { idleTimeoutMs: 1_000 } });
      await s.ready();
      s.clock.increment(900);
      s.submit('t1');
      s.clock.increment(500);
      s.exec.run('t1').finish();
      s.clock.increment(999);
      expect(s.state()).toBe('READY');
      s.clock.increment(1);
      expect(s.state()).toBe('IDLE');
    });

    it('does not idle when the idle timeout is 0', async () => {
      const s = start({ description: { idleTimeoutMs: 0 } });
      await s.ready();
      // 0 arms the longest timer there is (2^31-1 ms, about 24.8 days)
      s.clock.increment(20 * 24 * 3600 * 1000);
      expect(s.state()).toBe('READY');
    });

    it('goes IDLE → READY → BUSY when a new task arrives', async () => {
      const s = start({ description: { idleTimeoutMs: 1_000 } });
      await s.ready();
      s.clock.increment(1_000);
      s.submit('t1');
      expect(s.state()).toBe('BUSY');
      expect(s.trail.slice(-3)).toEqual(['IDLE', 'READY', 'BUSY']);
      expect(s.reportStates().slice(-3)).toEqual(['IDLE', 'READY', 'BUSY']);
      expect(s.exec.active()).toHaveLength(1);
    });
  });

  describe('FAILED', () => {
    it.each(['INTERNAL', 'LIMIT_EXCEEDED', 'INVALID_ARGUMENT'] as const)('stays usable after a tool error %s: the task ends with it, the next task runs', async (code) => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.exec.run('t1').finish(failedOutcome(code, 'ENAMETOOLONG: name too long'));
      expect(s.state()).toBe('BUSY');
      expect(s.outcomes.get('t1')).toEqual([expect.objectContaining({ type: 'error', error: expect.objectContaining({ code }) })]);
      s.exec.run('t2').finish();
      expect(s.state()).toBe('READY');
      expect(s.snapshot().context.failureReason).toBe('');
    });

    it.each(['WORKER_LOST'] as const)('goes BUSY → FAILED on a %s error outcome, cancelling the queued tasks', async (code) => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.submit('t3');
      s.exec.run('t1').finish(failedOutcome(code, 'the sandbox broke'));
      expect(s.state()).toBe('FAILED');
      expect(s.snapshot().context.failureReason).toBe('task t1 failed: the sandbox broke');
      expect(s.reports().at(-1)).toMatchObject({ state: 'FAILED', failureReason: 'task t1 failed: the sandbox broke' });
      for (const id of ['t2', 't3']) expect(s.outcomes.get(id)).toEqual([expect.objectContaining({ status: 'CANCELLED' })]);
      expect(s.exec.runs).toHaveLength(1);
      expect(s.snapshot().context.queue).toEqual([]);
      expect(s.snapshot().context.current).toBeNull();
    });

    it('goes BUSY → FAILED when the executor itself crashes (an INTERNAL outcome), without crashing itself', async () => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.exec.run('t1').crash('runner died');
      expect(s.state()).toBe('FAILED');
      expect(s.snapshot().context.failureReason).toContain('runner died');
      expect(s.snapshot().status).toBe('active');
      expect(s.errors).toEqual([]);
    });

    it('refuses new tasks with task.refused FAILED_PRECONDITION and runs none', async () => {
      const s = start();
      await into(s, 'FAILED');
      s.submit('t9');
      expect(s.refused()).toEqual([{ type: 'task.refused', sessionId: 's1', taskId: 't9', error: expect.objectContaining({ code: 'FAILED_PRECONDITION' }) }]);
      expect(s.refused()[0]!.error.message).toContain('has FAILED');
      expect(s.exec.runs.map((r) => r.spec.taskId)).toEqual(['t-fail']);
      expect(recordOf(s.snapshot().context.book, 't9')).toBeUndefined();
    });
  });

  describe('destroy: DRAINING → TERMINATED', () => {
    it.each(['INITIALIZING', 'READY', 'IDLE', 'FAILED'] as const)('goes %s → DRAINING → TERMINATED, removing the workspace and reporting it gone', async (from) => {
      const s = start({ description: { idleTimeoutMs: 1_000 } });
      await into(s, from);
      s.session.send({ type: 'session.destroy', atMs: s.clock.now() });
      expect(s.state()).toBe('DRAINING');
      expect(s.reportStates().at(-1)).toBe('DRAINING');
      expect(s.release.last().input).toEqual({ sessionId: 's1', remove: true });
      s.release.last().resolve();
      await flush();
      expect(s.session.getSnapshot().status).toBe('done');
      expect(s.state()).toBe('TERMINATED');
      expect(s.reports().at(-1)).toMatchObject({ state: 'TERMINATED', gone: true, description: { sessionId: 's1' } });
      expect(s.reports().filter((r) => r.gone)).toHaveLength(1);
    });

    it('stops preparing when destroyed while INITIALIZING', async () => {
      const s = start();
      const prep = s.prepare.last();
      s.session.send({ type: 'session.destroy', atMs: 0 });
      expect(prep.signal.aborted).toBe(true);
    });

    it('cancels the running and queued tasks when destroyed while BUSY, then releases', async () => {
      const s = start({}, { finishOnCancel: true });
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.session.send({ type: 'session.destroy', atMs: 50 });
      expect(s.exec.run('t1').cancels).toEqual(['session destroyed']);
      expect(s.exec.runs).toHaveLength(1);
      expect(s.outcomes.get('t1')).toEqual([expect.objectContaining({ status: 'CANCELLED' })]);
      expect(s.outcomes.get('t2')).toEqual([expect.objectContaining({ status: 'CANCELLED' })]);
      expect(s.release.calls.map((c) => c.input)).toEqual([{ sessionId: 's1', remove: true }]);
      s.release.last().resolve();
      await flush();
      expect(s.state()).toBe('TERMINATED');
    });

    it('waits for a task that ignores the cancel until its cancel grace ends it', async () => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'session.destroy', atMs: 0 });
      s.clock.increment(CANCEL_GRACE_MS - 1);
      expect(s.release.calls).toHaveLength(0);
      s.clock.increment(1);
      expect(s.release.calls).toHaveLength(1);
    });

    it('terminates, reporting it gone, even when releasing the workspace fails', async () => {
      const s = start();
      await s.ready();
      s.session.send({ type: 'session.destroy', atMs: 0 });
      s.release.last().reject(new Error('busy files'));
      await flush();
      expect(s.state()).toBe('TERMINATED');
      expect(s.reports().at(-1)).toMatchObject({ state: 'TERMINATED', gone: true });
    });

    it('refuses tasks while DRAINING', async () => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'session.destroy', atMs: 0 });
      s.submit('t2');
      expect(s.refused().map((e) => [e.taskId, e.error.code])).toEqual([['t2', 'FAILED_PRECONDITION']]);
      expect(s.refused()[0]!.error.message).toContain('shutting down');
    });

    it('does nothing once TERMINATED', async () => {
      const s = start();
      await s.ready();
      s.session.send({ type: 'session.destroy', atMs: 0 });
      s.release.last().resolve();
      await flush();
      const before = s.session.getSnapshot();
      s.submit('t1');
      s.session.send({ type: 'session.destroy', atMs: 1 });
      s.session.send({ type: 'metadata.put', metadata: { a: 'b' }, version: 9, atMs: 1 });
      s.clock.increment(60_000);
      await flush();
      expect(s.session.getSnapshot()).toBe(before);
      expect(s.reports().filter((r) => r.gone)).toHaveLength(1);
      expect(s.exec.runs).toHaveLength(0);
    });
  });

  describe('drain (worker shutdown): the files stay', () => {
    it('lets the running task finish, cancels the queued ones, keeps the workspace and sends no gone report', async () => {
      const s = start({ drainTimeoutMs: 5_000 });
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.session.send({ type: 'session.drain', atMs: 100 });
      expect(s.state()).toBe('DRAINING');
      expect(s.exec.run('t1').cancels).toEqual([]);
      expect(s.outcomes.get('t2')).toEqual([expect.objectContaining({ status: 'CANCELLED' })]);
      s.clock.increment(4_000);
      s.exec.run('t1').finish();
      expect(s.outcomes.get('t1')).toEqual([expect.objectContaining({ status: 'SUCCESS' })]);
      expect(s.release.calls.map((c) => c.input)).toEqual([{ sessionId: 's1', remove: false }]);
      s.release.last().resolve();
      await flush();
      expect(s.state()).toBe('TERMINATED');
      expect(s.reportStates().at(-1)).toBe('DRAINING');
      expect(s.reports().some((r) => r.gone)).toBe(false);
    });

    it('fails (for its supervisor to restart it from the disk) when its description writer crashes', async () => {
      const s = start();
      await s.ready();
      s.persist.last().crash('EIO');
      await flush();
      expect(s.session.getSnapshot().status).toBe('error');
      expect(String((s.session.getSnapshot() as { error?: unknown }).error)).toContain("description writer failed: EIO");
    });

    it('saves the description as it drains', async () => {
      const s = start();
      await s.ready();
      const saves = s.saved().length;
      s.session.send({ type: 'session.drain', atMs: 0 });
      expect(s.saved()).toHaveLength(saves + 1);
    });

    it('cancels the running task when it outlives the drain timeout', async () => {
      const s = start({ drainTimeoutMs: 5_000 }, { finishOnCancel: true });
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'session.drain', atMs: 0 });
      s.clock.increment(4_999);
      expect(s.exec.run('t1').cancels).toEqual([]);
      s.clock.increment(1);
      expect(s.exec.run('t1').cancels).toEqual(['drain timeout']);
      expect(s.release.calls.map((c) => c.input.remove)).toEqual([false]);
    });

    it('is upgraded by a destroy: the running task is cancelled, the workspace removed, and the session reported gone', async () => {
      const s = start({ drainTimeoutMs: 5_000 }, { finishOnCancel: true });
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'session.drain', atMs: 0 });
      expect(s.exec.run('t1').cancels).toEqual([]);
      s.session.send({ type: 'session.destroy', atMs: 10 });
      expect(s.exec.run('t1').cancels).toEqual(['session destroyed']);
      expect(s.release.last().input).toEqual({ sessionId: 's1', remove: true });
      s.release.last().resolve();
      await flush();
      expect(s.reports().at(-1)).toMatchObject({ state: 'TERMINATED', gone: true });
    });
  });

  describe('metadata', () => {
    const parentEvents = (s: ReturnType<typeof start>, type: string) => s.sent(type);

    it('merges or replaces in arrival order while READY, counting the version, then saves, reports, and tells the parent once saved', async () => {
      const s = start({ description: { metadata: { a: '1' }, metadataVersion: 1 } });
      await s.ready();
      s.session.send({ type: 'metadata.put', requestId: 'm1', metadata: { b: '2' }, merge: true, atMs: 10 });
      expect(s.snapshot().context.description).toMatchObject({ metadata: { a: '1', b: '2' }, metadataVersion: 2 });
      s.session.send({ type: 'metadata.put', requestId: 'm2', metadata: { c: '3' }, merge: false, atMs: 11 });
      expect(s.snapshot().context.description).toMatchObject({ metadata: { c: '3' }, metadataVersion: 3 });
      expect(s.saved().at(-1)).toMatchObject({ metadata: { c: '3' }, metadataVersion: 3 });
      expect(s.reports().at(-1)).toMatchObject({ state: 'READY', description: { metadata: { c: '3' }, metadataVersion: 3 } });
      await flush();
      expect(parentEvents(s, 'metadata.saved')).toEqual([
        { type: 'metadata.saved', sessionId: 's1', requestIds: ['m1'], error: null },
        { type: 'metadata.saved', sessionId: 's1', requestIds: ['m2'], error: null },
      ]);
    });

    it('tells the parent nothing until the write is done', async () => {
      const s = start({}, {}, { holdSaves: true });
      await s.ready();
      s.session.send({ type: 'metadata.put', requestId: 'm1', metadata: { b: '2' }, merge: true, atMs: 10 });
      await flush();
      expect(parentEvents(s, 'metadata.saved')).toEqual([]);
      s.confirmSaves();
      await flush();
      expect(parentEvents(s, 'metadata.saved')).toEqual([{ type: 'metadata.saved', sessionId: 's1', requestIds: ['m1'], error: null }]);
    });

    it.each(['BUSY', 'IDLE', 'FAILED'] as const)('takes metadata while %s and reports it with that state', async (state) => {
      const s = start({ description: { idleTimeoutMs: 1_000 } });
      await into(s, state);
      s.session.send({ type: 'metadata.put', requestId: 'm1', metadata: { k: 'v' }, merge: true, atMs: 10 });
      expect(s.state()).toBe(state);
      expect(s.reports().at(-1)).toMatchObject({ state, description: { metadata: { k: 'v' }, metadataVersion: 1 } });
    });

    it('applies changes that arrived while INITIALIZING on top of the description on disk, then saves them', async () => {
      const s = start({ description: { metadataVersion: 1 } });
      s.session.send({ type: 'metadata.put', requestId: 'm1', metadata: { fresh: 'yes' }, merge: true, atMs: 10 });
      await s.ready({ description: sessionDescription({ metadata: { kept: 'disk' }, metadataVersion: 5, userId: 'disk-user' }) });
      expect(s.snapshot().context.description).toMatchObject({ metadata: { kept: 'disk', fresh: 'yes' }, metadataVersion: 6, userId: 'disk-user' });
      expect(s.saved().at(-1)).toMatchObject({ metadata: { kept: 'disk', fresh: 'yes' }, metadataVersion: 6 });
      await flush();
      expect(parentEvents(s, 'metadata.saved')).toEqual([{ type: 'metadata.saved', sessionId: 's1', requestIds: ['m1'], error: null }]);
    });

    it('reports a change made while DRAINING, so the answer carries it', async () => {
      const s = start();
      await s.ready();
      s.submit('t1');
      s.session.send({ type: 'session.drain', atMs: 5 });
      expect(s.state()).toBe('DRAINING');
      s.session.send({ type: 'metadata.put', requestId: 'm1', metadata: { k: 'v' }, merge: true, atMs: 10 });
      expect(s.reports().at(-1)).toMatchObject({ state: 'DRAINING', description: { metadata: { k: 'v' }, metadataVersion: 1 } });
    });

    it('keeps saving and answering metadata while a task whose id is "persist" runs (task actors cannot take the name of another child)', async () => {
      const s = start();
      await s.ready();
      s.submit('persist');
      expect(s.state()).toBe('BUSY');
      s.session.send({ type: 'metadata.put', requestId: 'm1', metadata: { k: 'v' }, merge: true, atMs: 10 });
      await flush();
      expect(parentEvents(s, 'metadata.saved')).toEqual([{ type: 'metadata.saved', sessionId: 's1', requestIds: ['m1'], error: null }]);
      s.exec.run('persist').finish();
      await flush();
      expect(s.state()).toBe('READY');
      s.session.send({ type: 'metadata.put', requestId: 'm2', metadata: { k: 'w' }, merge: true, atMs: 11 });
      await flush();
      expect(s.snapshot().status).toBe('active');
      expect(parentEvents(s, 'metadata.saved')).toHaveLength(2);
    });

    it('saves a change that arrived while INITIALIZING even when preparing fails', async () => {
      const s = start();
      s.session.send({ type: 'metadata.put', requestId: 'm1', metadata: { k: 'v' }, merge: true, atMs: 10 });
      s.prepare.last().reject(new Error('no venv'));
      await flush();
      expect(s.state()).toBe('FAILED');
      expect(s.saved().at(-1)).toMatchObject({ metadata: { k: 'v' }, metadataVersion: 1 });
      expect(parentEvents(s, 'metadata.saved')).toEqual([{ type: 'metadata.saved', sessionId: 's1', requestIds: ['m1'], error: null }]);
    });
  });

  describe('coming back: restarts and adoption', () => {
    it('notes a restart when its supervisor restarted it, with when and what survived', async () => {
      const s = start({ supervision: { restarts: 1, lastExit: 'crashed: boom' } });
      expect(s.prepare.last().input.restarts).toBe(1);
      s.clock.increment(7_000);
      await s.ready();
      const d = s.snapshot().context.description;
      expect(d.restartedAtMs).toBe(7_000);
      expect(d.survivalNote).toContain('crashed: boom');
      expect(d.survivalNote).toContain('restarted');
      expect(d.survivalNote).toContain('files and installed packages kept');
      expect(s.reports().at(-1)!.description.survivalNote).toBe(d.survivalNote);
      expect(s.saved().at(-1)!.survivalNote).toBe(d.survivalNote);
    });

    it('notes an adoption by a restarted worker', async () => {
      const s = start({ origin: 'adopt' });
      expect(s.prepare.last().input.origin).toBe('adopt');
      s.clock.increment(3_000);
      await s.ready();
      const d = s.snapshot().context.description;
      expect(d.restartedAtMs).toBe(3_000);
      expect(d.survivalNote).toContain('its worker restarted');
      expect(d.survivalNote).toContain('WORKER_LOST');
    });

    it('notes nothing for a session created now', async () => {
      const s = start({ supervision: { restarts: 0, lastExit: '' } });
      s.clock.increment(3_000);
      await s.ready();
      expect(s.snapshot().context.description).toMatchObject({ restartedAtMs: 0, survivalNote: '' });
    });
  });

  describe('orphaned tasks and injected faults', () => {
    it('cancels every live task on tasks.orphan and stays usable', async () => {
      const s = start({}, { finishOnCancel: true });
      await s.ready();
      s.submit('t1');
      s.submit('t2');
      s.session.send({ type: 'tasks.orphan', reason: 'new registration', atMs: 10 });
      expect(s.exec.run('t1').cancels).toEqual(['new registration']);
      expect(s.outcomes.get('t2')).toEqual([expect.objectContaining({ status: 'CANCELLED' })]);
      expect(s.exec.runs).toHaveLength(1);
      expect(s.state()).toBe('READY');
      s.submit('t3');
      expect(s.exec.active().map((r) => r.spec.taskId)).toEqual(['t3']);
    });

    it('cancels the tasks queued while INITIALIZING on tasks.orphan', async () => {
      const s = start();
      s.submit('t1');
      s.session.send({ type: 'tasks.orphan', reason: 'new registration', atMs: 10 });
      expect(s.outcomes.get('t1')).toEqual([expect.objectContaining({ status: 'CANCELLED' })]);
      await s.ready();
      expect(s.exec.runs).toHaveLength(0);
      expect(s.state()).toBe('READY');
    });

    it('ignores session.fault when faults are not enabled', async () => {
      const s = start();
      await s.ready();
      s.session.send({ type: 'session.fault' });
      expect(s.session.getSnapshot().status).toBe('active');
      expect(s.state()).toBe('READY');
    });

    it('crashes on session.fault when faults are enabled, and its parent hears of it', async () => {
      const s = start({ faults: true });
      await s.ready();
      s.session.send({ type: 'session.fault' });
      expect(s.session.getSnapshot().status).toBe('error');
      expect(s.sent('xstate.error.actor.child')).toHaveLength(1);
    });
  });

  describe('helpers', () => {
    it('names its actor session:<id> and maps a done snapshot to TERMINATED', async () => {
      expect(sessionChildId('abc')).toBe('session:abc');
      const s = start();
      await s.ready();
      s.session.send({ type: 'session.destroy', atMs: 0 });
      expect(sessionStateOf(s.snapshot())).toBe('DRAINING');
      s.release.last().resolve();
      await flush();
      expect(sessionStateOf(s.snapshot())).toBe('TERMINATED');
    });
  });
});
