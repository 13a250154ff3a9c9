import { describe, expect, it } from 'vitest';
import { liveTaskStateOf, TASK_CANCEL_GRACE_MS, taskProxyIdOf, type TaskProxyContext, type TaskProxyEmitted, type TaskProxyEndedEvent, type TaskProxyInput } from '../../machines/coordinator/task-proxy.machine.js';
import type { TaskUpdate } from '../../machines/domain/tasks.js';
import { coordinatorTree, hostWithWorker, resultOutcome, simulatedClock, T0 } from '../helpers/coordinator-fakes.js';

const ID = taskProxyIdOf('t1');

function startTask(overrides: Partial<TaskProxyInput> = {}) {
  const clock = simulatedClock();
  const tree = coordinatorTree(clock);
  const host = hostWithWorker({ connection: tree.connection, taskProxy: tree.taskProxy }, clock);
  const task = host.spawn('taskProxy', ID, { taskId: 't1', sessionId: 's1', workerId: 'w1', tool: 'echo', enqueuedAtMs: T0, ownerId: 'client-1', ...overrides } satisfies TaskProxyInput);
  const worker = tree.streams.of('w1');
  return {
    clock,
    tree,
    host,
    task,
    worker,
    ctx: () => task.getSnapshot().context as TaskProxyContext,
    updates: (): TaskUpdate[] => host.emitted<TaskProxyEmitted>('task.update', ID).map((e) => e.update),
    outcomes: () => host.emitted<TaskProxyEmitted>('task.update', ID).filter((e) => e.update.type === 'outcome'),
    ended: () => host.toHost('task.ended', ID) as TaskProxyEndedEvent[],
    cancels: () => tree.streams.commandsOf('cancel_task', 'w1'),
  };
}

describe('task proxy: following the worker', () => {
  it('passes progress and logs on as task.update in order, then exactly one outcome, and ends', () => {
    const t = startTask();
    t.clock.increment(100);
    t.worker.progress('t1', 10, 'starting');
    t.worker.log('t1', 'line 1');
    t.worker.progress('t1', 60);
    t.worker.log('t1', 'line 2');
    const outcome = resultOutcome('SUCCESS', T0 + 900);
    t.worker.finish('t1', outcome);
    expect(t.updates().map((u) => (u.type === 'progress' ? `progress ${u.progress.percent}` : u.type === 'log' ? `log ${u.log.line}` : `outcome ${u.type}`))).toEqual([
      'progress 10',
      'log line 1',
      'progress 60',
      'log line 2',
      'outcome outcome',
    ]);
    expect(t.outcomes()).toEqual([{ type: 'task.update', taskId: 't1', update: { type: 'outcome', outcome } }]);
    expect(t.task.getSnapshot().status).toBe('done');
    expect(t.ended()).toEqual([{ type: 'task.ended', taskId: 't1', outcome: { type: 'result', status: 'SUCCESS', metadata: outcome.metadata }, atMs: T0 + 900 }]);
  });

  it('is queued until the worker says anything about the task, then running', () => {
    const t = startTask();
    expect(liveTaskStateOf(t.ctx())).toBe('queued');
    t.clock.increment(250);
    t.worker.log('t1', 'hello');
    expect(liveTaskStateOf(t.ctx())).toBe('running');
    expect(t.ctx().startedAtMs).toBe(T0 + 250);
    t.clock.increment(250);
    t.worker.progress('t1', 50);
    expect(t.ctx().startedAtMs).toBe(T0 + 250);
    expect(t.ctx().progress).toMatchObject({ percent: 50 });
  });

  it('gives the result cache the whole outcome once, and keeps only its summary in the context', () => {
    const t = startTask();
    const outcome = resultOutcome('FAILURE', T0 + 700, 'x'.repeat(10_000));
    t.worker.finish('t1', outcome);
    expect(t.tree.kept).toEqual([{ taskId: 't1', sessionId: 's1', outcome }]);
    expect(t.ctx().outcome).toEqual({ type: 'result', status: 'FAILURE', metadata: outcome.metadata });
    expect(JSON.stringify(t.task.getSnapshot().context)).not.toContain('xxxxxxxx');
    expect(t.task.getSnapshot().output).toEqual(t.ctx().outcome);
  });

  it('keeps passing progress on while a cancel waits for its answer', () => {
    const t = startTask();
    t.task.send({ type: 'task.cancel', reason: 'user', atMs: t.clock.now() });
    t.worker.progress('t1', 90, 'cleaning up');
    t.worker.log('t1', 'bye');
    expect(t.updates().map((u) => u.type)).toEqual(['progress', 'log']);
    expect(t.task.getSnapshot().value).toEqual({ live: 'cancelling' });
  });
});

describe('task proxy: losing the worker', () => {
  it('ends WORKER_LOST (retriable) with the reason when its worker is lost', () => {
    const t = startTask();
    t.worker.progress('t1', 30);
    t.task.send({ type: 'worker.lost', reason: 'heartbeats stopped', atMs: t.clock.now() });
    const [update] = t.outcomes();
    expect(update!.update).toEqual({ type: 'outcome', outcome: { type: 'error', error: expect.objectContaining({ code: 'WORKER_LOST', retriable: true, message: expect.stringContaining('heartbeats stopped') }) } });
    expect(t.tree.kept).toEqual([{ taskId: 't1', sessionId: 's1', outcome: (update!.update as Extract<TaskUpdate, { type: 'outcome' }>).outcome }]);
    expect(t.ended()[0]!.outcome).toMatchObject({ type: 'error', error: { code: 'WORKER_LOST' } });
  });

  // The session's record of a lost task must say it ended when it was lost, not when it started.
  it('dates the end of a lost task by the loss, not by its start', () => {
    const t = startTask();
    t.clock.increment(100);
    t.worker.progress('t1', 30);
    t.clock.increment(4_900);
    t.task.send({ type: 'worker.lost', reason: 'heartbeats stopped', atMs: t.clock.now() });
    expect(t.ended()[0]!.atMs).toBe(T0 + 5_000);
  });

  it('ends WORKER_LOST also while a cancel waits for its answer', () => {
    const t = startTask();
    t.task.send({ type: 'task.cancel', reason: 'user', atMs: t.clock.now() });
    t.task.send({ type: 'worker.lost', reason: 'stream closed', atMs: t.clock.now() });
    expect(t.outcomes()).toHaveLength(1);
    expect(t.ended()[0]!.outcome).toMatchObject({ type: 'error', error: { code: 'WORKER_LOST' } });
    t.clock.increment(TASK_CANCEL_GRACE_MS * 2);
    expect(t.outcomes()).toHaveLength(1);
  });
});

describe('task proxy: cancelling', () => {
  it('writes cancel_task to its worker and ends with the worker\'s own answer when it comes in time', () => {
    const t = startTask();
    t.task.send({ type: 'task.cancel', reason: 'the user asked', atMs: t.clock.now() });
    expect(t.cancels()).toEqual([{ kind: 'cancel_task', taskId: 't1', sessionId: 's1', reason: 'the user asked' }]);
    expect(t.task.getSnapshot().value).toEqual({ live: 'cancelling' });
    t.clock.increment(TASK_CANCEL_GRACE_MS - 1);
    const answer = resultOutcome('CANCELLED', t.clock.now());
    t.worker.finish('t1', answer);
    expect(t.outcomes().map((e) => e.update)).toEqual([{ type: 'outcome', outcome: answer }]);
    t.clock.increment(10);
    expect(t.outcomes()).toHaveLength(1);
  });

  it('ends CANCELLED when the grace runs out and the worker never answered, not a moment before', () => {
    const t = startTask();
    t.clock.increment(1_000);
    t.worker.progress('t1', 5);
    t.clock.increment(1_000);
    t.task.send({ type: 'task.cancel', reason: 'user', atMs: t.clock.now() });
    t.clock.increment(TASK_CANCEL_GRACE_MS - 1);
    expect(t.outcomes()).toHaveLength(0);
    t.clock.increment(1);
    const cancelledAt = T0 + 2_000;
    expect(t.outcomes().map((e) => e.update)).toEqual([
      {
        type: 'outcome',
        outcome: {
          type: 'result',
          status: 'CANCELLED',
          artifacts: [],
          metadata: { workerId: 'w1', startedAtMs: T0 + 1_000, finishedAtMs: cancelledAt + TASK_CANCEL_GRACE_MS, durationMs: 1_000 + TASK_CANCEL_GRACE_MS, queuedMs: 1_000 },
        },
      },
    ]);
    expect(t.tree.kept).toHaveLength(1);
    expect(t.ended()[0]!.atMs).toBe(cancelledAt + TASK_CANCEL_GRACE_MS);
    expect(t.task.getSnapshot().status).toBe('done');
  });

  it('asks the worker once, however many cancels arrive', () => {
    const t = startTask();
    t.task.send({ type: 'task.cancel', reason: 'first', atMs: t.clock.now() });
    t.task.send({ type: 'task.cancel', reason: 'second', atMs: t.clock.now() });
    t.task.send({ type: 'task.detached', followerId: 'client-1', atMs: t.clock.now() });
    expect(t.cancels().map((c) => c.reason)).toEqual(['first']);
  });

  it('cancels the task when the follower that submitted it detaches', () => {
    const t = startTask();
    t.task.send({ type: 'task.detached', followerId: 'client-1', atMs: t.clock.now() });
    expect(t.cancels()).toEqual([{ kind: 'cancel_task', taskId: 't1', sessionId: 's1', reason: 'the client that started the task went away' }]);
    t.clock.increment(TASK_CANCEL_GRACE_MS);
    expect(t.ended()[0]!.outcome).toMatchObject({ type: 'result', status: 'CANCELLED' });
  });

  it('keeps running when another follower detaches, or when a task without an owner loses a follower', () => {
    const t = startTask();
    t.task.send({ type: 'task.detached', followerId: 'watcher-2', atMs: t.clock.now() });
    expect(t.task.getSnapshot().value).toEqual({ live: 'waiting' });
    const anonymous = startTask({ ownerId: '' });
    anonymous.task.send({ type: 'task.detached', followerId: '', atMs: anonymous.clock.now() });
    expect(anonymous.task.getSnapshot().value).toEqual({ live: 'waiting' });
    t.clock.increment(TASK_CANCEL_GRACE_MS * 3);
    expect(t.cancels()).toEqual([]);
    expect(anonymous.cancels()).toEqual([]);
    expect(t.outcomes()).toHaveLength(0);
  });
});
