/**
 * What the live view shows: every actor of a process as a compact record (its system id, its
 * machine, its parent, its state value and status, its last event types), kept from the
 * inspection events of the process's hub, and, at the coordinator, from the records each worker
 * forwards. Records never hold contexts or event payloads: only names, so nothing a session
 * holds can leave through here. Memory is bounded: one record per live actor, a fixed ring of
 * event types each, and one definition per machine.
 */
import type { AnyActorRef, InspectionEvent } from 'xstate';

export interface LiveEvent {
  type: string;
  atMs: number;
}

export interface LiveActor {
  /** `<process>/<xstate session id>`: unique across the fleet. */
  key: string;
  process: string;
  /** The system id when it has one ("session:sess-…"), else the actor's id. */
  id: string;
  /** The machine's id ("sessionProxy"), '' for callback and promise actors. */
  machine: string;
  parent: string;
  value: unknown;
  status: string;
  events: LiveEvent[];
  updatedAtMs: number;
}

export const EVENTS_PER_ACTOR = 20;
/** What one worker may have in the coordinator's view: records, and machine definitions. */
export const MAX_REMOTE_ACTORS = 50_000;
export const MAX_REMOTE_DEFINITIONS = 64;
const collator = new Intl.Collator(undefined, { numeric: true });

type Listener = (actor: LiveActor | undefined) => void;

interface Local {
  ref: AnyActorRef;
}

/** The JSON of a machine's definition: its states and transitions only (no actions' code, no context). */
export function definitionOf(config: unknown): Record<string, unknown> {
  const KEEP = new Set(['id', 'initial', 'type', 'states', 'on', 'always', 'after', 'invoke', 'target', 'guard', 'onDone', 'onError', 'src', 'history', 'description', 'reenter']);
  const walk = (v: unknown, depth: number): unknown => {
    if (depth > 40) return undefined;
    if (typeof v === 'function') return { type: v.name || 'inline' };
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        // Under states/on/after the keys are names, not fields; in a transition, guards by name only, actions not at all.
        if (x === undefined || k === 'actions') continue;
        out[k] = k === 'guard' ? (typeof x === 'string' ? x : { type: String((x as { type?: unknown })?.type ?? 'inline') }) : walk(x, depth + 1);
      }
      return out;
    }
    return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? v : undefined;
  };
  const pick = (node: Record<string, unknown>, depth: number): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(node)) {
      if (!KEEP.has(k)) continue;
      const v = node[k];
      if (k === 'states' && v && typeof v === 'object') {
        out.states = Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([name, s]) => [name, pick((s ?? {}) as Record<string, unknown>, depth + 1)]));
      } else if (k === 'guard' && typeof v === 'object' && v) {
        out.guard = { type: String((v as { type?: unknown }).type ?? 'inline') };
      } else if (k === 'src' && typeof v !== 'string') {
        out.src = 'inline';
      } else out[k] = walk(v, depth + 1);
    }
    return out;
  };
  return pick((config ?? {}) as Record<string, unknown>, 0);
}

export class LiveRegistry {
  private readonly actors = new Map<string, LiveActor>();
  private readonly locals = new Map<string, Local>();
  private readonly definitions = new Map<string, Record<string, unknown>>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private sortedCache: { revision: number; atMs: number; list: Array<LiveActor & { depth: number }> } | undefined;
  private readonly remoteCounts = new Map<string, number>();
  /** Changed (or new) since the last take, for a worker's forwarder. */
  readonly dirty = new Set<string>();
  readonly removed = new Set<string>();
  revision = 0;

  constructor(
    /** This process's name ("coordinator", a worker's id). */
    readonly processName: string,
    /** A worker forwards its records: keep what changed since the last take. */
    private readonly forwarding = false,
    private readonly now: () => number = Date.now,
  ) {}

  /** Definitions are per process: a worker's never stands in for the coordinator's machine of the same name. */
  private defKey(process: string, machine: string): string {
    return `${process}\u0000${machine}`;
  }

  private keyOf(ref: { sessionId: string }): string {
    return `${this.processName}/${ref.sessionId}`;
  }

  /** The hub listener. Cheap: a map look-up and a small write per event. */
  readonly listener = (event: InspectionEvent): void => {
    const ref = event.actorRef as AnyActorRef & { systemId?: string; _parent?: { sessionId: string }; logic?: { config?: { id?: string } } };
    if (!ref) return;
    const key = this.keyOf(ref);
    if (event.type === '@xstate.actor') {
      const config = ref.logic?.config;
      const machine = config && typeof config === 'object' && typeof config.id === 'string' ? config.id : '';
      if (machine && !this.definitions.has(this.defKey(this.processName, machine))) this.definitions.set(this.defKey(this.processName, machine), definitionOf(config));
      // Its snapshot cannot be read yet (it is being made): the first @xstate.snapshot brings its state.
      const actor: LiveActor = { key, process: this.processName, id: ref.systemId ?? ref.id, machine, parent: ref._parent ? this.keyOf(ref._parent) : '', value: null, status: 'active', events: [], updatedAtMs: this.now() };
      this.actors.set(key, actor);
      this.locals.set(key, { ref });
      this.removed.delete(key);
      this.changed(actor);
      return;
    }
    const actor = this.actors.get(key);
    if (!actor) return;
    if (event.type === '@xstate.event') {
      const type = (event.event as { type?: unknown })?.type;
      if (typeof type !== 'string') return;
      actor.events.push({ type, atMs: this.now() });
      if (actor.events.length > EVENTS_PER_ACTOR) actor.events.shift();
      actor.updatedAtMs = this.now();
      this.changed(actor);
    } else if (event.type === '@xstate.snapshot') {
      const snap = event.snapshot as { value?: unknown; status?: string };
      // XState gives an actor its system id after announcing it.
      if (ref.systemId && actor.id !== ref.systemId) actor.id = ref.systemId;
      actor.value = snap.value ?? null;
      actor.status = snap.status ?? actor.status;
      actor.updatedAtMs = this.now();
      this.changed(actor);
    }
  };

  private changed(actor: LiveActor): void {
    this.revision++;
    if (this.forwarding) this.dirty.add(actor.key);
    const ls = this.listeners.get(actor.key);
    if (ls) for (const l of ls) l(actor);
  }

  private forget(key: string): void {
    const gone = this.actors.get(key);
    if (!gone || !this.actors.delete(key)) return;
    if (gone.process !== this.processName) this.remoteCounts.set(gone.process, (this.remoteCounts.get(gone.process) ?? 1) - 1);
    this.locals.delete(key);
    this.dirty.delete(key);
    if (this.forwarding) this.removed.add(key);
    this.revision++;
    const ls = this.listeners.get(key);
    if (ls) for (const l of ls) l(undefined);
  }

  /** Forgets actors of this process that have stopped (XState reports no event for a stop). */
  sweep(): number {
    let n = 0;
    for (const [key, { ref }] of this.locals) {
      if ((ref as unknown as { _processingStatus?: number })._processingStatus === 2) {
        this.forget(key);
        n++;
      }
    }
    return n;
  }

  /** Which stream last spoke for each worker: an old stream's end must not drop what a new one sent. */
  private readonly sources = new Map<string, string>();

  /** Records forwarded by a worker (their keys already name it) over the stream `source`. */
  applyRemote(process: string, batch: { reset: boolean; actors: LiveActor[]; removed: string[]; definitions: Record<string, Record<string, unknown>> }, source = ''): void {
    // A worker speaks for its own actors only: never for this process's (a worker named like it included).
    if (process === this.processName) return;
    if (batch.reset) this.dropProcess(process);
    this.sources.set(process, source);
    let defs = 0;
    for (const k of this.definitions.keys()) if (k.startsWith(`${process}\u0000`)) defs++;
    for (const [machine, def] of Object.entries(batch.definitions)) {
      const k = this.defKey(process, machine);
      if (!this.definitions.has(k) && defs >= MAX_REMOTE_DEFINITIONS) continue;
      if (!this.definitions.has(k)) defs++;
      this.definitions.set(k, def);
    }
    const prefix = `${process}/`;
    for (const a of batch.actors) {
      if (!a.key.startsWith(prefix) || this.locals.has(a.key)) continue;
      const known = this.actors.has(a.key);
      const count = this.remoteCounts.get(process) ?? 0;
      if (!known && count >= MAX_REMOTE_ACTORS) continue;
      if (!known) this.remoteCounts.set(process, count + 1);
      const actor: LiveActor = { ...a, process, events: a.events.slice(-EVENTS_PER_ACTOR) };
      this.actors.set(a.key, actor);
      this.changed(actor);
    }
    for (const key of batch.removed) if (key.startsWith(prefix) && !this.locals.has(key)) this.forget(key);
  }

  /** A worker went away (its stream `source` ended): its actors with it, unless a newer stream speaks for it. */
  dropProcess(process: string, source?: string): void {
    if (process === this.processName) return;
    if (source !== undefined) {
      if (this.sources.has(process) && this.sources.get(process) !== source) return;
      this.sources.delete(process);
    }
    const prefix = `${process}/`;
    for (const key of [...this.actors.keys()]) if (key.startsWith(prefix) && !this.locals.has(key)) this.forget(key);
    for (const k of [...this.definitions.keys()]) if (k.startsWith(`${process}\u0000`)) this.definitions.delete(k);
    this.remoteCounts.delete(process);
  }

  get(key: string): LiveActor | undefined {
    return this.actors.get(key);
  }

  /** The definition of a machine as `process` runs it (this process's when omitted). */
  definition(machine: string, process = this.processName): Record<string, unknown> | undefined {
    return this.definitions.get(this.defKey(process, machine));
  }

  get size(): number {
    return this.actors.size;
  }

  /** Calls `fn` on each change of one actor (undefined: it is gone); returns the unsubscribe. */
  watch(key: string, fn: Listener): () => void {
    let set = this.listeners.get(key);
    if (!set) this.listeners.set(key, (set = new Set()));
    set.add(fn);
    return () => {
      set!.delete(fn);
      if (set!.size === 0) this.listeners.delete(key);
    };
  }

  /** Every actor: the coordinator first, then the workers by name; within a process parents before their children. */
  sorted(): Array<LiveActor & { depth: number }> {
    // Rebuilt at most once a second: the revision moves with every event, and viewers poll.
    const c = this.sortedCache;
    if (c && (c.revision === this.revision || this.now() - c.atMs < 1_000)) return c.list;
    const children = new Map<string, LiveActor[]>();
    const roots: LiveActor[] = [];
    for (const a of this.actors.values()) {
      if (a.parent && this.actors.has(a.parent)) {
        let list = children.get(a.parent);
        if (!list) children.set(a.parent, (list = []));
        list.push(a);
      } else roots.push(a);
    }
    const rank = (p: string) => (p === 'coordinator' ? '' : p);
    roots.sort((a, b) => (a.process === b.process ? collator.compare(a.id, b.id) : collator.compare(rank(a.process), rank(b.process))));
    const out: Array<LiveActor & { depth: number }> = [];
    const stack: Array<[LiveActor, number]> = roots.reverse().map((r) => [r, 0]);
    while (stack.length) {
      const [a, depth] = stack.pop()!;
      out.push({ ...a, depth });
      const kids = children.get(a.key);
      if (kids) {
        kids.sort((x, y) => collator.compare(x.id, y.id));
        for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i]!, depth + 1]);
      }
    }
    this.sortedCache = { revision: this.revision, atMs: this.now(), list: out };
    return out;
  }

  /** For a forwarder: up to `max` changed actors and every removal since the last take. */
  take(max: number): { actors: LiveActor[]; removed: string[] } {
    const actors: LiveActor[] = [];
    for (const key of this.dirty) {
      if (actors.length >= max) break;
      this.dirty.delete(key);
      const a = this.actors.get(key);
      if (a) actors.push(a);
    }
    const removed = [...this.removed];
    this.removed.clear();
    return { actors, removed };
  }

  /** Everything is owed again (a new stream to the coordinator). */
  markAllDirty(): void {
    for (const key of this.actors.keys()) this.dirty.add(key);
    this.removed.clear();
  }
}
