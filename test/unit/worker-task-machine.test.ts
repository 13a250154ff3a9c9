import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SimulatedClock, type AnyEventObject } from 'xstate';
import type { TaskOutcome } from '../../machines/domain/tasks.js';
import { CANCEL_GRACE_MS, taskMachine, type TaskEmitted, type TaskEndedEvent } from '../../machines/worker/task.machine.js';
import { collectEmitted, fakeExecutor, flush, resultOutcome, taskSpec, underParent, type FakeExecutorOptions } from '../helpers/machine-fakes.js';

function startTask(options: FakeExecutorOptions = {}, enqueuedAtMs = 1_000) {
  const clock = new SimulatedClock();
  const exec = fakeExecutor(options);
  const machine = taskMachine.provide({ actors: { executor: exec.logic } });
  const t = underParent(machine, { spec: taskSpec('t1', 's1'), workerId: 'w1', enqueuedAtMs }, { clock });
  const emitted = collectEmitted(t.child) as TaskEmitted[];
  const outcomes = (): TaskOutcome[] => emitted.flatMap((e) => (e.update.type === 'outcome' ? [e.update.outcome] : []));
  return {
    ...t,
    clock,
    exec,
    emitted,
    outcomes,
    value: () => t.child.getSnapshot().value as unknown,
    context: () => t.child.getSnapshot().context as { outcome: unknown; startedAtMs: number; cancelledAtMs: number },
    ended: () => t.sent<TaskEndedEvent>('task.ended'),
    start: (atMs = 2_000) => t.child.send({ type: 'task.start', atMs }),
  };
}

describe('worker task machine', () => {
  beforeEach(() => {
    // sends to finished actors are expected here; keep the dev warnings out of the output
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  describe('running', () => {
    it('waits queued without running the executor until its session starts it', () => {
      const t = startTask();
      expect(t.value()).toBe('queued');
      expect(t.exec.runs).toHaveLength(0);
      t.start(2_000);
      expect(t.value()).toEqual({ running: 'active' });
      expect(t.exec.runs.map((r) => r.input)).toEqual([{ spec: taskSpec('t1', 's1'), workerId: 'w1', enqueuedAtMs: 1_000, startedAtMs: 2_000 }]);
    });

    it('ends with exactly one outcome: the whole outcome is emitted, the context, output and task.ended keep only its summary', () => {
      const t = startTask();
      t.start();
      const outcome = resultOutcome('SUCCESS', { startedAtMs: 2_000, finishedAtMs: 2_500, durationMs: 500, queuedMs: 1_000 });
      t.exec.run('t1').finish(outcome);
      expect(t.child.getSnapshot().status).toBe('done');
      const summary = { type: 'result', status: 'SUCCESS', metadata: outcome.type === 'result' ? outcome.metadata : undefined };
      expect(t.outcomes()).toEqual([outcome]);
      expect(t.outcomes()[0]).toHaveProperty('reply');
      expect(t.context().outcome).toEqual(summary);
      expect(t.context().outcome).not.toHaveProperty('reply');
      expect(t.child.getSnapshot().output).toEqual(summary);
      expect(t.ended()).toEqual([{ type: 'task.ended', taskId: 't1', outcome: summary, atMs: 2_500 }]);
      expect(t.exec.run('t1').stopped).toBe(true);
    });

    it('tags every update with its task and session ids', () => {
      const t = startTask();
      t.start();
      t.exec.run('t1').finish();
      expect(t.emitted.map((e) => [e.type, e.taskId, e.sessionId])).toEqual([['task.update', 't1', 's1']]);
    });

    it('streams progress and logs before the outcome, keeping none of them in its context', () => {
      const t = startTask();
      t.start();
      const run = t.exec.run('t1');
      run.progress(50);
      run.log('hello');
      run.finish();
      expect(t.emitted.map((e) => e.update.type)).toEqual(['progress', 'log', 'outcome']);
      expect(t.emitted[0]!.update).toMatchObject({ type: 'progress', progress: { percent: 50 } });
      expect(t.emitted[1]!.update).toMatchObject({ type: 'log', log: { line: 'hello' } });
      expect(JSON.stringify(t.child.getSnapshot().context)).not.toContain('hello');
    });

    it('does nothing with events that arrive after it is done', async () => {
      const t = startTask();
      t.start();
      t.exec.run('t1').finish();
      const before = t.child.getSnapshot();
      const late: AnyEventObject[] = [
        { type: 'task.start', atMs: 9 },
        { type: 'task.cancel', reason: 'late', atMs: 9 },
        { type: 'task.finished', outcome: resultOutcome('FAILURE') },
      ];
      for (const e of late) t.child.send(e);
      t.clock.increment(60_000);
      await flush();
      expect(t.child.getSnapshot()).toBe(before);
      expect(t.outcomes()).toHaveLength(1);
      expect(t.ended()).toHaveLength(1);
      expect(t.exec.runs).toHaveLength(1);
    });
  });

  describe('cancelling', () => {
    it('ends CANCELLED at the cancel time without ever running the executor when cancelled while queued', () => {
      const t = startTask({}, 1_000);
      t.child.send({ type: 'task.cancel', reason: 'client', atMs: 1_700 });
      expect(t.child.getSnapshot().status).toBe('done');
      expect(t.exec.runs).toHaveLength(0);
      expect(t.outcomes()).toEqual([
        { type: 'result', status: 'CANCELLED', artifacts: [], metadata: { workerId: 'w1', startedAtMs: 1_700, finishedAtMs: 1_700, durationMs: 0, queuedMs: 700 } },
      ]);
      expect(t.ended()).toEqual([{ type: 'task.ended', taskId: 't1', outcome: expect.objectContaining({ status: 'CANCELLED' }), atMs: 1_700 }]);
    });

    it('forwards a cancel to the running executor and ends with what the executor reports', () => {
      const t = startTask();
      t.start();
      t.child.send({ type: 'task.cancel', reason: 'client gave up', atMs: 3_000 });
      expect(t.value()).toEqual({ running: 'cancelling' });
      const run = t.exec.run('t1');
      expect(run.cancels).toEqual(['client gave up']);
      // the process finished anyway before it saw the signal: its outcome wins
      run.finish(resultOutcome('FAILURE'));
      expect(t.outcomes().map((o) => o.type === 'result' && o.status)).toEqual(['FAILURE']);
      expect(t.ended()).toHaveLength(1);
    });

    it('ends CANCELLED after the cancel grace when the executor never answers, and stops it', () => {
      const t = startTask();
      t.start(2_000);
      t.child.send({ type: 'task.cancel', reason: 'stop', atMs: 3_000 });
      t.clock.increment(CANCEL_GRACE_MS - 1);
      expect(t.child.getSnapshot().status).toBe('active');
      t.clock.increment(1);
      expect(t.child.getSnapshot().status).toBe('done');
      expect(t.outcomes()).toEqual([
        { type: 'result', status: 'CANCELLED', artifacts: [], metadata: { workerId: 'w1', startedAtMs: 2_000, finishedAtMs: 3_000 + CANCEL_GRACE_MS, durationMs: 1_000 + CANCEL_GRACE_MS, queuedMs: 1_000 } },
      ]);
      expect(t.ended()[0]!.atMs).toBe(3_000 + CANCEL_GRACE_MS);
      expect(t.exec.run('t1').stopped).toBe(true);
    });

    it('honours a cancel grace overridden with provide({ delays })', () => {
      const clock = new SimulatedClock();
      const exec = fakeExecutor();
      const t = underParent(taskMachine.provide({ actors: { executor: exec.logic }, delays: { cancelGrace: 100 } }), { spec: taskSpec('t1'), workerId: 'w1', enqueuedAtMs: 0 }, { clock });
      t.child.send({ type: 'task.start', atMs: 0 });
      t.child.send({ type: 'task.cancel', reason: 'stop', atMs: 0 });
      clock.increment(99);
      expect(t.child.getSnapshot().status).toBe('active');
      clock.increment(1);
      expect(t.child.getSnapshot().status).toBe('done');
    });

    it('ignores a second cancel while the first one is pending', () => {
      const t = startTask();
      t.start();
      t.child.send({ type: 'task.cancel', reason: 'one', atMs: 1 });
      t.child.send({ type: 'task.cancel', reason: 'two', atMs: 2 });
      expect(t.exec.run('t1').cancels).toEqual(['one']);
      t.clock.increment(CANCEL_GRACE_MS);
      expect(t.outcomes()).toHaveLength(1);
    });

    it('still streams the executor progress while a cancel is pending', () => {
      const t = startTask();
      t.start();
      t.child.send({ type: 'task.cancel', reason: 'stop', atMs: 1 });
      t.exec.run('t1').log('cleaning up');
      expect(t.emitted.map((e) => e.update.type)).toEqual(['log']);
    });
  });

  describe('executor failures', () => {
    it('ends with a retriable INTERNAL error outcome, marked broken, when the executor actor fails while running', () => {
      const t = startTask();
      t.start();
      t.exec.run('t1').crash('sandbox died');
      expect(t.child.getSnapshot().status).toBe('done');
      const [outcome] = t.outcomes();
      expect(outcome).toMatchObject({ type: 'error', error: { code: 'INTERNAL', retriable: true } });
      expect(outcome?.type === 'error' && outcome.error.message).toContain('sandbox died');
      expect(t.ended()).toEqual([{ type: 'task.ended', taskId: 't1', outcome, atMs: 2_000, broken: true }]);
      expect(t.errors).toEqual([]);
    });

    it('ends with an INTERNAL error outcome when the executor cannot start', () => {
      const t = startTask({ failOnStart: () => true });
      t.start();
      expect(t.outcomes()).toHaveLength(1);
      expect(t.outcomes()[0]).toMatchObject({ type: 'error', error: { code: 'INTERNAL' } });
      expect(t.ended()).toHaveLength(1);
    });

    it('ends with INTERNAL when the executor fails during the cancel grace, once', () => {
      const t = startTask();
      t.start();
      t.child.send({ type: 'task.cancel', reason: 'stop', atMs: 1 });
      t.exec.run('t1').crash('kill failed');
      t.clock.increment(CANCEL_GRACE_MS * 2);
      expect(t.outcomes()).toHaveLength(1);
      expect(t.outcomes()[0]).toMatchObject({ type: 'error', error: { code: 'INTERNAL' } });
    });
  });
});
