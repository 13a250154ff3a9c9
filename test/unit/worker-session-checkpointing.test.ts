/**
 * The worker session's CHECKPOINTING state: the session's own checkpoint and restore are queued
 * as tasks like any other (tool `checkpoint` / `restore`), and while one of them runs the session
 * is CHECKPOINTING instead of BUSY (reported to the parent, and what sessionStateOf says). Tasks
 * keep one queue: a client task that arrives during a checkpoint waits behind it, a checkpoint
 * that arrives during a client task waits behind that. A fast-check model checks the same over
 * random sequences of submits, completions, cancels and metadata changes.
 * Same harness as worker-session-machine.test.ts: the real session and task machines under a
 * test parent, a fake executor the test completes, simulated time.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SessionState } from '../../machines/domain/sessions.js';
import { recordOf, type TaskSpec } from '../../machines/domain/tasks.js';
import { sessionStateOf } from '../../machines/worker/session.machine.js';
import { failedOutcome, flush, resultOutcome, sessionHarness, taskSpec, type FakeExecutorOptions, type SessionInputOverrides } from '../helpers/machine-fakes.js';

type Harness = ReturnType<typeof sessionHarness>;
type Tool = 'echo' | 'run_python' | 'fs_write' | 'checkpoint' | 'restore';
const isOwn = (tool: Tool): boolean => tool === 'checkpoint' || tool === 'restore';

/** A task of session s1 calling `tool` (checkpoint and restore with the inputs the coordinator sends). */
function specOf(taskId: string, tool: Tool): TaskSpec {
  const base = taskSpec(taskId, 's1');
  switch (tool) {
    case 'echo':
      return base;
    case 'run_python':
      return { ...base, call: { tool, input: { code: 'print(1)', args: [], env_vars: {}, timeout_seconds: 0 } } };
    case 'fs_write':
      return { ...base, call: { tool, input: { path: 'out.txt', contents: taskId, create_dirs: false, encoding: 'utf-8' } } };
    case 'checkpoint':
      return { ...base, call: { tool, input: { checkpoint_id: `ck-${taskId}`, previous_manifest_sha256: 'b'.repeat(64) } } };
    case 'restore':
      return { ...base, call: { tool, input: { checkpoint_id: `ck-${taskId}`, manifest_sha256: 'c'.repeat(64) } } };
  }
}

async function readySession(overrides: SessionInputOverrides = {}, exec: FakeExecutorOptions = {}) {
  const s = sessionHarness(overrides, exec);
  await s.ready();
  expect(s.state()).toBe('READY');
  const submit = (taskId: string, tool: Tool) => s.session.send({ type: 'task.submit', spec: specOf(taskId, tool), atMs: s.clock.now() });
  const running = () => s.exec.active().map((r) => r.spec.taskId);
  return { ...s, submit, running };
}

/** The reports sent since the session became READY (INITIALIZING and the first READY left out). */
const reportsAfterReady = (s: Harness): SessionState[] => s.reportStates().slice(2);

describe('worker session: CHECKPOINTING', () => {
  beforeEach(() => {
    // sends to finished actors are expected here; keep the dev warnings out of the output
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  it.each(['checkpoint', 'restore'] as const)('runs a queued %s task as CHECKPOINTING, reported to the parent, and is READY again when it ends', async (tool) => {
    const s = await readySession();
    s.submit('c1', tool);
    expect(s.state()).toBe('CHECKPOINTING');
    expect(sessionStateOf(s.snapshot())).toBe('CHECKPOINTING');
    expect(s.snapshot().matches({ running: 'CHECKPOINTING' })).toBe(true);
    expect(s.reports().at(-1)).toMatchObject({ state: 'CHECKPOINTING', description: { sessionId: 's1' }, gone: false });
    // The executor runs it like any task, with the call the coordinator sent.
    expect(s.exec.active().map((r) => r.spec)).toEqual([specOf('c1', tool)]);
    s.exec.run('c1').finish(resultOutcome('SUCCESS'));
    expect(s.state()).toBe('READY');
    expect(reportsAfterReady(s)).toEqual(['CHECKPOINTING', 'READY']);
    expect(recordOf(s.snapshot().context.book, 'c1')).toMatchObject({ tool, state: 'succeeded' });
  });

  it('runs a client task as BUSY, not CHECKPOINTING', async () => {
    const s = await readySession();
    s.submit('t1', 'run_python');
    expect(s.state()).toBe('BUSY');
    expect(s.snapshot().matches({ running: 'BUSY' })).toBe(true);
    expect(s.reports().at(-1)!.state).toBe('BUSY');
  });

  it('keeps client tasks submitted during CHECKPOINTING queued, then runs them after it, BUSY, in arrival order', async () => {
    const s = await readySession();
    s.submit('c1', 'checkpoint');
    s.submit('t1', 'echo');
    s.submit('t2', 'fs_write');
    expect(s.state()).toBe('CHECKPOINTING');
    expect(s.running()).toEqual(['c1']);
    expect(s.snapshot().context.queue).toEqual(['t1', 't2']);
    s.exec.run('c1').finish();
    expect(s.state()).toBe('BUSY');
    expect(s.running()).toEqual(['t1']);
    s.exec.run('t1').finish();
    expect(s.state()).toBe('BUSY');
    expect(s.running()).toEqual(['t2']);
    s.exec.run('t2').finish();
    expect(s.state()).toBe('READY');
    expect(s.exec.runs.map((r) => r.spec.taskId)).toEqual(['c1', 't1', 't2']);
    expect(reportsAfterReady(s)).toEqual(['CHECKPOINTING', 'READY', 'BUSY', 'READY', 'BUSY', 'READY']);
  });

  it('makes a checkpoint queued behind a running client task wait for it: BUSY first, then CHECKPOINTING, then the task after it', async () => {
    const s = await readySession();
    s.submit('t1', 'echo');
    s.submit('c1', 'checkpoint');
    s.submit('t2', 'echo');
    expect(s.state()).toBe('BUSY');
    expect(s.running()).toEqual(['t1']);
    expect(s.snapshot().context.queue).toEqual(['c1', 't2']);
    s.exec.run('t1').finish();
    expect(s.state()).toBe('CHECKPOINTING');
    expect(s.running()).toEqual(['c1']);
    s.exec.run('c1').finish();
    expect(s.state()).toBe('BUSY');
    expect(s.running()).toEqual(['t2']);
    expect(reportsAfterReady(s)).toEqual(['BUSY', 'READY', 'CHECKPOINTING', 'READY', 'BUSY']);
  });

  it('runs a checkpoint and a restore queued back to back one after the other, CHECKPOINTING throughout', async () => {
    const s = await readySession();
    s.submit('c1', 'checkpoint');
    s.submit('r1', 'restore');
    s.exec.run('c1').finish();
    expect(s.state()).toBe('CHECKPOINTING');
    expect(s.running()).toEqual(['r1']);
    s.exec.run('r1').finish();
    expect(reportsAfterReady(s)).toEqual(['CHECKPOINTING', 'READY', 'CHECKPOINTING', 'READY']);
  });

  it('takes metadata during CHECKPOINTING, reporting CHECKPOINTING with the change, and saves it', async () => {
    const s = await readySession();
    s.submit('c1', 'checkpoint');
    const saves = s.saved().length;
    s.session.send({ type: 'metadata.put', requestId: 'm1', metadata: { k: 'v' }, merge: true, atMs: s.clock.now() });
    expect(s.state()).toBe('CHECKPOINTING');
    expect(s.reports().at(-1)).toMatchObject({ state: 'CHECKPOINTING', description: { metadata: { k: 'v' }, metadataVersion: 1 } });
    expect(s.saved()).toHaveLength(saves + 1);
    await flush();
    expect(s.sent('metadata.saved')).toEqual([{ type: 'metadata.saved', sessionId: 's1', requestIds: ['m1'], error: null }]);
  });

  it('starts a checkpoint submitted while INITIALIZING once the workspace is ready', async () => {
    const s = sessionHarness();
    s.session.send({ type: 'task.submit', spec: specOf('c1', 'checkpoint'), atMs: 0 });
    expect(s.state()).toBe('INITIALIZING');
    await s.ready();
    expect(s.state()).toBe('CHECKPOINTING');
    expect(s.reportStates()).toEqual(['INITIALIZING', 'READY', 'CHECKPOINTING']);
  });

  it('goes IDLE → READY → CHECKPOINTING when a checkpoint arrives while IDLE', async () => {
    const s = await readySession({ description: { idleTimeoutMs: 1_000 } });
    s.clock.increment(1_000);
    expect(s.state()).toBe('IDLE');
    s.submit('c1', 'checkpoint');
    expect(s.state()).toBe('CHECKPOINTING');
    expect(s.trail.slice(-3)).toEqual(['IDLE', 'READY', 'CHECKPOINTING']);
    expect(s.reportStates().slice(-3)).toEqual(['IDLE', 'READY', 'CHECKPOINTING']);
  });

  it('is READY again when the running checkpoint is cancelled, and runs the next task', async () => {
    const s = await readySession({}, { finishOnCancel: true });
    s.submit('c1', 'checkpoint');
    s.submit('t1', 'echo');
    s.session.send({ type: 'task.cancel', taskId: 'c1', reason: 'client', atMs: s.clock.now() });
    expect(s.exec.run('c1').cancels).toEqual(['client']);
    expect(recordOf(s.snapshot().context.book, 'c1')!.state).toBe('cancelled');
    expect(s.state()).toBe('BUSY');
    expect(s.running()).toEqual(['t1']);
  });

  it('stays usable after a checkpoint ends with a tool error', async () => {
    const s = await readySession();
    s.submit('c1', 'checkpoint');
    s.exec.run('c1').finish(failedOutcome('INTERNAL', 'the store is unreachable'));
    expect(s.state()).toBe('READY');
    expect(s.snapshot().context.failureReason).toBe('');
  });

  it('cancels the checkpoint and the tasks queued behind it when destroyed during CHECKPOINTING', async () => {
    const s = await readySession({}, { finishOnCancel: true });
    s.submit('c1', 'checkpoint');
    s.submit('t1', 'echo');
    s.session.send({ type: 'session.destroy', atMs: s.clock.now() });
    expect(s.state()).toBe('DRAINING');
    expect(s.exec.run('c1').cancels).toEqual(['session destroyed']);
    expect(s.outcomes.get('t1')).toEqual([expect.objectContaining({ status: 'CANCELLED' })]);
    s.release.last().resolve();
    await flush();
    expect(s.state()).toBe('TERMINATED');
  });

  describe('property: one task at a time, in arrival order; CHECKPOINTING exactly while a checkpoint or restore runs', () => {
    type Cmd =
      | { t: 'submit'; tool: Tool }
      | { t: 'finish'; how: 'SUCCESS' | 'FAILURE' | 'CANCELLED' | 'tool-error' }
      | { t: 'cancel'; pick: number }
      | { t: 'metadata' }
      | { t: 'tick'; ms: number };

    const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom<Tool>('echo', 'run_python', 'fs_write', 'checkpoint', 'restore').map((tool): Cmd => ({ t: 'submit', tool })) },
      { weight: 4, arbitrary: fc.constantFrom('SUCCESS', 'FAILURE', 'CANCELLED', 'tool-error' as const).map((how): Cmd => ({ t: 'finish', how })) },
      { weight: 2, arbitrary: fc.nat(19).map((pick): Cmd => ({ t: 'cancel', pick })) },
      { weight: 1, arbitrary: fc.constant<Cmd>({ t: 'metadata' }) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 5_000 }).map((ms): Cmd => ({ t: 'tick', ms })) },
    );

    it('holds for random sequences of submits, completions, cancels and metadata changes', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 40 }), async (cmds) => {
          vi.spyOn(console, 'warn').mockImplementation(() => {});
          // A cooperative executor: a cancel of the running task ends it at once.
          const s = await readySession({}, { finishOnCancel: true });

          // The model: the task running now, the queue behind it, what started, what was reported.
          const tools = new Map<string, Tool>();
          const submitted: string[] = [];
          const ended = new Set<string>();
          let current: string | null = null;
          let queue: string[] = [];
          const started: string[] = [];
          const reports: SessionState[] = [];
          const runningState = (): SessionState => (current === null ? 'READY' : isOwn(tools.get(current)!) ? 'CHECKPOINTING' : 'BUSY');
          const startNext = () => {
            const next = queue.shift();
            if (next === undefined) return;
            current = next;
            started.push(next);
            reports.push(runningState());
          };
          const endCurrent = () => {
            ended.add(current!);
            current = null;
            reports.push('READY');
            startNext();
          };

          for (const c of cmds) {
            switch (c.t) {
              case 'submit': {
                const id = `t${submitted.length + 1}`;
                tools.set(id, c.tool);
                submitted.push(id);
                s.submit(id, c.tool);
                queue.push(id);
                if (current === null) startNext();
                break;
              }
              case 'finish': {
                if (current === null) break;
                const outcome = c.how === 'tool-error' ? failedOutcome('LIMIT_EXCEEDED') : resultOutcome(c.how, { finishedAtMs: s.clock.now() });
                s.exec.run(current).finish(outcome);
                endCurrent();
                break;
              }
              case 'cancel': {
                const id = submitted[c.pick % Math.max(1, submitted.length)];
                if (id === undefined) break;
                s.session.send({ type: 'task.cancel', taskId: id, reason: 'client', atMs: s.clock.now() });
                if (id === current) endCurrent();
                else if (queue.includes(id)) {
                  queue = queue.filter((q) => q !== id);
                  ended.add(id);
                }
                break;
              }
              case 'metadata':
                s.session.send({ type: 'metadata.put', requestId: `m-${reports.length}`, metadata: { n: String(reports.length) }, merge: true, atMs: s.clock.now() });
                reports.push(runningState());
                break;
              case 'tick':
                s.clock.increment(c.ms);
                break;
            }

            // After every command the session matches the model.
            const running = s.exec.active().map((r) => r.spec.taskId);
            expect(running.length).toBeLessThanOrEqual(1);
            expect(running).toEqual(current === null ? [] : [current]);
            expect(s.snapshot().context.current).toBe(current);
            expect(s.snapshot().context.queue).toEqual(queue);
            expect(s.state()).toBe(runningState());
            expect(sessionStateOf(s.snapshot())).toBe(runningState());
            // Started in arrival order: each start came after every earlier one in the submit order.
            const startedAt = s.exec.runs.map((r) => submitted.indexOf(r.spec.taskId));
            expect(startedAt).toEqual([...startedAt].sort((a, b) => a - b));
            expect(s.exec.runs.map((r) => r.spec.taskId)).toEqual(started);
            // Every report, in order: CHECKPOINTING exactly while a checkpoint or restore runs, BUSY while a client task does.
            expect(reportsAfterReady(s)).toEqual(reports);
            // A task that ended is never started later.
            for (const id of ended) expect(queue).not.toContain(id);
          }
          expect(s.errors).toEqual([]);
          expect(s.snapshot().status).toBe('active');
        }),
        { numRuns: 200 },
      );
    });
  });
});
