/**
 * Random interleavings of task submits (new and repeated ids), cancels, executor outcomes and
 * crashes, drains, destroys, orphaning (a new registration) and time within one worker session
 * (the real session and task machines, effects faked). After every step:
 * - no task ends twice: at most one outcome update per task, at most one `task.ended` to the
 *   session, and the session's record of it agrees with the outcome its task emitted;
 * - never two tasks running at once, and tasks start in arrival order, each at most once;
 * - a FAILED or DRAINING session refuses a new task (FAILED_PRECONDITION, to its parent), and a
 *   refused task never runs nor ends.
 * Once the effects answer and time passes, every task the session took ended exactly once.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { recordOf, taskStateOf } from '../../machines/domain/tasks.js';
import { finishKinds, flush, quietStoppedActorWarnings, sessionHarness, taskSpec, type FinishKind } from '../helpers/model-system.js';

type Cmd =
  | { t: 'submit' }
  | { t: 'resubmit'; pick: number }
  | { t: 'cancel'; pick: number }
  | { t: 'finish'; kind: FinishKind }
  | { t: 'crash' }
  | { t: 'drain' }
  | { t: 'destroy' }
  | { t: 'orphan' }
  | { t: 'prepare'; ok: boolean }
  | { t: 'release'; ok: boolean }
  | { t: 'tick'; ms: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 10, arbitrary: fc.constant<Cmd>({ t: 'submit' }) },
  { weight: 1, arbitrary: fc.nat(19).map((pick): Cmd => ({ t: 'resubmit', pick })) },
  { weight: 3, arbitrary: fc.nat(19).map((pick): Cmd => ({ t: 'cancel', pick })) },
  { weight: 8, arbitrary: fc.constantFrom(...finishKinds).map((kind): Cmd => ({ t: 'finish', kind })) },
  { weight: 1, arbitrary: fc.constant<Cmd>({ t: 'crash' }) },
  { weight: 1, arbitrary: fc.constant<Cmd>({ t: 'drain' }) },
  { weight: 1, arbitrary: fc.constant<Cmd>({ t: 'destroy' }) },
  { weight: 2, arbitrary: fc.constant<Cmd>({ t: 'orphan' }) },
  { weight: 2, arbitrary: fc.boolean().map((ok): Cmd => ({ t: 'prepare', ok: ok })) },
  { weight: 2, arbitrary: fc.boolean().map((ok): Cmd => ({ t: 'release', ok })) },
  { weight: 2, arbitrary: fc.constantFrom(1_000, 5_000, 10_000).map((ms): Cmd => ({ t: 'tick', ms })) },
);

interface Setup {
  /** The executor answers a cancel at once (else the task ends at the cancel grace). */
  cooperative: boolean;
  idle: boolean;
}
const setupArb = fc.record({ cooperative: fc.boolean(), idle: fc.boolean() });

async function run(s: Setup, cmds: Cmd[]): Promise<void> {
  const h = sessionHarness({ idleTimeoutMs: s.idle ? 2_000 : 0, drainTimeoutMs: 5_000, cooperativeCancel: s.cooperative });
  await flush();
  const submitted: string[] = [];
  /** Fresh tasks the session was sent while it could take none: they must be refused. */
  const mustRefuse = new Set<string>();
  /** Fresh tasks sent to a session that had ended (its actor is gone; the worker answers for it). */
  const dropped = new Set<string>();

  const check = (where: string) => {
    for (const [id, outs] of h.outcomes) expect(outs.length, `task ${id} has ${outs.length} outcomes ${where}`).toBe(1);
    const endedCount = new Map<string, number>();
    for (const e of h.ended) endedCount.set(e.taskId, (endedCount.get(e.taskId) ?? 0) + 1);
    for (const [id, n] of endedCount) expect(n, `task ${id} ended ${n} times ${where}`).toBe(1);
    // never two at once, arrival order, each at most once
    expect(h.exec.active().length, `tasks running at once ${where}`).toBeLessThanOrEqual(1);
    const order = h.exec.runs.map((r) => submitted.indexOf(r.spec.taskId));
    expect(order, `tasks started out of arrival order ${where}`).toEqual([...order].sort((a, b) => a - b));
    expect(new Set(order).size, `a task ran twice ${where}`).toBe(order.length);
    // refused tasks: refused, never run, never ended
    const refused = new Set(h.refused());
    for (const id of mustRefuse) {
      expect(refused.has(id), `task ${id} sent to a FAILED or DRAINING session was not refused ${where}`).toBe(true);
      expect(h.outcomes.has(id) || h.exec.runs.some((r) => r.spec.taskId === id), `refused task ${id} ran or ended ${where}`).toBe(false);
    }
    for (const e of h.received.filter((x) => x.type === 'task.refused')) expect((e as unknown as { error: { code: string } }).error.code).toBe('FAILED_PRECONDITION');
    // the session's record agrees with what the task emitted
    if (h.snapshot().status === 'active') {
      const book = h.snapshot().context.book;
      for (const [id, [outcome]] of h.outcomes) {
        const rec = recordOf(book, id);
        if (rec) expect(rec.state, `the record of ${id} ${where}`).toBe(taskStateOf(outcome!));
      }
    }
    expect(h.errors, where).toEqual([]);
  };

  for (const [i, c] of cmds.entries()) {
    const before = h.state();
    switch (c.t) {
      case 'submit': {
        const id = `t${submitted.length}`;
        submitted.push(id);
        if (before === 'FAILED' || before === 'DRAINING') mustRefuse.add(id);
        if (before === 'TERMINATED' || before === 'CRASHED') dropped.add(id);
        h.send({ type: 'task.submit', spec: taskSpec(id, 's1'), atMs: h.clock.now() });
        break;
      }
      case 'resubmit':
        if (submitted.length) h.send({ type: 'task.submit', spec: taskSpec(submitted[c.pick % submitted.length]!, 's1'), atMs: h.clock.now() });
        break;
      case 'cancel':
        if (submitted.length) h.send({ type: 'task.cancel', taskId: submitted[c.pick % submitted.length]!, reason: 'client', atMs: h.clock.now() });
        break;
      case 'finish':
        h.exec.active()[0]?.finish(c.kind);
        break;
      case 'crash':
        h.exec.active()[0]?.crash('the runner died');
        break;
      case 'drain':
        h.send({ type: 'session.drain', atMs: h.clock.now() });
        break;
      case 'destroy':
        h.send({ type: 'session.destroy', atMs: h.clock.now() });
        break;
      case 'orphan':
        h.send({ type: 'tasks.orphan', reason: 'a new registration', atMs: h.clock.now() });
        break;
      case 'prepare':
        h.prepared(c.ok);
        break;
      case 'release':
        h.released(c.ok);
        break;
      case 'tick':
        h.clock.increment(c.ms);
        break;
    }
    await flush();
    check(`after command ${i} ${JSON.stringify(c)} (state ${before} → ${h.state()}) of ${JSON.stringify(cmds)} ${JSON.stringify(s)}`);
  }

  // The effects answer, the tools finish, time passes: nothing waits forever.
  const busy = () => {
    const s = h.snapshot();
    return h.prepare.pending().length > 0 || h.release.pending().length > 0 || h.exec.active().length > 0 || (s.status === 'active' && (s.context.current !== null || s.context.queue.length > 0));
  };
  for (let k = 0; k < 200 && busy(); k++) {
    h.prepared(true);
    for (const r of h.exec.active()) r.finish('SUCCESS');
    h.released(true);
    h.clock.increment(11_000);
    await flush();
  }
  const where = `after settling ${JSON.stringify(cmds)} ${JSON.stringify(s)}`;
  check(where);
  const refused = new Set(h.refused());
  for (const id of submitted) {
    if (refused.has(id) || dropped.has(id)) continue;
    expect(h.outcomes.get(id)?.length ?? 0, `task ${id} never ended ${where}`).toBe(1);
  }
  if (h.snapshot().status === 'active') {
    const ctx = h.snapshot().context;
    expect({ current: ctx.current, queue: ctx.queue }, where).toEqual({ current: null, queue: [] });
  }
  expect(h.exec.active(), where).toEqual([]);
  h.parent.stop();
}

describe('task interleavings within one worker session (property)', () => {
  quietStoppedActorWarnings();

  it('ends every task exactly once, runs one at a time in arrival order, and refuses tasks while FAILED or DRAINING', async () => {
    await fc.assert(
      fc.asyncProperty(setupArb, fc.array(cmd, { minLength: 1, maxLength: 50 }), async (s, cmds) => {
        await run(s, cmds);
      }),
      { numRuns: 300, ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}) },
    );
  });
});
