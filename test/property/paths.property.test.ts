/**
 * `xstate/graph` over the session machine: every state of the statechart is reachable with
 * a bounded set of events, and each shortest path, replayed on a live actor whose effects
 * are fakes, really ends in that state.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AnyEventObject } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { sessionMachine, type SessionSnapshot } from '../../machines/session.machine.js';
import { taskMachine } from '../../machines/task.machine.js';
import type { SessionConfig } from '../../src/domain/sessions.js';
import type { TaskOutcome } from '../../src/domain/tasks.js';
import { controlledPromise, failedOutcome, fakeExecutor, flush, resultOutcome, sessionHarness, sessionInput, taskSpec, topState } from '../helpers/machine-fakes.js';

const ALL_STATES = ['INITIALIZING', 'READY', 'BUSY', 'IDLE', 'FAILED', 'DRAINING', 'TERMINATED'] as const;
const IDLE_MS = 1_000;

// Event types the machine gives its own invocations and timers.
const PREPARED = 'xstate.done.actor.0.session.INITIALIZING';
const PREPARE_FAILED = 'xstate.error.actor.0.session.INITIALIZING';
const IDLE_TIMEOUT = 'xstate.after.idleTimeout.session.READY';
const RELEASED = 'xstate.done.actor.0.session.DRAINING.releasing';

/** The machine with fakes; parent notifications become no-ops because the graph walks it without a parent. */
function graphMachine() {
  const exec = fakeExecutor();
  return sessionMachine.provide({
    actors: {
      task: taskMachine.provide({ actors: { executor: exec.logic } }),
      prepareWorkspace: controlledPromise<{ workspacePath: string }, { sessionId: string; workerId: string; config: SessionConfig }>().logic,
      releaseWorkspace: controlledPromise<void, { sessionId: string; workerId: string; remove: boolean; force: boolean }>().logic,
    },
    actions: { announcePrepared: () => {}, announceFailed: () => {}, announceTerminated: () => {} },
  });
}

/** Bounded events, offered only where they can happen; task ids are fresh so spawned system ids never collide. */
function eventsFor() {
  let n = 0;
  return (s: SessionSnapshot): AnyEventObject[] => {
    const current = s.context.current;
    const ended = (outcome: TaskOutcome) => ({ type: 'task.ended', taskId: current, outcome });
    return [
      ...(s.matches('INITIALIZING') ? [{ type: PREPARED, output: { workspacePath: '/ws' } }, { type: PREPARE_FAILED, error: new Error('no venv') }] : []),
      ...(s.matches('READY') ? [{ type: IDLE_TIMEOUT }] : []),
      ...(s.matches({ DRAINING: 'releasing' }) ? [{ type: RELEASED }] : []),
      { type: 'task.submit', spec: taskSpec(`g${n++}`) },
      ...(current ? [ended(resultOutcome('SUCCESS')), ended(resultOutcome('FAILURE')), ended(failedOutcome('INTERNAL'))] : []),
      { type: 'session.destroy', force: false, requestId: 'r' },
      { type: 'session.destroy', force: true, requestId: 'r' },
      { type: 'session.drain' },
      { type: 'worker.lost', reason: 'gone' },
    ];
  };
}

describe('session statechart paths', () => {
  beforeEach(() => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  const paths = getShortestPaths(graphMachine(), {
    input: sessionInput({ idleTimeoutMs: IDLE_MS }),
    events: eventsFor() as never,
    serializeState: (s) => JSON.stringify(s.value),
    limit: 1_000,
  });

  it('reaches every state of the statechart', () => {
    const reached = new Set(paths.map((p) => topState(p.state)));
    expect([...reached].sort()).toEqual([...ALL_STATES].sort());
    for (const p of paths) expect(p.state.status === 'done', JSON.stringify(p.state.value)).toBe(p.state.value === 'TERMINATED');
  });

  it.each(ALL_STATES)('replays the shortest path to %s on a live session', async (target) => {
    const path = paths.find((p) => topState(p.state) === target)!;
    const h = sessionHarness({ idleTimeoutMs: IDLE_MS });
    for (const { event } of path.steps) {
      const e = event as AnyEventObject & Record<string, unknown>;
      switch (e.type) {
        case 'xstate.init':
          break;
        case PREPARED:
          h.prepare.last().resolve({ workspacePath: '/ws' });
          break;
        case PREPARE_FAILED:
          h.prepare.last().reject(new Error('no venv'));
          break;
        case IDLE_TIMEOUT:
          h.clock.increment(IDLE_MS);
          break;
        case RELEASED:
          h.release.last().resolve();
          break;
        case 'task.ended':
          h.exec.run(e.taskId as string).finish(e.outcome as TaskOutcome);
          break;
        default:
          h.session.send(e);
      }
      await flush();
    }
    expect(h.state()).toBe(target);
    expect(h.errors).toEqual([]);
  });
});
