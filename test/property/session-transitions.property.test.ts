/**
 * Random event sequences against the session machine: every top-level state change it makes
 * is one of the documented transitions (each taken at least once across the run), and a
 * TERMINATED session never changes again.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ErrorCode } from '../../src/domain/errors.js';
import type { TaskStatus } from '../../src/domain/tasks.js';
import { failedOutcome, flush, resultOutcome, sessionHarness, taskSpec } from '../helpers/machine-fakes.js';

/** [from, to, why]: the deployment guide's statechart first, then our extensions. */
const TRANSITIONS: readonly (readonly [string, string, string])[] = [
  // the guide
  ['INITIALIZING', 'READY', 'venv created'],
  ['READY', 'BUSY', 'ExecuteTask'],
  ['BUSY', 'READY', 'task complete, including user code that exits non-zero'],
  ['READY', 'IDLE', 'idle timeout'],
  ['IDLE', 'READY', 'new task'],
  ['BUSY', 'FAILED', 'task error (machinery broke) or worker lost'],
  ['READY', 'DRAINING', 'DestroySession: READY → [*] passes through DRAINING'],
  ['FAILED', 'DRAINING', 'cleanup: FAILED → [*] passes through DRAINING'],
  // extensions
  ['INITIALIZING', 'FAILED', 'workspace could not be prepared, or worker lost'],
  ['INITIALIZING', 'DRAINING', 'destroy or drain before ready'],
  ['IDLE', 'DRAINING', 'destroy or drain while idle'],
  ['BUSY', 'DRAINING', 'forced destroy or drain while busy'],
  ['DRAINING', 'TERMINATED', 'workspace released'],
  ['READY', 'FAILED', 'worker lost'],
  ['IDLE', 'FAILED', 'worker lost'],
];
const allowed = new Set(TRANSITIONS.map(([a, b]) => `${a}->${b}`));

const IDLE_MS = 1_000;
const DRAIN_MS = 5_000;

type Finish = TaskStatus | Extract<ErrorCode, 'INTERNAL' | 'WORKER_LOST' | 'LIMIT_EXCEEDED'>;
type Cmd =
  | { t: 'submit' }
  | { t: 'finish'; kind: Finish }
  | { t: 'crash' }
  | { t: 'cancel'; pick: number }
  | { t: 'tick'; ms: number }
  | { t: 'destroy'; force: boolean }
  | { t: 'drain' }
  | { t: 'lost' }
  | { t: 'prepare'; ok: boolean }
  | { t: 'release'; ok: boolean };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.constant<Cmd>({ t: 'submit' }) },
  { weight: 5, arbitrary: fc.constantFrom<Finish>('SUCCESS', 'FAILURE', 'TIMEOUT', 'CANCELLED', 'INTERNAL', 'WORKER_LOST', 'LIMIT_EXCEEDED').map((kind): Cmd => ({ t: 'finish', kind })) },
  { weight: 1, arbitrary: fc.constant<Cmd>({ t: 'crash' }) },
  { weight: 2, arbitrary: fc.nat(20).map((pick): Cmd => ({ t: 'cancel', pick })) },
  { weight: 3, arbitrary: fc.constantFrom(IDLE_MS, DRAIN_MS, 10_000).map((ms): Cmd => ({ t: 'tick', ms })) },
  { weight: 2, arbitrary: fc.boolean().map((force): Cmd => ({ t: 'destroy', force })) },
  { weight: 1, arbitrary: fc.constant<Cmd>({ t: 'drain' }) },
  { weight: 1, arbitrary: fc.constant<Cmd>({ t: 'lost' }) },
  { weight: 3, arbitrary: fc.boolean().chain((ok) => fc.constant<Cmd>({ t: 'prepare', ok })) },
  { weight: 3, arbitrary: fc.boolean().map((ok): Cmd => ({ t: 'release', ok })) },
);

const seen = new Set<string>();

async function run(cmds: Cmd[]): Promise<void> {
  const h = sessionHarness({ idleTimeoutMs: IDLE_MS, drainTimeoutMs: DRAIN_MS });
  const submitted: string[] = [];
  let terminatedAt: { trail: number; snapshot: unknown } | undefined;

  for (const c of cmds) {
    switch (c.t) {
      case 'submit': {
        const id = `t${submitted.length}`;
        submitted.push(id);
        h.session.send({ type: 'task.submit', spec: taskSpec(id) });
        break;
      }
      case 'finish': {
        const r = h.exec.active()[0];
        if (r) r.finish(c.kind === 'INTERNAL' || c.kind === 'WORKER_LOST' || c.kind === 'LIMIT_EXCEEDED' ? failedOutcome(c.kind) : resultOutcome(c.kind));
        break;
      }
      case 'crash':
        h.exec.active()[0]?.crash('runner died');
        break;
      case 'cancel':
        if (submitted.length) h.session.send({ type: 'task.cancel', taskId: submitted[c.pick % submitted.length]!, reason: 'client' });
        break;
      case 'tick':
        h.clock.increment(c.ms);
        break;
      case 'destroy':
        h.session.send({ type: 'session.destroy', force: c.force, requestId: 'r' });
        break;
      case 'drain':
        h.session.send({ type: 'session.drain' });
        break;
      case 'lost':
        h.session.send({ type: 'worker.lost', reason: 'gone' });
        break;
      case 'prepare':
        for (const p of h.prepare.pending()) (c.ok ? p.resolve({ workspacePath: '/ws' }) : p.reject(new Error('no venv')));
        break;
      case 'release':
        for (const p of h.release.pending()) (c.ok ? p.resolve() : p.reject(new Error('busy')));
        break;
    }
    await flush();

    // every state change is documented
    for (let i = 1; i < h.trail.length; i++) {
      const edge = `${h.trail[i - 1]}->${h.trail[i]}`;
      expect(allowed, `undocumented transition ${edge} after ${JSON.stringify(c)}`).toContain(edge);
      seen.add(edge);
    }
    // one live process per session, one outcome per task
    expect(h.exec.active().length).toBeLessThanOrEqual(1);
    for (const [id, outs] of h.outcomes) expect(outs.length, `task ${id} ended twice`).toBe(1);
    expect(h.errors).toEqual([]);
    // final is final
    if (terminatedAt) {
      expect(h.trail.length).toBe(terminatedAt.trail);
      expect(h.session.getSnapshot()).toBe(terminatedAt.snapshot);
    } else if (h.session.getSnapshot().status === 'done') {
      expect(h.trail.at(-1)).toBe('TERMINATED');
      expect(h.sent('session.terminated')).toHaveLength(1);
      expect(h.exec.active()).toHaveLength(0);
      terminatedAt = { trail: h.trail.length, snapshot: h.session.getSnapshot() };
    }
  }
  if (terminatedAt) expect(h.sent('session.terminated')).toHaveLength(1);

  // nothing waits forever: once the effects answer, every task that was not rejected ends
  for (let i = 0; i < 10; i++) {
    for (const p of h.prepare.pending()) p.resolve({ workspacePath: '/ws' });
    for (const r of h.exec.active()) r.finish(resultOutcome());
    h.clock.increment(10_000);
    await flush();
  }
  for (const id of submitted) {
    const ended = (h.outcomes.get(id)?.length ?? 0) + (h.rejected.includes(id) ? 1 : 0);
    if (h.snapshot().context.tasks[id] || h.outcomes.has(id)) expect(ended, `task ${id}`).toBe(1);
  }
}

const c = (x: Cmd) => x;
/** Sequences that take the rarer edges, so coverage never hangs on luck. */
const examples: [Cmd[]][] = [
  [[c({ t: 'submit' }), c({ t: 'prepare', ok: true }), c({ t: 'finish', kind: 'SUCCESS' }), c({ t: 'tick', ms: IDLE_MS }), c({ t: 'submit' }), c({ t: 'finish', kind: 'INTERNAL' }), c({ t: 'destroy', force: false }), c({ t: 'release', ok: true })]],
  [[c({ t: 'prepare', ok: false }), c({ t: 'drain' }), c({ t: 'release', ok: false })]],
  [[c({ t: 'destroy', force: false }), c({ t: 'release', ok: true })]],
  [[c({ t: 'prepare', ok: true }), c({ t: 'tick', ms: IDLE_MS }), c({ t: 'lost' })]],
  [[c({ t: 'prepare', ok: true }), c({ t: 'tick', ms: IDLE_MS }), c({ t: 'destroy', force: false })]],
  [[c({ t: 'prepare', ok: true }), c({ t: 'lost' })]],
  [[c({ t: 'prepare', ok: true }), c({ t: 'submit' }), c({ t: 'destroy', force: true }), c({ t: 'tick', ms: 10_000 }), c({ t: 'release', ok: true })]],
];

describe('session transitions (property)', () => {
  beforeEach(() => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  it('takes only documented transitions, never changes once TERMINATED, and leaves no task waiting', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 40 }), async (cmds) => {
        await run(cmds);
      }),
      { numRuns: 400, examples },
    );
  });

  it('takes every documented transition at least once across the run above', () => {
    expect([...seen].sort()).toEqual([...allowed].sort());
  });
});
