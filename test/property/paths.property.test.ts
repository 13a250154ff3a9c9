/**
 * `xstate/graph` over two statecharts, with states told apart by their value only (context would
 * make the graph infinite):
 * - the worker's session machine: every state of the statechart is reachable; every simple path
 *   takes only documented transitions; TERMINATED is reachable from every state (a session can
 *   always be shut down); each shortest path, replayed on a live session with faked effects,
 *   really ends in its state.
 * - the coordinator's session proxy: every state is reachable (ending needs a task still
 *   followed); the two final states are the only done ones; a final state is reachable from
 *   every state; the shortest paths replay on a live proxy.
 * Events are offered only where they can happen (the done event of an invocation only while it
 * runs), and task ids are fresh so spawned ids never collide.
 */
import { describe, expect, it } from 'vitest';
import { createActor, createEmptyActor, fromCallback, fromPromise, setup, SimulatedClock, type AnyActorLogic, type AnyActorRef, type AnyActorScope, type AnyEventObject } from 'xstate';
import { getShortestPaths, getSimplePaths } from 'xstate/graph';
import { sessionProxyMachine, type SessionProxyInput, type SessionProxySnapshot } from '../../machines/coordinator/session-proxy.machine.js';
import type { SessionReport, SessionState } from '../../machines/domain/sessions.js';
import type { TaskOutcomeSummary } from '../../machines/domain/tasks.js';
import { sessionMachine, type SessionSnapshot } from '../../machines/worker/session.machine.js';
import { BASE_MS, description, flush, outcomeOf, quietStoppedActorWarnings, sessionHarness, taskSpec, topState, type FinishKind } from '../helpers/model-system.js';

const IDLE_MS = 1_000;
const DRAIN_MS = 5_000;
const LIMIT = 5_000;

// ------------------------------------------------------------------ the worker's session

const SESSION_STATES = ['INITIALIZING', 'READY', 'BUSY', 'IDLE', 'FAILED', 'DRAINING', 'TERMINATED'] as const;
const SESSION_EDGES = new Set([
  'INITIALIZING->READY', 'INITIALIZING->FAILED', 'INITIALIZING->DRAINING',
  'READY->BUSY', 'READY->IDLE', 'READY->DRAINING',
  'IDLE->READY', 'IDLE->DRAINING',
  'BUSY->READY', 'BUSY->FAILED', 'BUSY->DRAINING',
  'FAILED->DRAINING',
  'DRAINING->TERMINATED',
]);

// The machine's own events for its invocations and timers.
const PREPARED = 'xstate.done.actor.0.session.INITIALIZING';
const PREPARE_FAILED = 'xstate.error.actor.0.session.INITIALIZING';
const RELEASED = 'xstate.done.actor.0.session.DRAINING.releasing';
const RELEASE_FAILED = 'xstate.error.actor.0.session.DRAINING.releasing';
const IDLE_TIMEOUT = 'xstate.after.idleTimeout.session.READY';
const DRAIN_TIMEOUT = 'xstate.after.drainTimeout.session.DRAINING.waiting';

const sessionInput = { description: description('s1', { idleTimeoutMs: IDLE_MS }), workerId: 'w1', drainTimeoutMs: DRAIN_MS, origin: 'create' as const };

const summary = (kind: FinishKind): TaskOutcomeSummary => {
  const o = outcomeOf(kind, { workerId: 'w1', startedAtMs: BASE_MS, finishedAtMs: BASE_MS, enqueuedAtMs: BASE_MS });
  return o.type === 'error' ? o : { type: 'result', status: o.status, metadata: o.metadata };
};

function sessionEvents() {
  let n = 0;
  return (s: SessionSnapshot): AnyEventObject[] => {
    const ctx = s.context;
    const live = [...(ctx.current ? [ctx.current] : []), ...ctx.queue];
    return [
      ...(s.matches('INITIALIZING')
        ? [{ type: PREPARED, output: { workspacePath: '/ws/s1', description: ctx.description, atMs: BASE_MS } }, { type: PREPARE_FAILED, error: 'no venv could be made' }]
        : []),
      ...(s.matches('READY') ? [{ type: IDLE_TIMEOUT }] : []),
      ...(s.matches({ DRAINING: 'waiting' }) ? [{ type: DRAIN_TIMEOUT }] : []),
      ...(s.matches({ DRAINING: 'releasing' }) ? [{ type: RELEASED }, { type: RELEASE_FAILED, error: 'busy' }] : []),
      { type: 'task.submit', spec: taskSpec(`g${n++}`, 's1'), atMs: BASE_MS },
      // A task ends: the running one as the tool said (or as broken machinery), a queued one cancelled.
      ...(ctx.current
        ? [
            { type: 'task.ended', taskId: ctx.current, outcome: summary('SUCCESS'), atMs: BASE_MS },
            { type: 'task.ended', taskId: ctx.current, outcome: summary('INTERNAL'), atMs: BASE_MS },
          ]
        : []),
      ...live.filter((id) => id !== ctx.current).slice(0, 1).map((id) => ({ type: 'task.ended', taskId: id, outcome: summary('CANCELLED'), atMs: BASE_MS })),
      { type: 'session.destroy', atMs: BASE_MS },
      { type: 'session.drain', atMs: BASE_MS },
      { type: 'tasks.orphan', reason: 're-registered', atMs: BASE_MS },
      { type: 'metadata.put', requestId: `m${ctx.description.metadataVersion + 1}`, metadata: { k: 'v' }, merge: true, atMs: BASE_MS },
    ];
  };
}

const serializeState = (s: { value: unknown }) => JSON.stringify(s.value);

/**
 * The graph resolves transitions with a mock actor scope whose `self` has no parent and whose
 * system holds no actor, so any `sendParent` would fail the snapshot and a proxy could admit no
 * task (it needs its worker's connection). This gives `self` a parent and the system a worker
 * connection; the mock scope runs no action, so nothing is ever sent to either.
 */
function withParent<L extends AnyActorLogic>(logic: L): L {
  const connection = createEmptyActor();
  const scoped = (scope: AnyActorScope): AnyActorScope => ({
    ...scope,
    self: Object.assign(Object.create(scope.self) as AnyActorRef, { _parent: scope.self }),
    system: Object.assign(Object.create(scope.system) as AnyActorScope['system'], { get: (id: string) => (id.startsWith('connection:') ? connection : scope.system.get(id)) }),
  });
  const wrapped = Object.create(logic) as L;
  wrapped.transition = ((snapshot: unknown, event: AnyEventObject, scope: AnyActorScope) => logic.transition(snapshot as never, event, scoped(scope))) as L['transition'];
  wrapped.getInitialSnapshot = ((scope: AnyActorScope, input: unknown) => logic.getInitialSnapshot(scoped(scope), input as never)) as L['getInitialSnapshot'];
  return wrapped;
}

/** The session with inert effects: the graph only resolves transitions, it runs no actor. */
const graphSession = withParent(
  sessionMachine.provide({
    actors: {
      prepareWorkspace: fromPromise(async () => ({ workspacePath: '/ws/s1', description: description('s1'), atMs: BASE_MS })),
      releaseWorkspace: fromPromise<void, { sessionId: string; remove: boolean }>(async () => {}),
      persist: fromCallback(() => () => {}),
    },
  }),
);

describe('paths through the worker session statechart', () => {
  quietStoppedActorWarnings();

  const shortest = getShortestPaths(graphSession, { input: sessionInput, events: sessionEvents() as never, serializeState, limit: LIMIT });

  it('reaches every state of the statechart, DRAINING in both its steps, and only TERMINATED is done', () => {
    expect([...new Set(shortest.map((p) => topState(p.state)))].sort()).toEqual([...SESSION_STATES].sort());
    const values = new Set(shortest.map((p) => serializeState(p.state)));
    expect(values).toContain(JSON.stringify({ DRAINING: 'waiting' }));
    expect(values).toContain(JSON.stringify({ DRAINING: 'releasing' }));
    for (const p of shortest) expect(p.state.status === 'done', serializeState(p.state)).toBe(p.state.value === 'TERMINATED');
  });

  it('takes only documented transitions on every simple path to TERMINATED', () => {
    const simple = getSimplePaths(graphSession, {
      input: sessionInput,
      events: sessionEvents() as never,
      serializeState,
      limit: LIMIT,
      toState: (s) => s.status === 'done',
    });
    expect(simple.length).toBeGreaterThan(10);
    for (const p of simple) {
      const tops = [topState({ value: 'INITIALIZING', status: 'active' }), ...p.steps.map((s) => topState(s.state))];
      for (let i = 1; i < tops.length; i++) {
        if (tops[i] === tops[i - 1]) continue;
        // A step is a macrostep: IDLE → READY → BUSY (and INITIALIZING → READY → BUSY) shows as one.
        const edge = `${tops[i - 1]}->${tops[i]}`;
        const viaReady = tops[i] === 'BUSY' && SESSION_EDGES.has(`${tops[i - 1]}->READY`);
        expect(SESSION_EDGES.has(edge) || viaReady, `${tops[i - 1]}->${tops[i]} on ${p.steps.map((s) => s.event.type).join(' → ')}`).toBe(true);
      }
      expect(p.state.value).toBe('TERMINATED');
    }
  });

  it('can reach TERMINATED from every state (a session can always be shut down)', () => {
    for (const from of shortest) {
      if (from.state.status === 'done') continue;
      const out = getShortestPaths(graphSession, { fromState: from.state, events: sessionEvents() as never, serializeState, limit: LIMIT, toState: (s) => s.status === 'done' });
      expect(out.length, `no way to TERMINATED from ${serializeState(from.state)}`).toBeGreaterThan(0);
    }
  });

  it.each(SESSION_STATES.map((s) => [s]))('replays the shortest path to %s on a live session', async (target) => {
    const path = shortest.find((p) => topState(p.state) === target)!;
    const h = sessionHarness({ idleTimeoutMs: IDLE_MS, drainTimeoutMs: DRAIN_MS });
    await flush();
    for (const { event } of path.steps) {
      const e = event as AnyEventObject & Record<string, unknown>;
      switch (e.type) {
        case 'xstate.init':
          break;
        case PREPARED:
        case PREPARE_FAILED:
          expect(h.prepared(e.type === PREPARED)).toBe(true);
          break;
        case RELEASED:
        case RELEASE_FAILED:
          expect(h.released(e.type === RELEASED)).toBe(true);
          break;
        case IDLE_TIMEOUT:
          h.clock.increment(IDLE_MS);
          break;
        case DRAIN_TIMEOUT:
          h.clock.increment(DRAIN_MS);
          break;
        case 'task.ended': {
          // The running task's executor reports; a queued task ends by a cancel (the live session may have ended it already).
          const taskId = e.taskId as string;
          const run = h.exec.active().find((r) => r.spec.taskId === taskId);
          const outcome = e.outcome as TaskOutcomeSummary;
          if (run) run.finish(outcome.type === 'error' ? (outcome.error.code as FinishKind) : outcome.status);
          else if (h.snapshot().context.queue.includes(taskId)) h.send({ type: 'task.cancel', taskId, reason: 'path', atMs: h.clock.now() });
          break;
        }
        default:
          h.send(e);
      }
      await flush();
    }
    expect(h.state()).toBe(target);
    expect(serializeState(h.snapshot())).toBe(serializeState(path.state));
    expect(h.errors).toEqual([]);
    h.parent.stop();
  });
});

// ------------------------------------------------------------------ the coordinator's session proxy

const PROXY_STATES = ['creating', 'active', 'destroying', 'ending', 'refused', 'done'] as const;
const CREATE_TIMEOUT = 'xstate.after.createTimeout.sessionProxy.creating';
const DESTROY_TIMEOUT = 'xstate.after.destroyTimeout.sessionProxy.destroying';
const CREATE_MS = 5_000;
const DESTROY_MS = 30_000;

const report = (state: SessionState, gone = false): SessionReport => ({ description: description('s1'), state, workspacePath: state === 'INITIALIZING' ? '' : '/ws/s1', failureReason: state === 'FAILED' ? 'broke' : '', gone });
const proxyInput = (mode: 'create' | 'mirror'): SessionProxyInput => ({
  workerId: 'w1',
  mode,
  report: mode === 'create' ? report('INITIALIZING') : report('READY'),
  reachable: true,
  createTimeoutMs: CREATE_MS,
  destroyTimeoutMs: DESTROY_MS,
  atMs: BASE_MS,
});

function proxyEvents() {
  let n = 0;
  return (s: SessionProxySnapshot): AnyEventObject[] => {
    const live = s.context.book.records.filter((r) => r.outcome === null).map((r) => r.taskId);
    return [
      ...(s.matches('creating') ? [{ type: CREATE_TIMEOUT }] : []),
      ...(s.matches('destroying') ? [{ type: DESTROY_TIMEOUT }] : []),
      ...(['READY', 'BUSY', 'FAILED'] as const).map((st) => ({ type: 'session.reported', workerId: 'w1', report: report(st), atMs: BASE_MS })),
      { type: 'session.reported', workerId: 'w1', report: report('TERMINATED', true), atMs: BASE_MS },
      { type: 'session.reported', workerId: 'w2', report: report('READY'), atMs: BASE_MS },
      { type: 'session.unreported', reason: 'not listed', atMs: BASE_MS },
      { type: 'command.replied', requestId: 'r', ok: true, atMs: BASE_MS },
      { type: 'command.replied', requestId: 'r', ok: false, error: { code: 'CAPACITY_EXHAUSTED', message: 'full', details: '', retriable: true }, atMs: BASE_MS },
      { type: 'worker.lost', reason: 'gone', atMs: BASE_MS },
      { type: 'worker.online', atMs: BASE_MS },
      { type: 'task.submit', requestId: `q${n}`, spec: taskSpec(`p${n++}`, 's1'), followerId: 'f', atMs: BASE_MS },
      { type: 'metadata.put', requestId: 'm', metadata: { k: 'v' }, merge: true, atMs: BASE_MS },
      { type: 'session.destroy', requestId: 'd', force: false, atMs: BASE_MS },
      { type: 'session.destroy', requestId: 'd', force: true, atMs: BASE_MS },
      ...live.slice(0, 1).map((taskId) => ({ type: 'task.ended', taskId, outcome: summary('SUCCESS'), atMs: BASE_MS })),
    ];
  };
}

const graphProxy = withParent(sessionProxyMachine);
/** By value, plus the two facts that decide where a proxy can go: whether it follows tasks and whether its worker is reachable. */
const serializeProxy = (s: SessionProxySnapshot) => JSON.stringify([s.value, s.context.book.records.some((r) => r.outcome === null), s.context.reachable]);

describe('paths through the session proxy statechart', () => {
  const fromCreate = getShortestPaths(graphProxy, { input: proxyInput('create'), events: proxyEvents() as never, serializeState: serializeProxy as never, limit: LIMIT });
  const fromMirror = getShortestPaths(graphProxy, { input: proxyInput('mirror'), events: proxyEvents() as never, serializeState: serializeProxy as never, limit: LIMIT });
  const all = [...fromCreate, ...fromMirror];

  it('reaches every state, ending only while a task is still followed, and only refused and done are final', () => {
    expect([...new Set(all.map((p) => topState(p.state)))].sort()).toEqual([...PROXY_STATES].sort());
    expect(fromCreate.map((p) => topState(p.state))).toContain('creating');
    for (const p of all) {
      expect(p.state.status === 'done', serializeState(p.state)).toBe(p.state.value === 'refused' || p.state.value === 'done');
      if (p.state.value === 'ending') expect(p.steps.map((s) => s.event.type), 'ending waits for a followed task').toContain('task.submit');
    }
    // A mirrored session (a registration) is never refused: only a create can be.
    expect(fromMirror.map((p) => topState(p.state))).not.toContain('refused');
  });

  it('can reach a final state from every state', () => {
    for (const from of all) {
      if (from.state.status === 'done') continue;
      const out = getShortestPaths(graphProxy, { fromState: from.state, events: proxyEvents() as never, serializeState: serializeProxy as never, limit: LIMIT, toState: (s) => s.status === 'done' });
      expect(out.length, `stuck in ${serializeState(from.state)}`).toBeGreaterThan(0);
    }
  });

  it('ends a created session (done) only through a destroy or the word of a worker', () => {
    const simple = getSimplePaths(graphProxy, { input: proxyInput('create'), events: proxyEvents() as never, serializeState: serializeProxy as never, limit: LIMIT, toState: (s) => s.value === 'done' });
    expect(simple.length).toBeGreaterThan(0);
    for (const p of simple) {
      const tops = p.steps.map((s) => topState(s.state));
      // done comes through destroying, or from the worker's report that it holds the session no
      // more, or from another worker's report that it took the session over.
      const byWorker = p.steps.some(({ event }) => event.type === 'session.reported' && ((event as unknown as { report: SessionReport }).report.gone || (event as unknown as { workerId: string }).workerId !== 'w1'));
      const destroyed = p.steps.some(({ event }) => event.type === 'session.destroy');
      expect(tops.includes('destroying') || destroyed || byWorker, p.steps.map((s) => `${s.event.type}→${topState(s.state)}`).join(', ')).toBe(true);
    }
  });

  it.each(all.map((p, i) => [`${i < fromCreate.length ? 'create' : 'mirror'} → ${serializeState(p.state)}`, p, i < fromCreate.length ? 'create' : 'mirror'] as const))(
    'replays the shortest path %s on a live proxy',
    async (_name, path, mode) => {
      const clock = new SimulatedClock();
      clock.set(BASE_MS);
      // A parent standing in for the bucket, in a system that holds the worker's connection; the
      // connection and the task proxies are inert, as in the graph (its task ends are events of the path).
      const inert = fromCallback(() => () => {});
      const proxyLogic = sessionProxyMachine.provide({ actors: { taskProxy: inert as never } });
      const parentMachine = setup({ actors: { proxy: proxyLogic, connection: inert } }).createMachine({
        invoke: [
          { id: 'connection:w1', systemId: 'connection:w1', src: 'connection' },
          { id: 'session:s1', systemId: 'session:s1', src: 'proxy', input: proxyInput(mode) },
        ],
        on: { '*': {} },
      });
      const parent = createActor(parentMachine, { clock });
      parent.start();
      const proxy = parent.getSnapshot().children['session:s1'] as AnyActorRef;
      const errors: unknown[] = [];
      proxy.subscribe({ error: (e: unknown) => errors.push(e) });
      proxy.start();
      for (const { event } of path.steps) {
        const type: string = event.type;
        if (type === 'xstate.init') continue;
        if (type === CREATE_TIMEOUT) clock.increment(CREATE_MS);
        else if (type === DESTROY_TIMEOUT) clock.increment(DESTROY_MS);
        else proxy.send(event);
        await flush();
      }
      expect(serializeState(proxy.getSnapshot())).toBe(serializeState(path.state));
      expect(errors).toEqual([]);
      parent.stop();
    },
  );
});
