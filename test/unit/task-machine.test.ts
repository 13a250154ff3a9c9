import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SimulatedClock, type AnyEventObject } from 'xstate';
import { taskMachine, type TaskEmitted, type TaskEndedEvent } from '../../machines/task.machine.js';
import type { TaskOutcome } from '../../src/domain/tasks.js';
import { collectEmitted, fakeExecutor, flush, resultOutcome, taskSpec, underParent } from '../helpers/machine-fakes.js';

function startTask(options: Parameters<typeof fakeExecutor>[0] = {}) {
  const clock = new SimulatedClock();
  const exec = fakeExecutor(options);
  const machine = taskMachine.provide({ actors: { executor: exec.logic } });
  const t = underParent(machine, { spec: taskSpec('t1'), workerId: 'w1', enqueuedAtMs: 0 }, { clock });
  const emitted = collectEmitted(t.child);
  const outcomes = (): TaskOutcome[] =>
    (emitted as TaskEmitted[]).filter((e) => e.type === 'task.update' && e.update.type === 'outcome').map((e) => (e.update as { outcome: TaskOutcome }).outcome);
  const value = () => t.child.getSnapshot().value as unknown;
  return { ...t, clock, exec, emitted, outcomes, value, ended: () => t.sent<TaskEndedEvent>('task.ended') };
}

describe('task machine', () => {
  beforeEach(() => {
    // sends to finished actors are expected here; keep the dev warnings out of the output
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  it('waits queued without running the executor until the session starts it', () => {
    const t = startTask();
    expect(t.value()).toBe('queued');
    expect(t.exec.runs).toHaveLength(0);
    t.child.send({ type: 'task.start' });
    expect(t.value()).toEqual({ running: 'active' });
    expect(t.exec.runs).toHaveLength(1);
    expect(t.exec.runs[0]!.spec.taskId).toBe('t1');
    expect(t.exec.runs[0]!.workerId).toBe('w1');
  });

  it('ends CANCELLED without ever running the executor when cancelled while queued', () => {
    const t = startTask();
    t.child.send({ type: 'task.cancel', reason: 'client' });
    expect(t.child.getSnapshot().status).toBe('done');
    expect(t.exec.runs).toHaveLength(0);
    expect(t.outcomes()).toHaveLength(1);
    expect(t.outcomes()[0]).toMatchObject({ type: 'result', status: 'CANCELLED' });
    expect(t.ended()).toEqual([{ type: 'task.ended', taskId: 't1', outcome: t.outcomes()[0] }]);
  });

  it('reports the executor outcome once as task.update and once to the parent as task.ended', () => {
    const t = startTask();
    t.child.send({ type: 'task.start' });
    const outcome = resultOutcome('SUCCESS');
    t.exec.run('t1').finish(outcome);
    expect(t.child.getSnapshot().status).toBe('done');
    expect(t.child.getSnapshot().output).toEqual(outcome);
    expect(t.outcomes()).toEqual([outcome]);
    expect(t.ended()).toEqual([{ type: 'task.ended', taskId: 't1', outcome }]);
    expect(t.exec.run('t1').stopped).toBe(true);
  });

  it('streams progress and logs before the outcome', () => {
    const t = startTask();
    t.child.send({ type: 'task.start' });
    const run = t.exec.run('t1');
    run.progress(50);
    run.log('hello');
    run.finish(resultOutcome());
    const types = (t.emitted as TaskEmitted[]).map((e) => e.update.type);
    expect(types).toEqual(['progress', 'log', 'outcome']);
    expect(t.child.getSnapshot().context.progress?.percent).toBe(50);
  });

  it('forwards a cancel to the running executor and ends with what the executor reports', () => {
    const t = startTask();
    t.child.send({ type: 'task.start' });
    t.child.send({ type: 'task.cancel', reason: 'client gave up' });
    expect(t.value()).toEqual({ running: 'cancelling' });
    const run = t.exec.run('t1');
    expect(run.cancels).toEqual(['client gave up']);
    // the process finished anyway before it saw the signal: its outcome wins
    run.finish(resultOutcome('FAILURE'));
    expect(t.outcomes()).toEqual([resultOutcome('FAILURE')]);
    expect(t.ended()).toHaveLength(1);
  });

  it('ends CANCELLED after cancelGrace when the executor never answers a cancel', () => {
    const t = startTask();
    t.child.send({ type: 'task.start' });
    t.child.send({ type: 'task.cancel', reason: 'stop' });
    t.clock.increment(9_999);
    expect(t.child.getSnapshot().status).toBe('active');
    t.clock.increment(1);
    expect(t.child.getSnapshot().status).toBe('done');
    expect(t.outcomes()).toHaveLength(1);
    expect(t.outcomes()[0]).toMatchObject({ type: 'result', status: 'CANCELLED' });
    expect(t.exec.run('t1').stopped).toBe(true);
  });

  it('honours a cancelGrace overridden with provide({ delays })', () => {
    const clock = new SimulatedClock();
    const exec = fakeExecutor();
    const machine = taskMachine.provide({ actors: { executor: exec.logic }, delays: { cancelGrace: 100 } });
    const t = underParent(machine, { spec: taskSpec('t1'), workerId: 'w1', enqueuedAtMs: 0 }, { clock });
    t.child.send({ type: 'task.start' });
    t.child.send({ type: 'task.cancel', reason: 'stop' });
    clock.increment(100);
    expect(t.child.getSnapshot().status).toBe('done');
  });

  it('ignores a second cancel while the first one is pending', () => {
    const t = startTask();
    t.child.send({ type: 'task.start' });
    t.child.send({ type: 'task.cancel', reason: 'one' });
    t.child.send({ type: 'task.cancel', reason: 'two' });
    expect(t.exec.run('t1').cancels).toEqual(['one']);
  });

  it('ends with an INTERNAL error outcome when the executor actor fails while running', () => {
    const t = startTask();
    t.child.send({ type: 'task.start' });
    t.exec.run('t1').crash('sandbox died');
    expect(t.child.getSnapshot().status).toBe('done');
    const [outcome] = t.outcomes();
    expect(outcome).toMatchObject({ type: 'error', error: { code: 'INTERNAL', retriable: true } });
    expect(outcome?.type === 'error' && outcome.error.message).toContain('sandbox died');
    expect(t.ended()).toHaveLength(1);
    expect(t.errors).toEqual([]);
  });

  it('ends with an INTERNAL error outcome when the executor cannot start', () => {
    const t = startTask({ failOnStart: () => true });
    t.child.send({ type: 'task.start' });
    expect(t.outcomes()).toHaveLength(1);
    expect(t.outcomes()[0]).toMatchObject({ type: 'error', error: { code: 'INTERNAL' } });
  });

  it('ends with a retriable WORKER_LOST error when the worker is lost while running', () => {
    const t = startTask();
    t.child.send({ type: 'task.start' });
    t.child.send({ type: 'worker.lost', reason: 'heartbeats stopped' });
    expect(t.outcomes()).toHaveLength(1);
    expect(t.outcomes()[0]).toMatchObject({ type: 'error', error: { code: 'WORKER_LOST', retriable: true } });
    expect(t.exec.run('t1').stopped).toBe(true);
  });

  it('ends with WORKER_LOST when the worker is lost while queued, without running', () => {
    const t = startTask();
    t.child.send({ type: 'worker.lost', reason: 'gone' });
    expect(t.outcomes()[0]).toMatchObject({ type: 'error', error: { code: 'WORKER_LOST', retriable: true } });
    expect(t.exec.runs).toHaveLength(0);
  });

  it('ends with WORKER_LOST when the worker is lost while a cancel is pending', () => {
    const t = startTask();
    t.child.send({ type: 'task.start' });
    t.child.send({ type: 'task.cancel', reason: 'stop' });
    t.child.send({ type: 'worker.lost', reason: 'gone' });
    expect(t.outcomes()).toHaveLength(1);
    expect(t.outcomes()[0]).toMatchObject({ type: 'error', error: { code: 'WORKER_LOST' } });
    t.clock.increment(60_000);
    expect(t.outcomes()).toHaveLength(1);
  });

  it('does nothing with events that arrive after it is done', async () => {
    const t = startTask();
    t.child.send({ type: 'task.start' });
    t.exec.run('t1').finish(resultOutcome());
    const before = t.child.getSnapshot();
    const late: AnyEventObject[] = [
      { type: 'task.start' },
      { type: 'task.cancel', reason: 'late' },
      { type: 'worker.lost', reason: 'late' },
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
