/**
 * Where the coordinator places a new session: the least-loaded online worker (load counts the
 * sessions placed on it, reported or not yet), ties broken by most free slots, then by id.
 *
 * Kept as plain data in the root's context, so every change copies what it touches: workers are
 * spread over GROUPS groups by a hash of their id, each group remembers its best worker, and a
 * change copies one group and re-reads the group bests — about √W work for W workers, never a
 * scan of every worker or of every session.
 */
export interface WorkerSlot {
  registrationId: string;
  /** The worker process (random per start): tells a restarted worker from a second one with the same id. */
  instanceId: string;
  maxSessions: number;
  load: number;
  online: boolean;
}

interface Group {
  workers: Record<string, WorkerSlot>;
  /** The best worker of this group for a new session ('' when none can take one). */
  best: string;
}

export interface PlacementIndex {
  groups: Record<string, Group>;
  /** The group holding the best worker overall ('' when none). */
  bestGroup: string;
  /** Workers that are online, for messages. */
  online: number;
}

const GROUPS = 32;

/** A small stable string hash (FNV-1a), so a worker always lands in the same group. */
function groupOf(workerId: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < workerId.length; i++) {
    h ^= workerId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return String((h >>> 0) % GROUPS);
}

const canTake = (s: WorkerSlot | undefined): s is WorkerSlot => s !== undefined && s.online && s.load < s.maxSessions;

/** a is a better place than b. */
function better(aId: string, a: WorkerSlot, bId: string, b: WorkerSlot): boolean {
  if (a.load !== b.load) return a.load < b.load;
  const freeA = a.maxSessions - a.load;
  const freeB = b.maxSessions - b.load;
  if (freeA !== freeB) return freeA > freeB;
  return aId < bId;
}

// for…in rather than Object.entries: this runs on every create, and the pairs it would allocate add up.
function bestIn(workers: Record<string, WorkerSlot>): string {
  let best = '';
  for (const id in workers) {
    const slot = workers[id]!;
    if (!canTake(slot)) continue;
    if (best === '' || better(id, slot, best, workers[best]!)) best = id;
  }
  return best;
}

function bestGroupOf(groups: Record<string, Group>): string {
  let best = '';
  for (const g in groups) {
    const group = groups[g]!;
    if (group.best === '') continue;
    if (best === '') {
      best = g;
      continue;
    }
    const cur = groups[best]!;
    if (better(group.best, group.workers[group.best]!, cur.best, cur.workers[cur.best]!)) best = g;
  }
  return best;
}

function isEmpty(o: object): boolean {
  for (const _ in o) return false;
  return true;
}

export const emptyPlacement = (): PlacementIndex => ({ groups: {}, bestGroup: '', online: 0 });

export function slotOf(index: PlacementIndex, workerId: string): WorkerSlot | undefined {
  return index.groups[groupOf(workerId)]?.workers[workerId];
}

/** The index with `workerId`'s slot replaced (undefined removes it). */
export function setSlot(index: PlacementIndex, workerId: string, slot: WorkerSlot | undefined): PlacementIndex {
  const g = groupOf(workerId);
  const before = index.groups[g]?.workers[workerId];
  const workers = { ...(index.groups[g]?.workers ?? {}) };
  if (slot) workers[workerId] = slot;
  else delete workers[workerId];
  const groups = { ...index.groups };
  if (slot === undefined && isEmpty(workers)) delete groups[g];
  else groups[g] = { workers, best: bestIn(workers) };
  const online = index.online - (before?.online ? 1 : 0) + (slot?.online ? 1 : 0);
  return { groups, bestGroup: bestGroupOf(groups), online };
}

/** The index with `workerId`'s slot patched; the same index when the patch changes nothing (no copy, so callers can skip the assign). */
export function updateSlot(index: PlacementIndex, workerId: string, patch: Partial<WorkerSlot>): PlacementIndex {
  const slot = slotOf(index, workerId);
  if (!slot) return index;
  let changed = false;
  for (const k in patch) if (patch[k as keyof WorkerSlot] !== slot[k as keyof WorkerSlot]) changed = true;
  return changed ? setSlot(index, workerId, { ...slot, ...patch }) : index;
}

export type Placement = { ok: true; workerId: string } | { ok: false; code: 'NOT_FOUND' | 'CAPACITY_EXHAUSTED'; message: string };

/** Where a new session goes: the requested worker when it can take one, else the best. */
export function choose(index: PlacementIndex, requested: string): Placement {
  if (requested) {
    const slot = slotOf(index, requested);
    if (!slot || !slot.online) return { ok: false, code: 'NOT_FOUND', message: `worker_id: no worker named ${JSON.stringify(requested)} is connected` };
    if (slot.load >= slot.maxSessions) return { ok: false, code: 'CAPACITY_EXHAUSTED', message: `worker ${requested} already runs its maximum of ${slot.maxSessions} sessions` };
    return { ok: true, workerId: requested };
  }
  const group = index.groups[index.bestGroup];
  if (group && group.best) return { ok: true, workerId: group.best };
  return {
    ok: false,
    code: 'CAPACITY_EXHAUSTED',
    message: index.online === 0 ? 'no worker is connected; start a worker and try again' : `all ${index.online} connected workers are at their session limit; destroy a session or add a worker`,
  };
}

/** Every worker's slot, for listings (a scan: not for the hot path). */
export function allSlots(index: PlacementIndex): Array<[string, WorkerSlot]> {
  return Object.values(index.groups).flatMap((g) => Object.entries(g.workers));
}
