/**
 * Random interleavings of submits across sessions, cancels, executor outcomes and crashes,
 * destroys and worker losses against the coordinator machine (with its real session, task
 * and worker-connection children; only the effects are faked). Invariants: every task ends
 * exactly once, a session never runs two tasks at once, and nothing stays unfinished after
 * its worker is lost.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, SimulatedClock, type AnyActorRef, type EventObject, type InspectionEvent } from 'xstate';
import { coordinatorMachine, type CoordinatorEmitted } from '../../machines/coordinator.machine.js';
import { sessionChildId, sessionMachine } from '../../machines/session.machine.js';
import { taskMachine } from '../../machines/task.machine.js';
import { workerConnectionMachine, type StreamHandle } from '../../machines/worker-connection.machine.js';
import type { SessionConfig } from '../../src/domain/sessions.js';
import { collectEmitted, controlledPromise, failedOutcome, fakeExecutor, flush, idleCallback, inspectAll, resultOutcome, taskSpec, taskUpdateCollector } from '../helpers/machine-fakes.js';

const config: SessionConfig = { env_vars: {}, allow_network: false, language: 'python' };
const stream: StreamHandle = { kind: 'stream-handle' };
const WORKERS = ['w0', 'w1'] as const;
const SESSIONS = ['s0', 's1', 's2', 's3'] as const;

type Cmd =
  | { t: 'submit'; s: number }
  | { t: 'cancel'; pick: number }
  | { t: 'finish'; pick: number; kind: 'SUCCESS' | 'FAILURE' | 'CANCELLED' | 'INTERNAL' | 'LIMIT_EXCEEDED' }
  | { t: 'crash'; pick: number }
  | { t: 'prepare'; s: number; ok: boolean }
  | { t: 'destroy'; s: number; force: boolean }
  | { t: 'release' }
  | { t: 'tick' }
  | { t: 'lose'; w: number; how: 'deregister' | 'stream' | 'reregister' | 'heartbeats' };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 8, arbitrary: fc.nat(SESSIONS.length - 1).map((s): Cmd => ({ t: 'submit', s })) },
  { weight: 2, arbitrary: fc.nat(50).map((pick): Cmd => ({ t: 'cancel', pick })) },
  {
    weight: 6,
    arbitrary: fc
      .tuple(fc.nat(10), fc.constantFrom('SUCCESS', 'FAILURE', 'CANCELLED', 'INTERNAL', 'LIMIT_EXCEEDED') as fc.Arbitrary<Extract<Cmd, { t: 'finish' }>['kind']>)
      .map(([pick, kind]): Cmd => ({ t: 'finish', pick, kind })),
  },
  { weight: 1, arbitrary: fc.nat(10).map((pick): Cmd => ({ t: 'crash', pick })) },
  { weight: 3, arbitrary: fc.tuple(fc.nat(SESSIONS.length - 1), fc.boolean()).map(([s, ok]): Cmd => ({ t: 'prepare', s, ok: ok || s % 2 === 0 })) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(SESSIONS.length - 1), fc.boolean()).map(([s, force]): Cmd => ({ t: 'destroy', s, force })) },
  { weight: 2, arbitrary: fc.constant<Cmd>({ t: 'release' }) },
  { weight: 1, arbitrary: fc.constant<Cmd>({ t: 'tick' }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.nat(WORKERS.length - 1), fc.constantFrom('deregister', 'stream', 'reregister', 'heartbeats') as fc.Arbitrary<Extract<Cmd, { t: 'lose' }>['how']>)
      .map(([w, how]): Cmd => ({ t: 'lose', w, how })),
  },
);

function harness() {
  const clock = new SimulatedClock();
  /** session id → ids of executors running now: never more than one. */
  const runningBySession = new Map<string, Set<string>>();
  let overlap = '';
  const exec = fakeExecutor({
    onStart: (run) => {
      const set = runningBySession.get(run.spec.sessionId) ?? new Set<string>();
      for (const other of set) if (!exec.run(other).stopped) overlap = `${run.spec.taskId} started while ${other} ran in ${run.spec.sessionId}`;
      set.add(run.spec.taskId);
      runningBySession.set(run.spec.sessionId, set);
    },
  });
  const prepare = controlledPromise<{ workspacePath: string }, { sessionId: string; workerId: string; config: SessionConfig }>();
  const release = controlledPromise<void, { sessionId: string; workerId: string; remove: boolean; force: boolean }>();
  const streams = idleCallback<{ workerId: string; registrationId: string; stream: StreamHandle }>();
  const machine = coordinatorMachine.provide({
    actors: {
      session: sessionMachine.provide({
        actors: { task: taskMachine.provide({ actors: { executor: exec.logic } }), prepareWorkspace: prepare.logic, releaseWorkspace: release.logic },
      }),
      workerConnection: workerConnectionMachine.provide({ actors: { workerStream: streams.logic } }),
    },
  });
  const updates = taskUpdateCollector();
  const rejected = new Set<string>();
  const watchRejections = (ev: InspectionEvent) => {
    if (ev.type === '@xstate.actor') (ev.actorRef as AnyActorRef).on('task.rejected', (e: EventObject) => rejected.add((e as unknown as { taskId: string }).taskId));
  };
  const actor = createActor(machine, { input: { idleTimeoutMs: 0, heartbeatTimeoutMs: 1_000_000, drainTimeoutMs: 5_000 }, clock, inspect: inspectAll(updates.inspect, watchRejections) });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  const emitted = collectEmitted(actor) as CoordinatorEmitted[];
  actor.start();
  return { clock, exec, prepare, release, streams, actor, errors, emitted, outcomes: updates.outcomes, rejected, overlap: () => overlap };
}

async function run(cmds: Cmd[]): Promise<void> {
  const h = harness();
  const reg = new Map<string, number>();
  const online = (w: string) => {
    const n = (reg.get(w) ?? 0) + 1;
    reg.set(w, n);
    h.actor.send({ type: 'worker.register', workerId: w, registrationId: `reg-${w.slice(1)}${n}`, maxSessions: 4, isolation: 'none', hostname: w });
    h.actor.send({ type: 'stream.opened', workerId: w, registrationId: `reg-${w.slice(1)}${n}`, stream });
  };
  for (const w of WORKERS) online(w);
  for (const s of SESSIONS) h.actor.send({ type: 'session.create', sessionId: s, workerId: '', workspaceId: s, config, metadata: {} });
  const placedOn = new Map(h.emitted.filter((e) => e.type === 'session.placed').map((e) => [(e as { sessionId: string }).sessionId, (e as { workerId: string }).workerId]));
  expect(placedOn.size).toBe(SESSIONS.length);

  const sessionRef = (s: string): AnyActorRef | undefined => {
    const ref = h.actor.system.get(sessionChildId(s));
    return ref && ref.getSnapshot().status === 'active' ? ref : undefined;
  };
  /** Tasks the sessions accepted (not rejected), with their session. */
  const accepted = new Map<string, string>();
  let n = 0;

  const check = (after: Cmd | string) => {
    const where = JSON.stringify(after);
    expect(h.errors, where).toEqual([]);
    expect(h.overlap(), where).toBe('');
    for (const [id, outs] of h.outcomes) expect(outs.length, `task ${id} ended ${outs.length} times after ${where}`).toBe(1);
    for (const id of h.rejected) expect(h.outcomes.has(id), `rejected task ${id} also ran`).toBe(false);
    const perSession = new Map<string, number>();
    for (const r of h.exec.active()) perSession.set(r.spec.sessionId, (perSession.get(r.spec.sessionId) ?? 0) + 1);
    for (const [s, count] of perSession) expect(count, `${s} runs ${count} tasks at once after ${where}`).toBe(1);
  };

  for (const c of cmds) {
    switch (c.t) {
      case 'submit': {
        const s = SESSIONS[c.s]!;
        const ref = sessionRef(s);
        if (!ref) break;
        const id = `t${n++}`;
        ref.send({ type: 'task.submit', spec: taskSpec(id, s) });
        if (!h.rejected.has(id)) accepted.set(id, s);
        break;
      }
      case 'cancel': {
        const ids = [...accepted.keys()];
        if (!ids.length) break;
        const id = ids[c.pick % ids.length]!;
        sessionRef(accepted.get(id)!)?.send({ type: 'task.cancel', taskId: id, reason: 'client' });
        break;
      }
      case 'finish': {
        const active = h.exec.active();
        const r = active[c.pick % Math.max(1, active.length)];
        if (r) r.finish(c.kind === 'INTERNAL' || c.kind === 'LIMIT_EXCEEDED' ? failedOutcome(c.kind) : resultOutcome(c.kind));
        break;
      }
      case 'crash': {
        const active = h.exec.active();
        active[c.pick % Math.max(1, active.length)]?.crash('runner died');
        break;
      }
      case 'prepare': {
        const p = h.prepare.pending().find((x) => x.input.sessionId === SESSIONS[c.s]);
        if (p) (c.ok ? p.resolve({ workspacePath: `/ws/${p.input.sessionId}` }) : p.reject(new Error('no venv')));
        break;
      }
      case 'destroy':
        sessionRef(SESSIONS[c.s]!)?.send({ type: 'session.destroy', force: c.force, requestId: '' });
        break;
      case 'release':
        for (const p of h.release.pending()) p.resolve();
        break;
      case 'tick':
        h.clock.increment(10_000);
        break;
      case 'lose': {
        const w = WORKERS[c.w]!;
        const slot = h.actor.getSnapshot().context.workers[w];
        if (!slot) break;
        const victims = Object.entries(h.actor.getSnapshot().context.placements)
          .filter(([, wid]) => wid === w)
          .map(([s]) => s);
        if (c.how === 'deregister') h.actor.send({ type: 'worker.deregister', workerId: w, registrationId: slot.registrationId, reason: 'bye' });
        if (c.how === 'stream') h.streams.active().find((i) => i.input.workerId === w)?.sendBack({ type: 'stream.closed', reason: 'EOF' });
        if (c.how === 'reregister') online(w);
        if (c.how === 'heartbeats') {
          // every other worker keeps beating; this one falls silent
          for (const [other, s] of Object.entries(h.actor.getSnapshot().context.workers)) {
            if (other !== w) h.actor.send({ type: 'worker.heartbeat', workerId: other, registrationId: s.registrationId });
          }
          h.clock.increment(1_000_000);
          for (const other of WORKERS) if (other !== w && !h.actor.getSnapshot().context.workers[other]) online(other);
        }
        await flush();
        // nothing of the lost worker's sessions stays unfinished
        for (const [id, s] of accepted) {
          if (victims.includes(s)) expect(h.outcomes.get(id)?.length ?? 0, `task ${id} of ${s} unfinished after losing ${w} (${c.how})`).toBe(1);
        }
        for (const r of h.exec.active()) expect(victims).not.toContain(r.spec.sessionId);
        break;
      }
    }
    await flush();
    check(c);
  }

  // settle: let everything still pending finish
  for (let i = 0; i < 20; i++) {
    for (const p of h.prepare.pending()) p.resolve({ workspacePath: '/ws' });
    for (const r of h.exec.active()) r.finish(resultOutcome());
    for (const p of h.release.pending()) p.resolve();
    h.clock.increment(10_000);
    await flush();
  }
  check('settle');
  for (const [id] of accepted) expect(h.outcomes.get(id)?.length ?? 0, `task ${id} never ended`).toBe(1);
  expect(h.exec.active()).toEqual([]);
}

describe('task interleavings across sessions (property)', () => {
  beforeEach(() => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  it('ends every task exactly once, runs one task at a time per session, and leaves nothing unfinished after a worker loss', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 60 }), async (cmds) => {
        await run(cmds);
      }),
      { numRuns: 300 },
    );
  });
});
