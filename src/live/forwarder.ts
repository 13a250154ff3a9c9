/**
 * A worker's live-view records to the coordinator, over its task stream. Bounded rate and
 * memory: changes are coalesced per actor (a dirty set, never a queue of events) and sent at
 * most every `intervalMs`, at most `maxPerBatch` actors at a time; a new stream starts with a
 * full reset.
 */
import { encodeInspectionBatch } from '../wire/worker-codecs.js';
import type { Uplink } from '../worker/uplink.js';
import type { LiveRegistry } from './registry.js';

export function forwardLiveRecords(registry: LiveRegistry, uplink: Uplink, opts: { intervalMs?: number; maxPerBatch?: number } = {}): () => void {
  let generation = -1;
  let sentDefinitions = new Set<string>();
  const tick = () => {
    registry.sweep();
    if (!uplink.attached) {
      // The next stream starts with a reset: nothing to remember meanwhile.
      registry.removed.clear();
      return;
    }
    // A slow coordinator: the task stream's own messages first; what changed waits (coalesced).
    if (uplink.congested) return;
    let reset = false;
    if (uplink.generation !== generation) {
      generation = uplink.generation;
      sentDefinitions = new Set();
      registry.markAllDirty();
      reset = true;
    }
    if (!reset && registry.dirty.size === 0 && registry.removed.size === 0) return;
    const { actors, removed } = registry.take(opts.maxPerBatch ?? 1_000);
    const definitions: Record<string, Record<string, unknown>> = {};
    for (const a of actors) {
      if (!a.machine || sentDefinitions.has(a.machine)) continue;
      const d = registry.definition(a.machine);
      if (d) definitions[a.machine] = d;
      sentDefinitions.add(a.machine);
    }
    uplink.inspection(encodeInspectionBatch({ reset, actors, removed, definitions }));
  };
  const timer = setInterval(tick, opts.intervalMs ?? 500);
  timer.unref();
  return () => clearInterval(timer);
}
