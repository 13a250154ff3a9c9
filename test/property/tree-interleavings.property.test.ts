/**
 * The whole actor tree in one process (test/helpers/model-system.ts): the real coordinator root
 * and 1–3 real worker roots, connected by an in-memory network that carries the real protobuf
 * messages, over an in-memory disk per worker that outlives its restarts, all on simulated
 * clocks. Generated runs interleave: creating sessions, submitting, finishing and cancelling
 * tasks, destroying sessions, changing metadata, crashing session actors, restarting workers
 * (killed, or drained), stalling a worker past the heartbeat timeout, restarting the
 * coordinator, and letting time pass.
 *
 * After every operation: no task ends twice at the client's side (the coordinator's task.update
 * outcomes, or the coordinator dying under its follower); never two tasks of a session run at
 * once; no actor fails; no machine crashes; a session's files are removed only when it was
 * destroyed (or its creation refused). Once the system has quiesced (tools finished, time past
 * every deadline): every task the client submitted ended exactly once; every worker is
 * connected; the coordinator's view of the sessions (ActorCoordinatorPort.listSessions) equals
 * the workers' (ids, worker, state with BUSY as READY, metadata); what is on each disk is what
 * its worker holds, with every file written into it.
 *
 * Reproduce a failure with FC_SEED=<seed> (and FC_PATH=<path>) from the report; FC_RUNS sets the
 * number of runs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { opArb, quietStoppedActorWarnings, runModel, type Op } from '../helpers/model-system.js';

const runs = Number(process.env.FC_RUNS ?? 500);
const reproduce = {
  ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
  ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
};

/** Operations print as calls, so a counterexample reads as a script. */
const opsArb = fc.array(opArb(), { minLength: 1, maxLength: 40 });
const workersArb = fc.integer({ min: 1, max: 3 });

describe('interleavings across the whole actor tree (property)', () => {
  quietStoppedActorWarnings();

  it('ends every task exactly once, keeps files until a destroy, and reconciles the coordinator with the workers', async () => {
    await fc.assert(
      fc.asyncProperty(workersArb, opsArb, async (workers: number, ops: Op[]) => {
        await runModel(workers, ops);
      }),
      { numRuns: runs, ...reproduce },
    );
  }, Math.max(120_000, runs * 200));
});

/**
 * Bugs the property once found, each as its shrunk counterexample: they must stay fixed.
 */
describe('regressions found by the property', () => {
  const regression = (title: string, workers: number, ops: Op[]) =>
    it(title, async () => {
      const m = await runModel(workers, ops);
      expect(m.violations).toEqual([]);
    });

  regression('a restarted worker’s adopted session shows READY at the coordinator once it is ready', 1, [
    { op: 'create', worker: null, idle: false },
    { op: 'restartWorker', worker: 0, graceful: false, downMs: 0 },
  ]);
  regression('a crashed session actor leaves no task or executor running', 1, [
    { op: 'create', worker: null, idle: false },
    { op: 'submit', session: 0 },
    { op: 'crashSession', session: 0 },
  ]);
  regression('a metadata change made while its session actor restarts is refused, not lost, and the views agree', 1, [
    { op: 'create', worker: null, idle: false },
    { op: 'crashSession', session: 0 },
    { op: 'metadata', session: 0, value: 0 },
    { op: 'advance', ms: 100 },
  ]);
  regression('a metadata change made while its session actor restarts, then its worker killed, is not confirmed and then lost', 1, [
    { op: 'create', worker: null, idle: false },
    { op: 'crashSession', session: 0 },
    { op: 'metadata', session: 0, value: 0 },
    { op: 'restartWorker', worker: 0, graceful: false, downMs: 0 },
  ]);
  regression('a metadata change confirmed before its worker is killed survives it (it was on disk)', 1, [
    { op: 'create', worker: null, idle: false },
    { op: 'metadata', session: 0, value: 3 },
    { op: 'advance', ms: 100 },
    { op: 'metadata', session: 0, value: 4 },
    { op: 'restartWorker', worker: 0, graceful: false, downMs: 0 },
  ]);
  regression('a task that died in a session actor crash ends for the client when the session is then destroyed', 1, [
    { op: 'create', worker: null, idle: false },
    { op: 'submit', session: 0 },
    { op: 'crashSession', session: 0 },
    { op: 'destroy', session: 0, force: true },
  ]);
  regression('a task that died in the crash after which its session was given up on ends for the client', 1, [
    { op: 'create', worker: null, idle: false },
    { op: 'crashSession', session: 0 },
    { op: 'crashSession', session: 0 },
    { op: 'crashSession', session: 0 },
    { op: 'submit', session: 0 },
    { op: 'crashSession', session: 0 },
  ]);
  regression('a task whose session actor crashed during a destroy still ends for the client', 1, [
    { op: 'create', worker: null, idle: false },
    { op: 'submit', session: 0 },
    { op: 'destroy', session: 0, force: true },
    { op: 'crashSession', session: 0 },
  ]);
});
