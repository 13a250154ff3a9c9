/**
 * Machines are deterministic data: at random points of random runs of the whole system
 * (test/helpers/model-system.ts), the persisted snapshot of every actor in both trees — the
 * coordinator's root, shard supervisors, shards, connections and their streams, buckets,
 * session proxies, task proxies; each worker's root, supervisors, pool, sessions and their
 * effects, tasks and executors, the link and its children — survives JSON: it holds nothing
 * JSON.stringify would drop or change, and JSON.parse(JSON.stringify(s)) equals s. A problem
 * names the actor (its path of ids) and the field.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AnyActorRef } from 'xstate';
import { actorTree, jsonProblems, opArb, quietStoppedActorWarnings, runModel, type ModelSystem, type Op } from '../helpers/model-system.js';

const runs = Number(process.env.FC_RUNS ?? 100);
const reproduce = {
  ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
  ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
};

/** The roots of every running process. */
function roots(m: ModelSystem): { name: string; root: AnyActorRef }[] {
  const out: { name: string; root: AnyActorRef }[] = [];
  if (m.coordinator) out.push({ name: `coordinator#${m.coordinator.gen}`, root: m.coordinator.actor as unknown as AnyActorRef });
  for (const p of m.workers.values()) if (p.alive) out.push({ name: p.key, root: p.actor as unknown as AnyActorRef });
  return out;
}

interface Checked {
  actors: number;
  kinds: Set<string>;
}

/** Every actor's persisted snapshot, checked on its own (its children are checked as actors), then each root's whole. */
function checkSnapshots(m: ModelSystem, checked: Checked): void {
  const problems: string[] = [];
  for (const { name, root } of roots(m)) {
    for (const { path, ref } of actorTree(root, name)) {
      const src = (ref as { src?: unknown }).src;
      const kind = ref === root ? 'root' : typeof src === 'string' ? src : 'inline logic';
      checked.actors += 1;
      checked.kinds.add(kind);
      let persisted: unknown;
      try {
        persisted = ref.getPersistedSnapshot();
      } catch (err) {
        problems.push(`${path}: getPersistedSnapshot() threw: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      const own = { ...(persisted as Record<string, unknown>), children: undefined };
      for (const p of jsonProblems(own)) problems.push(`${path} (${kind}): ${p}`);
    }
    if (problems.length === 0) {
      const whole = root.getPersistedSnapshot();
      expect(JSON.parse(JSON.stringify(whole)), `the persisted snapshot of ${name}`).toEqual(whole);
    }
  }
  if (problems.length) throw new Error(`snapshots that do not survive JSON:\n${problems.join('\n')}`);
}

describe('persisted snapshots of the whole tree (property)', () => {
  quietStoppedActorWarnings();

  const checked: Checked = { actors: 0, kinds: new Set() };

  it('round-trips every actor’s persisted snapshot through JSON at random points of random runs', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.array(opArb({ snapshots: true }), { minLength: 1, maxLength: 40 }), async (workers: number, ops: Op[]) => {
        await runModel(workers, ops, { onSnapshotPoint: (m) => checkSnapshots(m, checked) });
      }),
      { numRuns: runs, ...reproduce },
    );
  }, Math.max(120_000, runs * 200));

  it('looked at every kind of actor of both trees on the way', () => {
    // Logic names as the trees spawn them; 'root' is each process's root.
    const expected = ['root', 'shardSupervisor', 'child', 'connection', 'workerStream', 'bucket', 'sessionProxy', 'taskProxy', 'sessionSupervisor', 'linkSupervisor', 'poolSupervisor', 'persist', 'prepareWorkspace', 'task', 'executor', 'register', 'heartbeats', 'taskStream'];
    for (const kind of expected) expect([...checked.kinds].sort(), kind).toContain(kind);
    expect(checked.actors).toBeGreaterThan(1_000);
    if (process.env.SNAPSHOT_STATS) console.log(checked.actors, [...checked.kinds].sort().join(' '));
  });
});
