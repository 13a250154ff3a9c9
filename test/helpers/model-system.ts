/**
 * Models for the property tests of the actor tree (test/property/).
 *
 * Part 1, one worker session: the REAL session machine (machines/worker/session.machine.ts) with
 * its REAL task machines, under a test parent that records what the session tells its supervisor;
 * every effect is a fake the test settles (workspace preparation and release, the executor).
 *
 * Part 2, the whole system in one process: the REAL coordinator root (as src/coordinator/actors.ts
 * composes it, with an in-memory `workerStream`) and REAL worker roots (as src/worker/main.ts
 * composes them, with fake effects over an in-memory disk that outlives worker restarts, a fake
 * executor the test finishes, and link logic that talks to the coordinator through an in-memory
 * network). Messages on the task stream go through the real codecs (src/wire/worker-codecs.ts) and
 * through protobuf serialization, as on the wire. Every actor system has its own SimulatedClock;
 * the model moves them together, and a stalled worker's clock stands still (SIGSTOP).
 *
 * No real time, no randomness: the same operations give the same run.
 */
import {
  createActor,
  fromCallback,
  fromPromise,
  setup,
  SimulatedClock,
  type AnyActorRef,
  type AnyEventObject,
  type EventObject,
  type InspectionEvent,
} from 'xstate';
import fc from 'fast-check';
import { afterAll, beforeAll, vi } from 'vitest';
import { bucketMachine } from '../../machines/coordinator/bucket.machine.js';
import { coordinatorMachine, type CoordinatorActor, type CoordinatorEmitted, type CoordinatorEvent } from '../../machines/coordinator/coordinator.machine.js';
import { sessionProxyIdOf, sessionProxyMachine, type SessionProxyActor, type SessionProxyEmitted, type SessionProxyOutput } from '../../machines/coordinator/session-proxy.machine.js';
import { shardIdOf, shardMachine, type ShardSnapshot } from '../../machines/coordinator/shard.machine.js';
import { taskProxyMachine, type TaskProxyEmitted } from '../../machines/coordinator/task-proxy.machine.js';
import { workerConnectionMachine, type WorkerConnectionEvent } from '../../machines/coordinator/worker-connection.machine.js';
import type { ErrorCode } from '../../machines/domain/errors.js';
import type { SessionDescription, SessionReport, SessionView } from '../../machines/domain/sessions.js';
import type { TaskOutcome, TaskSpec, TaskStatus, TaskUpdate } from '../../machines/domain/tasks.js';
import { supervisorMachine } from '../../machines/supervisor.machine.js';
import { coordinatorLinkMachine, type CoordinatorLinkEvent, type LinkRegistration } from '../../machines/worker/coordinator-link.machine.js';
import { sessionChildId, sessionMachine, sessionStateOf, type DescriptionSave, type PreparedWorkspace, type SessionInput, type SessionSnapshot } from '../../machines/worker/session.machine.js';
import { taskMachine, type ExecutorEvent, type ExecutorInput, type TaskEvent } from '../../machines/worker/task.machine.js';
import { workerMachine, type WorkerActor, type WorkerSnapshot } from '../../machines/worker/worker.machine.js';
import { ActorCoordinatorPort } from '../../src/coordinator/actor-port.js';
import { routeWorkerFact } from '../../src/coordinator/streams.js';
import { askNow } from '../../src/runtime/ask.js';
import { ResultStore } from '../../src/runtime/result-store.js';
import type { CoordinatorMessage, CoordinatorMessage__Output, WorkerMessage, WorkerMessage__Output } from '../../src/wire/messages.js';
import { loadProtos } from '../../src/wire/protos.js';
import { decodeCommand, decodeReport, decodeWorkerMessage, encodeCommand, encodeReply, encodeReport, encodeReportMessage, encodeTaskUpdateMessage } from '../../src/wire/worker-codecs.js';
import { controlledPromise } from './machine-fakes.js';
import { sendToKnownWorker, type KnownWorkerEvent } from '../../src/coordinator/worker-registry.js';

/** Simulated time starts here (a plausible epoch, so 0 never means "now"). */
export const BASE_MS = 1_700_000_000_000;

/**
 * The development build of XState warns about every event sent to a stopped actor; the
 * properties send such events on purpose (final is final, a dead process's mail). Other
 * warnings pass through. Call inside a describe.
 */
export function quietStoppedActorWarnings(): void {
  const warn = console.warn;
  beforeAll(() => {
    vi.spyOn(console, 'warn').mockImplementation((...args: unknown[]) => {
      if (!String(args[0]).includes('was sent to stopped actor')) warn(...args);
    });
  });
  afterAll(() => vi.restoreAllMocks());
}

interface MetadataCall {
  sessionId: string;
  value: string;
  answers: string[];
  /** A call to a coordinator that stopped ends for the client with it (its connection drops). */
  coordinator: { alive: boolean };
}

/** Lets promise actors settle and their parents react: every pending microtask runs. */
export function flush(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

// ---------------------------------------------------------------- domain values

export function description(sessionId: string, overrides: Partial<SessionDescription> = {}): SessionDescription {
  return {
    sessionId,
    workspaceId: sessionId,
    userId: '',
    tenant: '',
    config: { env_vars: {}, allow_network: false, language: 'python' },
    metadata: {},
    metadataVersion: 0,
    createdAtMs: BASE_MS,
    lastActivityMs: BASE_MS,
    restartedAtMs: 0,
    survivalNote: '',
    idleTimeoutMs: 0,
    ...overrides,
  };
}

export function taskSpec(taskId: string, sessionId: string): TaskSpec {
  return {
    taskId,
    sessionId,
    call: { tool: 'echo', input: { message: taskId } },
    constraints: { timeout_seconds: 30, max_memory_bytes: 0, max_output_bytes: 0, allow_network: false },
    sequence: 0,
  };
}

/** How a fake executor run can end: a tool result, or an error (INTERNAL/WORKER_LOST: the machinery broke). */
export type FinishKind = TaskStatus | Extract<ErrorCode, 'INTERNAL' | 'WORKER_LOST' | 'LIMIT_EXCEEDED'>;
export const finishKinds: readonly FinishKind[] = ['SUCCESS', 'FAILURE', 'TIMEOUT', 'CANCELLED', 'INTERNAL', 'WORKER_LOST', 'LIMIT_EXCEEDED'];
/** A tool's error (INTERNAL included) leaves the session usable; only a lost worker (or a crashed task actor) fails it. */
export const isMachineryFailure = (k: FinishKind): boolean => k === 'WORKER_LOST';

export function outcomeOf(kind: FinishKind, meta: { workerId: string; startedAtMs: number; finishedAtMs: number; enqueuedAtMs: number }): TaskOutcome {
  if (kind === 'INTERNAL' || kind === 'WORKER_LOST' || kind === 'LIMIT_EXCEEDED') {
    return { type: 'error', error: { code: kind, message: `${kind} in test`, details: '', retriable: kind !== 'LIMIT_EXCEEDED' } };
  }
  return {
    type: 'result',
    status: kind,
    artifacts: [],
    metadata: { workerId: meta.workerId, startedAtMs: meta.startedAtMs, finishedAtMs: meta.finishedAtMs, durationMs: meta.finishedAtMs - meta.startedAtMs, queuedMs: Math.max(0, meta.startedAtMs - meta.enqueuedAtMs) },
  };
}

// ---------------------------------------------------------------- fake effects

export interface ExecutorRun {
  spec: TaskSpec;
  input: ExecutorInput;
  /** Which executor instance (a worker process) ran it. */
  owner: string;
  /** Start order across all runs of this executor. */
  index: number;
  cancels: string[];
  /** The run is over: its actor stopped, crashed, or it reported an outcome. */
  stopped: boolean;
  finished: boolean;
  finish(kind: FinishKind): TaskOutcome | undefined;
  progress(percent: number): void;
  /** The executor actor itself fails (a crashed process runner). */
  crash(message: string): void;
}

export interface FakeExecutorOptions {
  now: () => number;
  /** Who runs the executor (recorded on each run). */
  owner?: string;
  /** Answers `executor.cancel` at once with a CANCELLED result (a cooperative tool). */
  cooperativeCancel?: (run: ExecutorRun) => boolean;
  onStart?: (run: ExecutorRun) => void;
  onFinish?: (run: ExecutorRun, outcome: TaskOutcome) => void;
}

/** A `fromCallback` executor whose outcome the test reports; it records starts, cancels and stops. */
export function fakeExecutor(options: FakeExecutorOptions) {
  const runs: ExecutorRun[] = [];
  const logic = fromCallback<ExecutorEvent, ExecutorInput>(({ input, sendBack, receive, self }) => {
    const back = (e: TaskEvent) => sendBack(e);
    const run: ExecutorRun = {
      spec: input.spec,
      input,
      owner: options.owner ?? '',
      index: runs.length,
      cancels: [],
      stopped: false,
      finished: false,
      finish: (kind) => {
        if (run.stopped || run.finished) return undefined;
        run.finished = true;
        const outcome = outcomeOf(kind, { workerId: input.workerId, startedAtMs: input.startedAtMs, finishedAtMs: options.now(), enqueuedAtMs: input.enqueuedAtMs });
        options.onFinish?.(run, outcome);
        back({ type: 'task.finished', outcome });
        return outcome;
      },
      progress: (percent) => {
        if (!run.stopped && !run.finished) back({ type: 'task.progressed', progress: { stage: 'run', message: '', percent, elapsedMs: 0 } });
      },
      crash: (message) => {
        if (!run.stopped && !run.finished) (self as AnyActorRef).send({ type: 'fake.crash', message });
      },
    };
    runs.push(run);
    receive((event) => {
      const e = event as ExecutorEvent | { type: 'fake.crash'; message: string };
      if (e.type === 'fake.crash') {
        // XState does not run the cleanup of a callback actor that failed: the run is over now.
        run.stopped = true;
        throw new Error(e.message);
      }
      run.cancels.push(e.reason);
      if (options.cooperativeCancel?.(run)) run.finish('CANCELLED');
    });
    options.onStart?.(run);
    return () => {
      run.stopped = true;
    };
  });
  return {
    logic,
    runs,
    /** Runs still going: started, not stopped, no outcome reported yet. */
    active: (): ExecutorRun[] => runs.filter((r) => !r.stopped && !r.finished),
  };
}

// ---------------------------------------------------------------- part 1: one session

/** The top-level state of a machine snapshot (a done machine is in its final state). */
export function topState(snapshot: { value?: unknown; status: string }): string {
  const v = snapshot.value;
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object') {
    // The session's `running` is BUSY or CHECKPOINTING (the wire's names).
    const [top, sub] = Object.entries(v as Record<string, unknown>)[0]!;
    return top === 'running' && typeof sub === 'string' ? sub : top;
  }
  return snapshot.status;
}

export interface SessionHarnessOptions {
  sessionId?: string;
  idleTimeoutMs?: number;
  drainTimeoutMs?: number;
  origin?: SessionInput['origin'];
  faults?: boolean;
  cooperativeCancel?: boolean;
}

export type PrepareInput = { description: SessionDescription; origin: SessionInput['origin']; restarts: number };
export type ReleaseInput = { sessionId: string; remove: boolean };

/**
 * A worker session under a test parent (standing in for its supervisor), every effect faked:
 * the test settles the workspace calls, reports executor outcomes and moves the simulated
 * clock. It records the top-level state after every microstep (`trail`, so states a macrostep
 * passes through count), what the session tells its parent, and every task update and end.
 */
export function sessionHarness(o: SessionHarnessOptions = {}) {
  const sessionId = o.sessionId ?? 's1';
  const clock = new SimulatedClock();
  clock.set(BASE_MS);
  const prepare = controlledPromise<PreparedWorkspace, PrepareInput>();
  const release = controlledPromise<void, ReleaseInput>();
  const saves: SessionDescription[] = [];
  const persist = fromCallback<DescriptionSave, { sessionId: string }>(({ receive, sendBack }) => {
    receive((e) => {
      if (e.type !== 'description.save') return;
      saves.push(e.description);
      if (e.requestIds.length > 0) sendBack({ type: 'description.saved', requestIds: e.requestIds, error: null });
    });
  });
  const exec = fakeExecutor({ now: () => clock.now(), owner: 'w1', cooperativeCancel: () => o.cooperativeCancel ?? false });
  /** Every update each task emitted (what the worker writes on the task stream), in order. */
  const updates: { taskId: string; update: TaskUpdate }[] = [];
  const outcomes = new Map<string, TaskOutcome[]>();
  const task = taskMachine.provide({
    actors: { executor: exec.logic },
    actions: {
      // As src/worker/main.ts does: the updates go straight to the uplink.
      emitUpdate: ({ context }: { context: { taskId: string } }, p: { update: TaskUpdate }) => {
        updates.push({ taskId: context.taskId, update: p.update });
        if (p.update.type === 'outcome') outcomes.set(context.taskId, [...(outcomes.get(context.taskId) ?? []), p.update.outcome]);
      },
    },
  });
  const machine = sessionMachine.provide({ actors: { task, prepareWorkspace: prepare.logic, releaseWorkspace: release.logic, persist } });
  const input: SessionInput = {
    description: description(sessionId, { idleTimeoutMs: o.idleTimeoutMs ?? 0 }),
    workerId: 'w1',
    drainTimeoutMs: o.drainTimeoutMs ?? 5_000,
    origin: o.origin ?? 'create',
    faults: o.faults ?? false,
  };
  const received: AnyEventObject[] = [];
  const parentMachine = setup({ actors: { child: machine } }).createMachine({
    id: 'testParent',
    invoke: { id: 'session', src: 'child', input: () => input },
    on: { '*': { actions: ({ event }) => void received.push(event) } },
  });
  const trail: string[] = ['INITIALIZING'];
  /** When each entry of `trail` was entered (simulated ms). */
  const trailAt: number[] = [clock.now()];
  /** task.ended events the session received, in order. */
  const ended: { taskId: string; outcome: unknown }[] = [];
  const inspect = (ev: InspectionEvent): void => {
    if ((ev.actorRef as AnyActorRef).id !== 'session') return;
    if (ev.type === '@xstate.microstep') {
      const s = topState(ev.snapshot as { value?: unknown; status: string });
      if (trail.at(-1) !== s) {
        trail.push(s);
        trailAt.push(clock.now());
      }
    }
    if (ev.type === '@xstate.event' && ev.event.type === 'task.ended') ended.push(ev.event as unknown as { taskId: string; outcome: unknown });
  };
  const errors: unknown[] = [];
  const parent = createActor(parentMachine, { clock, inspect });
  parent.subscribe({ error: (e) => errors.push(e) });
  parent.start();
  const session = parent.getSnapshot().children.session as AnyActorRef;
  const snapshot = () => session.getSnapshot() as SessionSnapshot;
  return {
    clock,
    prepare,
    release,
    saves,
    exec,
    updates,
    outcomes,
    ended,
    received,
    errors,
    trail,
    trailAt,
    parent,
    session,
    input,
    snapshot,
    /** The session's wire state ('TERMINATED' once done); its status when it crashed. */
    state: (): string => (snapshot().status === 'error' ? 'CRASHED' : sessionStateOf(snapshot())),
    /** What the session reported to its parent, in order. */
    reports: (): SessionReport[] => received.filter((e) => e.type === 'session.changed').map((e) => (e as unknown as { report: SessionReport }).report),
    refused: (): string[] => received.filter((e) => e.type === 'task.refused').map((e) => (e as unknown as { taskId: string }).taskId),
    /** Resolves the pending workspace preparation as the worker would. */
    prepared(ok = true): boolean {
      const p = prepare.pending()[0];
      if (!p) return false;
      if (ok) p.resolve({ workspacePath: `/ws/${sessionId}`, description: p.input.description, atMs: clock.now() });
      else p.reject(new Error('no venv could be made'));
      return true;
    },
    released(ok = true): boolean {
      const p = release.pending()[0];
      if (!p) return false;
      if (ok) p.resolve();
      else p.reject(new Error('could not remove the workspace'));
      return true;
    },
    send(event: AnyEventObject): void {
      session.send(event);
    },
  };
}

export type SessionHarness = ReturnType<typeof sessionHarness>;

// ================================================================ part 2: the whole system

/** Timings of the model: the real ones scaled down (the ratios are what matter). */
export const MODEL = {
  heartbeatIntervalMs: 1_000,
  heartbeatTimeoutMs: 3_000,
  createTimeoutMs: 5_000,
  destroyTimeoutMs: 30_000,
  drainTimeoutMs: 5_000,
  recoveryGraceMs: 2_000,
  maxSessions: 3,
  bucketSize: 2,
  linkBackoff: { initialMs: 200, maxMs: 2_000, factor: 2 },
  sessionBackoff: { initialMs: 100, maxMs: 2_000, factor: 2 },
} as const;

// ---------------------------------------------------------------- the wire, as protobuf bytes

type Codec = { serialize: (m: unknown) => Buffer; deserialize: (b: Buffer) => unknown };
let wire: { up: Codec; down: Codec; register: Codec } | undefined;
/** The task stream's and RegisterWorker's message codecs, from the real protos. */
function wireCodecs() {
  if (wire) return wire;
  const def = (loadProtos().services.WorkerLifecycle as unknown as { service: Record<string, { requestSerialize: Codec['serialize']; requestDeserialize: Codec['deserialize']; responseSerialize: Codec['serialize']; responseDeserialize: Codec['deserialize'] }> }).service;
  const ts = def.TaskStream!;
  const rw = def.RegisterWorker!;
  wire = {
    up: { serialize: ts.requestSerialize, deserialize: ts.requestDeserialize },
    down: { serialize: ts.responseSerialize, deserialize: ts.responseDeserialize },
    register: { serialize: rw.requestSerialize, deserialize: rw.requestDeserialize },
  };
  return wire;
}
const overTheWireUp = (m: WorkerMessage): WorkerMessage__Output => wireCodecs().up.deserialize(wireCodecs().up.serialize(m)) as WorkerMessage__Output;
const overTheWireDown = (m: CoordinatorMessage): CoordinatorMessage__Output => wireCodecs().down.deserialize(wireCodecs().down.serialize(m)) as CoordinatorMessage__Output;
/** Session reports as RegisterWorker carries them (encode, protobuf bytes, decode, as the front door does). */
function reportsOverTheWire(workerId: string, sessions: SessionReport[]): SessionReport[] {
  const req = wireCodecs().register.deserialize(wireCodecs().register.serialize({ worker_id: workerId, sessions: sessions.map(encodeReport) })) as { sessions?: unknown[] };
  return (req.sessions ?? []).map((s, i) => decodeReport(s as never, `sessions[${i}]`));
}

// ---------------------------------------------------------------- the in-memory network

/** Where a message goes: the coordinator running at delivery time, or one worker process. */
type Endpoint = { kind: 'coordinator' } | { kind: 'worker'; proc: WorkerProcess };
interface Delivery {
  to: Endpoint;
  what: string;
  run: () => void;
  /** The destination is not running (the message is lost; an RPC fails back to its caller). */
  dropped?: () => void;
}

/**
 * One FIFO of messages, delivered in order to each destination; a stalled worker's messages wait
 * (SIGSTOP: the kernel keeps them), a dead destination's are dropped.
 */
class Network {
  queue: Delivery[] = [];
  constructor(private readonly model: ModelSystem) {}
  send(d: Delivery): void {
    this.queue.push(d);
  }
  private frozen(to: Endpoint): boolean {
    return to.kind === 'worker' && to.proc.frozen;
  }
  private alive(to: Endpoint): boolean {
    return to.kind === 'coordinator' ? this.model.coordinator?.alive === true : to.proc.alive && this.model.workers.get(to.proc.workerId) === to.proc;
  }
  /** Delivers every message that can go now, in order; how many went. */
  deliverBatch(): number {
    let n = 0;
    const pending = this.queue;
    this.queue = [];
    const held: Delivery[] = [];
    for (const d of pending) {
      if (this.frozen(d.to)) {
        held.push(d);
        continue;
      }
      n += 1;
      if (this.alive(d.to)) d.run();
      else d.dropped?.();
    }
    // Held messages stay ahead of whatever was sent meanwhile.
    this.queue = [...held, ...this.queue];
    return n;
  }
}

/** One open task stream: written by the worker (up) and by the coordinator (down), closed from either end. */
class Pipe {
  workerClosed = false;
  coordinatorClosed = false;
  coordinatorGen = -1;
  // the coordinator's end (the connection's workerStream logic)
  onMessage: ((msg: WorkerMessage__Output) => void) | undefined;
  onCoordinatorClose: ((reason: string) => void) | undefined;
  early: WorkerMessage__Output[] = [];
  // the worker's end (the link's taskStream logic)
  onCommand: ((msg: CoordinatorMessage__Output) => void) | undefined;
  onWorkerClose: ((reason: string) => void) | undefined;

  constructor(
    private readonly model: ModelSystem,
    readonly id: string,
    readonly proc: WorkerProcess,
    readonly registrationId: string,
  ) {}

  up(msg: WorkerMessage): void {
    if (this.workerClosed) return;
    const out = overTheWireUp(msg);
    this.model.net.send({
      to: { kind: 'coordinator' },
      what: `${this.proc.key} → coordinator: ${out.body}`,
      run: () => {
        if (this.coordinatorClosed || this.coordinatorGen !== this.model.coordinator?.gen) return;
        if (this.onMessage) this.onMessage(out);
        else this.early.push(out);
      },
    });
  }

  down(msg: CoordinatorMessage): void {
    if (this.coordinatorClosed) return;
    const out = overTheWireDown(msg);
    this.model.net.send({
      to: { kind: 'worker', proc: this.proc },
      what: `coordinator → ${this.proc.key}: ${out.command}`,
      run: () => {
        if (!this.workerClosed) this.onCommand?.(out);
      },
    });
  }

  closeFromWorker(reason: string): void {
    if (this.workerClosed) return;
    this.workerClosed = true;
    this.model.net.send({
      to: { kind: 'coordinator' },
      what: `${this.proc.key} closed its stream ${this.id}`,
      run: () => {
        if (this.coordinatorClosed || this.coordinatorGen !== this.model.coordinator?.gen) return;
        this.coordinatorClosed = true;
        this.model.coordinator?.streams.delete(this.id);
        this.onCoordinatorClose?.(reason);
      },
    });
  }

  closeFromCoordinator(reason: string): void {
    if (this.coordinatorClosed) return;
    this.coordinatorClosed = true;
    this.model.net.send({
      to: { kind: 'worker', proc: this.proc },
      what: `coordinator closed stream ${this.id} of ${this.proc.key}`,
      run: () => {
        if (this.workerClosed) return;
        this.workerClosed = true;
        this.onWorkerClose?.(reason);
      },
    });
  }
}

// ---------------------------------------------------------------- the disk

/** A worker's BASE_WORKSPACE: session descriptions (as the JSON a file would hold) and workspaces (file names). */
export class Disk {
  readonly descriptions = new Map<string, string>();
  readonly workspaces = new Map<string, Set<string>>();
  /** Sessions whose workspace was removed, in order. */
  readonly removed: string[] = [];
}

// ---------------------------------------------------------------- processes

class CoordinatorProcess {
  alive = true;
  readonly streams = new Map<string, Pipe>();
  readonly results = new ResultStore();
  readonly errors: unknown[] = [];
  readonly actor: CoordinatorActor;
  private commands = 0;

  constructor(
    private readonly model: ModelSystem,
    readonly gen: number,
    readonly clock: SimulatedClock,
  ) {
    const results = this.results;
    const taskProxy = taskProxyMachine.provide({ actions: { keepOutcome: (_, p) => results.put(p.taskId, p.sessionId, p.outcome) } });
    const sessionProxy = sessionProxyMachine.provide({
      actors: { taskProxy },
      guards: {
        taskIdTakenElsewhere: (_, p) => {
          const owner = results.sessionOf(p.taskId);
          return owner !== undefined && owner !== p.sessionId;
        },
      },
    });
    const bucket = bucketMachine.provide({ actors: { sessionProxy } });
    const connection = workerConnectionMachine.provide({ actors: { workerStream: this.workerStream() } });
    const shard = shardMachine.provide({ actors: { bucket, connection } });
    const machine = coordinatorMachine.provide({ actors: { shardSupervisor: supervisorMachine.provide({ actors: { child: shard } }) } });
    this.actor = createActor(machine, {
      systemId: 'coordinator',
      clock,
      input: {
        recoveryGraceMs: MODEL.recoveryGraceMs,
        shard: { bucketSize: MODEL.bucketSize, createTimeoutMs: MODEL.createTimeoutMs, destroyTimeoutMs: MODEL.destroyTimeoutMs, heartbeatTimeoutMs: MODEL.heartbeatTimeoutMs },
        supervision: { intensity: { maxRestarts: 5, windowMs: 60_000 }, backoff: { initialMs: 100, maxMs: 5_000, factor: 2 } },
        seed: 7 + gen,
      },
      inspect: (ev) => this.model.inspectCoordinator(this, ev),
    });
    this.actor.subscribe({ error: (err) => this.errors.push(err) });
    this.actor.on('coordinator.warning', (e) => this.model.noteWarning(`coordinator#${gen}`, e.message, e.details));
    this.actor.start();
  }

  now(): number {
    return this.clock.now();
  }

  /** Sends an event that names a registration; true when the root answered that it does not know it (NOT_FOUND). */
  sendKnown(event: KnownWorkerEvent): boolean {
    return sendToKnownWorker(this.actor, event);
  }

  /** The connection actor's `workerStream`: streams.ts's router over a Pipe instead of a gRPC call. */
  private workerStream() {
    return fromCallback<EventObject, { workerId: string; registrationId: string; streamId: string }>(({ input, receive, sendBack, system }) => {
      const to = (systemId: string): AnyActorRef | undefined => system.get(systemId) as AnyActorRef | undefined;
      const route = (msg: WorkerMessage__Output): void => {
        const atMs = this.now();
        routeWorkerFact(decodeWorkerMessage(msg), input.workerId, atMs, to);
      };
      const pipe = this.streams.get(input.streamId);
      if (!pipe || pipe.coordinatorClosed) {
        sendBack({ type: 'stream.closed', reason: 'the stream closed before it was taken', atMs: this.now() } satisfies WorkerConnectionEvent);
        return () => {};
      }
      pipe.onMessage = route;
      pipe.onCoordinatorClose = (reason) => sendBack({ type: 'stream.closed', reason, atMs: this.now() } satisfies WorkerConnectionEvent);
      for (const m of pipe.early.splice(0)) route(m);
      receive((e) => {
        const event = e as WorkerConnectionEvent;
        if (event.type === 'worker.command') pipe.down(encodeCommand(event.command.requestId || `cmd-${this.gen}-${++this.commands}`, event.command));
      });
      return () => {
        this.streams.delete(pipe.id);
        pipe.closeFromCoordinator('dropped');
      };
    });
  }

  // The front door for workers, as src/coordinator/worker-registry.ts (ids minted here, deterministically).

  register(proc: WorkerProcess, sessions: SessionReport[]): { ok: boolean; registrationId: string; message: string } {
    const registrationId = `reg-${proc.workerId}-${++this.model.registrations}`;
    const answer = askNow(
      this.actor,
      {
        type: 'worker.register',
        workerId: proc.workerId,
        registration: { registrationId, instanceId: proc.instanceId, maxSessions: MODEL.maxSessions, isolation: 'none', hostname: proc.workerId },
        sessions,
        atMs: this.now(),
      },
      ['worker.registered', 'worker.refused'],
      (e) => {
        const a = e as CoordinatorEmitted;
        return (a.type === 'worker.registered' || a.type === 'worker.refused') && a.registrationId === registrationId ? a : undefined;
      },
    );
    this.model.trace(`${proc.key} ${answer.type === 'worker.registered' ? 'registered' : 'was refused'} as ${registrationId} with [${sessions.map((r) => `${r.description.sessionId}:${r.state}${r.workspacePath ? '' : '(no workspace yet)'}`).join(' ')}]`);
    return answer.type === 'worker.registered' ? { ok: true, registrationId, message: '' } : { ok: false, registrationId, message: answer.error.message };
  }

  openStream(pipe: Pipe): void {
    pipe.coordinatorGen = this.gen;
    this.streams.set(pipe.id, pipe);
    const unknown = this.sendKnown({ type: 'stream.opened', workerId: pipe.proc.workerId, registrationId: pipe.registrationId, streamId: pipe.id, atMs: this.now() });
    if (unknown) {
      this.streams.delete(pipe.id);
      pipe.closeFromCoordinator(`NOT_FOUND: worker ${pipe.proc.workerId} with registration ${pipe.registrationId} is not registered`);
    }
  }

  stop(): void {
    this.alive = false;
    this.actor.stop();
    for (const pipe of [...this.streams.values()]) pipe.closeFromCoordinator('the coordinator stopped');
    this.streams.clear();
  }
}

export class WorkerProcess {
  alive = true;
  frozen = false;
  uplink: Pipe | undefined;
  readonly errors: unknown[] = [];
  readonly actor: WorkerActor;
  readonly exec: ReturnType<typeof fakeExecutor>;
  readonly key: string;
  readonly instanceId: string;
  private readonly closedWriters = new Set<string>();

  constructor(
    private readonly model: ModelSystem,
    readonly workerId: string,
    readonly gen: number,
    readonly clock: SimulatedClock,
    readonly disk: Disk,
  ) {
    this.key = `${workerId}#${gen}`;
    this.instanceId = `inst-${workerId}-${gen}`;
    this.exec = fakeExecutor({
      now: () => this.clock.now(),
      owner: this.key,
      cooperativeCancel: (run) => model.cooperative.get(run.spec.taskId) ?? false,
      onFinish: (run, outcome) => {
        if (outcome.type !== 'result' || outcome.status !== 'SUCCESS') return;
        const ws = this.disk.workspaces.get(run.spec.sessionId);
        if (!ws) model.violation(`${this.key} ran task ${run.spec.taskId} of session ${run.spec.sessionId}, whose workspace is gone`);
        else ws.add(`out-${run.spec.taskId}`);
        model.filesWritten.set(run.spec.sessionId, [...(model.filesWritten.get(run.spec.sessionId) ?? []), `out-${run.spec.taskId}`]);
      },
    });
    const task = taskMachine.provide({
      actors: { executor: this.exec.logic },
      actions: { emitUpdate: ({ context }: { context: { sessionId: string; taskId: string } }, p: { update: TaskUpdate }) => this.up(encodeTaskUpdateMessage(context.sessionId, context.taskId, p.update)) },
    });
    const session = sessionMachine.provide({
      actors: {
        task,
        prepareWorkspace: this.prepareWorkspace(),
        releaseWorkspace: this.releaseWorkspace(),
        persist: this.persist(),
        warmSupervisor: supervisorMachine.provide({ actors: { child: this.countedInterpreter(this.warm, 'warm interpreter') } }),
        interpreterSupervisor: supervisorMachine.provide({ actors: { child: this.countedInterpreter(this.interpreters, 'stateful interpreter') } }),
      },
    });
    const link = coordinatorLinkMachine.provide({ actors: { register: this.register(), heartbeats: this.heartbeats(), taskStream: this.taskStream(), deregister: this.deregister() } });
    const machine = workerMachine.provide({
      actors: {
        sessionSupervisor: supervisorMachine.provide({ actors: { child: session } }),
        discardSession: this.discardSession(),
        linkSupervisor: supervisorMachine.provide({ actors: { child: link } }),
        poolSupervisor: supervisorMachine.provide({ actors: { child: fromCallback(() => () => {}) } }),
      },
    });
    // Adoption, as src/worker/main.ts does it: every description on disk (this model has no second process to hold a lock).
    const adopt = [...disk.descriptions.keys()].sort().map((id) => JSON.parse(disk.descriptions.get(id)!) as SessionDescription);
    this.actor = createActor(machine, {
      systemId: 'worker',
      clock,
      inspect: (ev) => this.inspect(ev),
      input: {
        workerId,
        maxSessions: MODEL.maxSessions,
        drainTimeoutMs: MODEL.drainTimeoutMs,
        adopt,
        link: { intensity: { maxRestarts: 5, windowMs: 60_000 }, backoff: MODEL.linkBackoff, shutdownTimeoutMs: 2_000 },
        sessions: { intensity: { maxRestarts: 3, windowMs: 60_000 }, backoff: MODEL.sessionBackoff },
        pool: { intensity: { maxRestarts: 5, windowMs: 60_000 }, backoff: { initialMs: 1_000, maxMs: 30_000, factor: 2 } },
        warm: { intensity: { maxRestarts: 3, windowMs: 60_000 }, backoff: { initialMs: 500, maxMs: 10_000, factor: 2 } },
        interpreter: { intensity: { maxRestarts: 5, windowMs: 60_000 }, backoff: { initialMs: 250, maxMs: 10_000, factor: 2 } },
        seed: 1_000 * gen + workerId.length,
        faults: true,
      },
    });
    this.actor.on('coordinator.reply', (e) => this.up(encodeReply(e.reply)));
    this.actor.on('session.report', (e) => this.up(encodeReportMessage(e.report)));
    this.actor.on('task.error', (e) => this.up(encodeTaskUpdateMessage(e.sessionId, e.taskId, { type: 'outcome', outcome: { type: 'error', error: e.error } })));
    this.actor.on('worker.warning', (e) => model.noteWarning(this.key, e.message, e.details));
    this.actor.subscribe({ error: (err) => this.errors.push(err) });
    this.actor.start();
  }

  private inspect(ev: InspectionEvent): void {
    this.model.noteFailedActor(this.key, ev);
  }

  /** Writes on the task stream, as src/worker/uplink.ts: with no stream open the message is dropped. */
  up(msg: WorkerMessage): void {
    this.uplink?.up(msg);
  }

  snapshot(): WorkerSnapshot {
    return this.actor.getSnapshot();
  }

  private prepareWorkspace() {
    return fromPromise<PreparedWorkspace, PrepareInput>(async ({ input }) => {
      const id = input.description.sessionId;
      this.closedWriters.delete(id);
      const onDisk = this.disk.descriptions.get(id);
      let d = input.description;
      if (onDisk) d = JSON.parse(onDisk) as SessionDescription;
      else this.disk.descriptions.set(id, JSON.stringify(d));
      if (!this.disk.workspaces.has(id)) this.disk.workspaces.set(id, new Set(['.venv']));
      return { workspacePath: `/base/${this.workerId}/${id}`, description: d, atMs: this.clock.now() };
    });
  }

  private releaseWorkspace() {
    return fromPromise<void, ReleaseInput>(async ({ input }) => {
      if (!input.remove) return;
      this.closedWriters.add(input.sessionId);
      this.disk.workspaces.delete(input.sessionId);
      this.disk.descriptions.delete(input.sessionId);
      this.disk.removed.push(input.sessionId);
      this.model.noteRemoved(this, input.sessionId);
    });
  }

  /** Sessions removed without an actor (restarting, or given up on), as session-actors.ts `discardSession`. */
  private discardSession() {
    return fromPromise<void, { sessionId: string }>(async ({ input }) => {
      this.closedWriters.add(input.sessionId);
      this.disk.workspaces.delete(input.sessionId);
      this.disk.descriptions.delete(input.sessionId);
      this.disk.removed.push(input.sessionId);
      this.model.noteRemoved(this, input.sessionId);
    });
  }

  /** Live warm interpreters, by session: never more than one per session. */
  readonly warm = new Map<string, number>();
  /** Live stateful interpreters (python_exec), by session: never more than one per session. */
  readonly interpreters = new Map<string, number>();

  /** A session's interpreter (a long-lived Python process in the real worker): it only counts itself. */
  private countedInterpreter(live: Map<string, number>, what: string) {
    return fromCallback<EventObject, { sessionId: string }>(({ input }) => {
      const n = (live.get(input.sessionId) ?? 0) + 1;
      live.set(input.sessionId, n);
      if (n > 1) this.model.violation(`${this.key} runs ${n} ${what}s for session ${input.sessionId}`);
      return () => {
        const left = (live.get(input.sessionId) ?? 1) - 1;
        if (left > 0) live.set(input.sessionId, left);
        else live.delete(input.sessionId);
      };
    });
  }

  private persist() {
    // Writes at once; a save carrying metadata changes is confirmed after the write, as the real writer does.
    return fromCallback<DescriptionSave, { sessionId: string }>(({ receive, sendBack }) => {
      receive((e) => {
        if (e.type !== 'description.save') return;
        if (!this.closedWriters.has(e.description.sessionId)) this.disk.descriptions.set(e.description.sessionId, JSON.stringify(e.description));
        if (e.requestIds.length > 0) sendBack({ type: 'description.saved', requestIds: e.requestIds, error: null });
      });
    });
  }

  private register() {
    return fromPromise<LinkRegistration, { workerId: string; attempt: number; sessions: SessionReport[] }>(
      ({ input }) =>
        new Promise<LinkRegistration>((resolve, reject) => {
          const sessions = reportsOverTheWire(input.workerId, input.sessions);
          const back = (what: string, fn: () => void) => this.model.net.send({ to: { kind: 'worker', proc: this }, what, run: fn });
          this.model.net.send({
            to: { kind: 'coordinator' },
            what: `${this.key} registers with ${sessions.length} sessions`,
            run: () => {
              const answer = this.model.coordinator!.register(this, sessions);
              back(`registration answer to ${this.key}`, () => (answer.ok ? resolve({ registrationId: answer.registrationId, heartbeatIntervalMs: MODEL.heartbeatIntervalMs, atMs: this.clock.now() }) : reject(new Error(answer.message))));
            },
            dropped: () => back(`registration failure to ${this.key}`, () => reject(new Error('UNAVAILABLE: the coordinator is not running'))),
          });
        }),
    );
  }

  private heartbeats() {
    return fromCallback<EventObject, { workerId: string; registrationId: string; intervalMs: number }>(({ input, sendBack }) => {
      let failures = 0;
      let stopped = false;
      const back = (fn: () => void) => this.model.net.send({ to: { kind: 'worker', proc: this }, what: `heartbeat answer to ${this.key}`, run: fn });
      const fail = (reason: string) => sendBack({ type: 'link.failed', reason } satisfies CoordinatorLinkEvent);
      let timer: unknown;
      const beat = () => {
        if (stopped) return;
        timer = this.clock.setTimeout(beat, input.intervalMs);
        this.model.net.send({
          to: { kind: 'coordinator' },
          what: `${this.key} heartbeat`,
          run: () => {
            const c = this.model.coordinator!;
            const unknown = c.sendKnown({ type: 'worker.heartbeat', workerId: input.workerId, registrationId: input.registrationId, atMs: c.now() });
            back(() => {
              if (stopped) return;
              if (unknown) fail('heartbeat failed: NOT_FOUND: register again');
              else failures = 0;
            });
          },
          dropped: () =>
            back(() => {
              if (stopped) return;
              failures += 1;
              if (failures >= 2) fail('heartbeat failed: UNAVAILABLE');
            }),
        });
      };
      timer = this.clock.setTimeout(beat, input.intervalMs);
      return () => {
        stopped = true;
        this.clock.clearTimeout(timer as never);
      };
    });
  }

  private taskStream() {
    return fromCallback<EventObject, { workerId: string; registrationId: string }>(({ input, sendBack }) => {
      const pipe = this.model.openPipe(this, input.registrationId);
      let closed = false;
      this.uplink = pipe;
      const detach = () => {
        if (this.uplink === pipe) this.uplink = undefined;
      };
      pipe.onCommand = (msg) => {
        if (closed) return;
        sendBack(decodeCommand(msg, this.clock.now()));
      };
      pipe.onWorkerClose = (reason) => {
        if (closed) return;
        closed = true;
        detach();
        sendBack({ type: 'link.failed', reason: `task stream failed: ${reason}` } satisfies CoordinatorLinkEvent);
      };
      // The hello: the coordinator's front door opens the stream for this registration.
      this.model.net.send({
        to: { kind: 'coordinator' },
        what: `${this.key} opens stream ${pipe.id}`,
        run: () => this.model.coordinator!.openStream(pipe),
        dropped: () => pipe.closeFromCoordinator('UNAVAILABLE: the coordinator is not running'),
      });
      // As the real uplink does (src/worker/uplink.ts): the reports made while no stream was open go now.
      for (const r of Object.values(this.snapshot().context.held)) this.up(encodeReportMessage(r));
      return () => {
        closed = true;
        detach();
        pipe.closeFromWorker('the worker closed its stream');
      };
    });
  }

  private deregister() {
    return fromPromise<void, { workerId: string; registrationId: string; reason: string }>(
      ({ input }) =>
        new Promise<void>((resolve) => {
          if (!input.registrationId) return resolve();
          const back = () => this.model.net.send({ to: { kind: 'worker', proc: this }, what: `deregistration answer to ${this.key}`, run: () => resolve() });
          this.model.net.send({
            to: { kind: 'coordinator' },
            what: `${this.key} deregisters`,
            run: () => {
              const c = this.model.coordinator!;
              c.sendKnown({ type: 'worker.deregister', workerId: input.workerId, registrationId: input.registrationId, reason: input.reason, atMs: c.now() });
              back();
            },
            dropped: back,
          });
        }),
    );
  }

  kill(): void {
    this.alive = false;
    this.actor.stop();
  }
}

// ---------------------------------------------------------------- the model

/** What the client sees of a task: the outcomes the coordinator's task.update gave it. */
export interface ClientTask {
  taskId: string;
  sessionId: string;
  /** The coordinator that accepted it (its followers die with it). */
  coordinatorGen: number;
  outcomes: string[];
}

/** One operation of a generated run. */
export type Op =
  | { op: 'create'; worker: number | null; idle: boolean }
  | { op: 'submit'; session: number }
  | { op: 'finish'; pick: number; kind: 'SUCCESS' | 'FAILURE' | 'INTERNAL' | 'CANCELLED' }
  | { op: 'cancel'; pick: number; cooperative: boolean }
  | { op: 'destroy'; session: number; force: boolean }
  | { op: 'metadata'; session: number; value: number }
  | { op: 'crashSession'; session: number }
  | { op: 'restartWorker'; worker: number; graceful: boolean; downMs: number }
  | { op: 'stallWorker'; worker: number; ms: number }
  | { op: 'restartCoordinator'; downMs: number }
  | { op: 'advance'; ms: number }
  | { op: 'snapshot' };

export function formatOp(o: Op): string {
  const { op, ...rest } = o;
  const args = Object.entries(rest)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return args ? `${op}(${args})` : `${op}()`;
}

/** A property of the model broke: the message says which, with the run's operations and trace. */
export class ModelFailure extends Error {}

const describeOutcome = (o: TaskOutcome): string => (o.type === 'error' ? `error:${o.error.code}` : o.status);

export const MAX_SESSIONS_PER_RUN = 6;

export class ModelSystem {
  readonly net = new Network(this);
  now = BASE_MS;
  coordinator: CoordinatorProcess | undefined;
  private coordinatorGens = 0;
  readonly workers = new Map<string, WorkerProcess>();
  /** Every worker process ever started (dead ones too: their errors count). */
  readonly processes: WorkerProcess[] = [];
  readonly coordinators: CoordinatorProcess[] = [];
  readonly disks = new Map<string, Disk>();
  registrations = 0;
  private pipes = 0;
  private requests = 0;
  private taskCounter = 0;
  readonly cooperative = new Map<string, boolean>();
  readonly filesWritten = new Map<string, string[]>();
  // what the client did and saw
  readonly sessions: { id: string; placedOn: string }[] = [];
  readonly tasks = new Map<string, ClientTask>();
  readonly destroyRequested = new Set<string>();
  /** Every metadata change asked for, in order, with the answers it got (one, once the system quiesced). */
  readonly metadataCalls: MetadataCall[] = [];
  private readonly answerSubs: { unsubscribe(): void }[] = [];
  readonly refusedCreates = new Set<string>();
  readonly violations: string[] = [];
  readonly warnings: string[] = [];
  readonly log: string[] = [];
  readonly ops: Op[] = [];
  /** Called at each `snapshot` operation (the snapshots property walks the tree there), and mid-flight after it. */
  onSnapshotPoint: (() => void) | undefined;
  /** How many more message deliveries call onSnapshotPoint too, while effects are under way. */
  private snapshotsInFlight = 0;

  constructor(
    readonly workerIds: readonly string[],
  ) {}

  trace(line: string): void {
    this.log.push(`[+${((this.now - BASE_MS) / 1000).toFixed(3)}s] ${line}`);
  }

  violation(message: string): void {
    this.violations.push(message);
    this.trace(`VIOLATION: ${message}`);
  }

  noteWarning(who: string, message: string, details: Record<string, string>): void {
    const line = `${who} warns: ${message} ${JSON.stringify(details)}`;
    this.warnings.push(line);
    this.trace(line);
    // A machine that crashed, or two workers claiming one session (each worker has its own disk here), is a bug.
    if (/crashed/.test(message) && !/session actor/.test(message)) this.violation(line);
    if (/reported session/.test(message)) this.violation(line);
  }

  // ------------------------------------------------------------ processes

  async start(): Promise<void> {
    this.startCoordinator();
    for (const id of this.workerIds) this.startWorker(id);
    await this.advance(1_500);
  }

  private clock(): SimulatedClock {
    const c = new SimulatedClock();
    c.set(this.now);
    return c;
  }

  startCoordinator(): void {
    const c = new CoordinatorProcess(this, ++this.coordinatorGens, this.clock());
    this.coordinator = c;
    this.coordinators.push(c);
    this.trace(`coordinator#${c.gen} started`);
  }

  stopCoordinator(): void {
    const c = this.coordinator;
    if (!c) return;
    this.coordinator = undefined;
    c.stop();
    // Its followers' streams broke: the client saw those tasks end with UNAVAILABLE.
    for (const t of this.tasks.values()) if (t.coordinatorGen === c.gen && t.outcomes.length === 0) t.outcomes.push('coordinator-lost');
    this.trace(`coordinator#${c.gen} stopped`);
  }

  startWorker(workerId: string): WorkerProcess {
    const gen = this.processes.filter((p) => p.workerId === workerId).length + 1;
    let disk = this.disks.get(workerId);
    if (!disk) {
      disk = new Disk();
      this.disks.set(workerId, disk);
    }
    const proc = new WorkerProcess(this, workerId, gen, this.clock(), disk);
    this.workers.set(workerId, proc);
    this.processes.push(proc);
    this.trace(`${proc.key} started, adopting [${proc.snapshot().context.live.join(' ')}]`);
    return proc;
  }

  openPipe(proc: WorkerProcess, registrationId: string): Pipe {
    return new Pipe(this, `stream-${++this.pipes}`, proc, registrationId);
  }

  requestId(): string {
    return `req-${++this.requests}`;
  }

  // ------------------------------------------------------------ observation

  /**
   * An actor that failed must not leave its children running (XState does not stop them; the
   * parent that removes it does, with stopOrphansOf): checked once the parent has handled the
   * `xstate.error.actor.*` event whose source is the failed actor.
   */
  noteFailedActor(who: string, ev: InspectionEvent): void {
    if (ev.type !== '@xstate.event' || !ev.event.type.startsWith('xstate.error.actor.') || !ev.sourceRef) return;
    const failed = ev.sourceRef as AnyActorRef;
    const children = (failed.getSnapshot() as { children?: Record<string, AnyActorRef | undefined> }).children ?? {};
    const watched = Object.entries(children).filter(([, c]) => c && c.getSnapshot().status === 'active');
    if (!watched.length) return;
    queueMicrotask(() => {
      const orphans = watched.filter(([, c]) => c!.getSnapshot().status === 'active');
      if (orphans.length) this.violation(`${who}: ${failed.id} failed and left [${orphans.map(([id]) => id).join(' ')}] running (orphaned actors)`);
    });
  }

  inspectCoordinator(proc: CoordinatorProcess, ev: InspectionEvent): void {
    this.noteFailedActor(`coordinator#${proc.gen}`, ev);
    if (ev.type === '@xstate.actor') {
      const ref = ev.actorRef as AnyActorRef & { src?: unknown };
      if (ref.src === 'taskProxy') ref.on('task.update', (e: EventObject) => this.noteTaskUpdate(proc, e as TaskProxyEmitted));
      if (ref.src === 'sessionProxy') {
        ref.subscribe({
          complete: () => {
            const out = ref.getSnapshot().output as SessionProxyOutput | undefined;
            if (!out) return;
            if (out.end === 'refused') this.refusedCreates.add(out.sessionId);
            this.trace(`coordinator#${proc.gen}: proxy of ${out.sessionId} ended ${out.end}${out.error ? ` (${out.error.code}: ${out.error.message})` : ''}${out.movedTo ? ` to ${out.movedTo}` : ''}`);
          },
        });
      }
      return;
    }
    if (ev.type === '@xstate.event' && (ev.actorRef as AnyActorRef).id.startsWith('shard:') && (ev.event.type === 'worker.lost' || ev.event.type === 'worker.online')) {
      const e = ev.event as { type: string; registrationId: string; reason?: string };
      this.trace(`coordinator#${proc.gen}: ${(ev.actorRef as AnyActorRef).id} hears ${e.type} ${e.registrationId}${e.reason ? ` (${e.reason})` : ''}`);
    }
  }

  private noteTaskUpdate(proc: CoordinatorProcess, e: TaskProxyEmitted): void {
    if (e.update.type !== 'outcome') return;
    const t = this.tasks.get(e.taskId);
    const what = describeOutcome(e.update.outcome);
    this.trace(`coordinator#${proc.gen}: task ${e.taskId} ended ${what}`);
    if (!t) return this.violation(`an outcome (${what}) for task ${e.taskId}, which no client submitted`);
    if (t.coordinatorGen !== proc.gen) this.violation(`task ${e.taskId}, accepted by coordinator#${t.coordinatorGen}, ended at coordinator#${proc.gen}`);
    t.outcomes.push(what);
  }

  noteRemoved(proc: WorkerProcess, sessionId: string): void {
    this.trace(`${proc.key} removed the workspace of ${sessionId}`);
    if (!this.destroyRequested.has(sessionId) && !this.refusedCreates.has(sessionId)) {
      this.violation(`${proc.key} removed the files of session ${sessionId}, which was neither destroyed nor refused at its creation`);
    }
  }

  // ------------------------------------------------------------ time

  private liveClocks(): SimulatedClock[] {
    const out: SimulatedClock[] = [];
    if (this.coordinator?.alive) out.push(this.coordinator.clock);
    for (const p of this.workers.values()) if (p.alive && !p.frozen) out.push(p.clock);
    return out;
  }

  private static nextDue(clock: SimulatedClock): number {
    let next = Infinity;
    for (const t of (clock as unknown as { timeouts: Map<number, { start: number; timeout: number }> }).timeouts.values()) next = Math.min(next, t.start + t.timeout);
    return next;
  }

  /** Delivers messages and runs microtasks until nothing moves. */
  async settle(): Promise<void> {
    for (let i = 0; i < 20_000; i++) {
      await flush();
      if (this.net.deliverBatch() > 0) {
        // Right after a delivery, before microtasks run: promise actors are still pending.
        if (this.snapshotsInFlight > 0) {
          this.snapshotsInFlight -= 1;
          this.onSnapshotPoint?.();
        }
        continue;
      }
      await flush();
      if (this.net.deliverBatch() === 0) return;
    }
    throw new ModelFailure('the system never settled: messages kept flowing (a livelock)');
  }

  /** Moves every running clock together to each next deadline in turn (a stalled worker's stands still). */
  async advance(ms: number): Promise<void> {
    const target = this.now + ms;
    for (let guard = 0; ; guard++) {
      if (guard > 50_000) throw new ModelFailure('time could not advance: timers kept firing at the same instant');
      await this.settle();
      const next = Math.min(...this.liveClocks().map(ModelSystem.nextDue));
      if (!(next <= target)) break;
      this.now = Math.max(this.now, next);
      for (const c of this.liveClocks()) c.set(this.now);
    }
    this.now = target;
    for (const c of this.liveClocks()) c.set(target);
    await this.settle();
  }

  // ------------------------------------------------------------ the client

  private proxy(sessionId: string): SessionProxyActor | undefined {
    const p = this.coordinator?.actor.system.get(sessionProxyIdOf(sessionId)) as SessionProxyActor | undefined;
    return p && p.getSnapshot().status === 'active' ? p : undefined;
  }

  private sessionAt(i: number): string | undefined {
    return this.sessions.length ? this.sessions[i % this.sessions.length]!.id : undefined;
  }

  private workerAt(i: number): WorkerProcess {
    return this.workers.get(this.workerIds[i % this.workerIds.length]!)!;
  }

  liveRuns(): ExecutorRun[] {
    const out: ExecutorRun[] = [];
    for (const p of this.workers.values()) if (p.alive && !p.frozen) out.push(...p.exec.active());
    return out;
  }

  async apply(o: Op): Promise<void> {
    this.ops.push(o);
    this.trace(`op ${this.ops.length - 1}: ${formatOp(o)}`);
    const c = this.coordinator!;
    switch (o.op) {
      case 'create': {
        if (this.sessions.length >= MAX_SESSIONS_PER_RUN) break;
        const id = `s${this.sessions.length + 1}`;
        const workerId = o.worker === null ? '' : this.workerIds[o.worker % this.workerIds.length]!;
        const requestId = this.requestId();
        const d = description(id, { createdAtMs: c.now(), lastActivityMs: c.now(), idleTimeoutMs: o.idle ? 20_000 : 0 });
        const answer = askNow(c.actor, { type: 'session.create', requestId, workerId, description: d, atMs: c.now() }, ['session.placed', 'session.rejected'], (e) => {
          const a = e as CoordinatorEmitted;
          return (a.type === 'session.placed' || a.type === 'session.rejected') && a.requestId === requestId ? a : undefined;
        });
        if (answer.type === 'session.placed') {
          this.sessions.push({ id, placedOn: answer.workerId });
          this.trace(`${id} placed on ${answer.workerId}`);
        } else this.trace(`create refused: ${answer.error.code} ${answer.error.message}`);
        break;
      }
      case 'submit': {
        const s = this.sessionAt(o.session);
        const proxy = s ? this.proxy(s) : undefined;
        if (!s || !proxy) break;
        const taskId = `t${++this.taskCounter}`;
        const requestId = this.requestId();
        const answer = askNow(proxy, { type: 'task.submit', requestId, spec: taskSpec(taskId, s), followerId: `f-${taskId}`, atMs: c.now() }, ['task.accepted', 'task.rejected'], (e) => {
          const a = e as SessionProxyEmitted;
          return (a.type === 'task.accepted' || a.type === 'task.rejected') && a.requestId === requestId ? a : undefined;
        });
        if (answer.type === 'task.accepted') {
          if (answer.duplicate) this.violation(`a fresh task id ${taskId} was answered as a duplicate of ${answer.taskId}`);
          this.tasks.set(taskId, { taskId, sessionId: s, coordinatorGen: c.gen, outcomes: [] });
          this.trace(`${taskId} accepted by ${s}`);
        } else this.trace(`${taskId} rejected by ${s}: ${answer.error.code}`);
        break;
      }
      case 'finish': {
        const runs = this.liveRuns();
        const run = runs[o.pick % Math.max(1, runs.length)];
        if (!run) break;
        if (o.pick % 2 === 0) run.progress(50);
        run.finish(o.kind);
        this.trace(`${run.owner} finished ${run.spec.taskId} ${o.kind}`);
        break;
      }
      case 'cancel': {
        const live = [...this.tasks.values()].filter((t) => t.outcomes.length === 0);
        const t = live[o.pick % Math.max(1, live.length)];
        const proxy = t ? this.proxy(t.sessionId) : undefined;
        if (!t || !proxy) break;
        this.cooperative.set(t.taskId, o.cooperative);
        proxy.send({ type: 'task.cancel', requestId: this.requestId(), taskId: t.taskId, reason: 'the client cancelled', atMs: c.now() });
        break;
      }
      case 'destroy': {
        const s = this.sessionAt(o.session);
        const proxy = s ? this.proxy(s) : undefined;
        if (!s || !proxy) break;
        const requestId = this.requestId();
        let refusal = '';
        const sub = proxy.on('destroy.answered', (e) => {
          if (e.requestId === requestId) refusal = `${e.error.code}: ${e.error.message}`;
        });
        proxy.send({ type: 'session.destroy', requestId, force: o.force, atMs: c.now() });
        sub.unsubscribe();
        if (refusal) this.trace(`destroy of ${s} refused: ${refusal}`);
        else this.destroyRequested.add(s);
        break;
      }
      case 'metadata': {
        const s = this.sessionAt(o.session);
        const proxy = s ? this.proxy(s) : undefined;
        if (!s || !proxy) break;
        const requestId = this.requestId();
        const call: MetadataCall = { sessionId: s, value: String(o.value), answers: [], coordinator: this.coordinator! };
        this.metadataCalls.push(call);
        // Answered now (a refusal) or once the worker saved it; every call must end, once.
        const sub = proxy.on('metadata.answered', (e: Extract<SessionProxyEmitted, { type: 'metadata.answered' }>) => {
          if (e.requestId !== requestId) return;
          call.answers.push(e.error ? e.error.code : 'ok');
          this.trace(`metadata of ${s} k=${o.value}: ${e.error ? `${e.error.code}: ${e.error.message}` : 'ok'}`);
        });
        this.answerSubs.push(sub);
        proxy.send({ type: 'metadata.put', requestId, metadata: { k: call.value }, merge: true, atMs: c.now() });
        break;
      }
      case 'crashSession': {
        const s = this.sessionAt(o.session);
        if (!s) break;
        for (const p of this.workers.values()) {
          if (!p.alive || p.frozen) continue;
          const ref = p.actor.system.get(sessionChildId(s)) as AnyActorRef | undefined;
          if (!ref) continue;
          ref.send({ type: 'session.fault' });
          this.trace(`${p.key}: session actor of ${s} crashed`);
        }
        break;
      }
      case 'restartWorker': {
        const proc = this.workerAt(o.worker);
        if (o.graceful) {
          proc.actor.send({ type: 'worker.shutdown', atMs: proc.clock.now() });
          let waited = 0;
          while (proc.snapshot().status === 'active' && waited < 60_000) {
            await this.advance(1_000);
            waited += 1_000;
          }
          if (proc.snapshot().status === 'active') this.violation(`${proc.key} did not finish draining within 60 s`);
          else this.trace(`${proc.key} drained in ${waited} ms${proc.snapshot().context.escalation ? ` (${proc.snapshot().context.escalation})` : ''}`);
        }
        proc.kill();
        this.trace(`${proc.key} ${o.graceful ? 'exited' : 'was killed'}`);
        if (o.downMs) await this.advance(o.downMs);
        this.startWorker(proc.workerId);
        break;
      }
      case 'stallWorker': {
        const proc = this.workerAt(o.worker);
        proc.frozen = true;
        this.trace(`${proc.key} stalls`);
        await this.advance(o.ms);
        proc.frozen = false;
        proc.clock.set(this.now);
        this.trace(`${proc.key} resumes`);
        break;
      }
      case 'restartCoordinator': {
        this.stopCoordinator();
        if (o.downMs) await this.advance(o.downMs);
        this.startCoordinator();
        break;
      }
      case 'advance':
        await this.advance(o.ms);
        break;
      case 'snapshot':
        this.onSnapshotPoint?.();
        this.snapshotsInFlight = 6;
        break;
    }
    await this.settle();
    this.checkStep();
  }

  // ------------------------------------------------------------ invariants

  /** Cheap invariants, after every operation. */
  checkStep(): void {
    const problems: string[] = [...this.violations];
    for (const t of this.tasks.values()) if (t.outcomes.length > 1) problems.push(`task ${t.taskId} of ${t.sessionId} ended ${t.outcomes.length} times: ${t.outcomes.join(', ')}`);
    for (const p of this.workers.values()) {
      const bySession = new Map<string, string[]>();
      for (const r of p.exec.active()) bySession.set(r.spec.sessionId, [...(bySession.get(r.spec.sessionId) ?? []), r.spec.taskId]);
      for (const [s, ids] of bySession) if (ids.length > 1) problems.push(`${p.key} runs ${ids.join(' and ')} of ${s} at once`);
    }
    for (const c of this.coordinators) for (const e of c.errors) problems.push(`coordinator#${c.gen} failed: ${String(e)}`);
    for (const p of this.processes) for (const e of p.errors) problems.push(`${p.key} failed: ${String(e)}`);
    if (problems.length) throw new ModelFailure(problems.join('\n'));
  }

  /** Finishes what runs and lets time pass (heartbeat, create, destroy and cancel deadlines). */
  async quiesce(): Promise<void> {
    this.trace('quiescing');
    for (let round = 0; round < 20; round++) {
      for (const r of this.liveRuns()) r.finish('SUCCESS');
      await this.advance(5_000);
    }
    this.checkStep();
  }

  /** The coordinator's view, as ActorCoordinatorPort.listSessions shows it. */
  async coordinatorView(): Promise<SessionView[]> {
    const c = this.coordinator!;
    return new ActorCoordinatorPort(c.actor, { idleTimeoutMs: 0, settleBoundMs: 1, results: c.results }).listSessions();
  }

  /** Invariants once the system has quiesced: every task ended once, everyone is connected, the views agree, the files are there. */
  async checkQuiesced(): Promise<void> {
    const problems: string[] = [];
    for (const t of this.tasks.values()) if (t.outcomes.length !== 1) problems.push(`task ${t.taskId} of ${t.sessionId} ended ${t.outcomes.length} times${t.outcomes.length ? `: ${t.outcomes.join(', ')}` : ''}`);
    const c = this.coordinator!;
    for (const p of this.workers.values()) {
      const link = p.actor.system.get('link') as AnyActorRef | undefined;
      const linkSnap = link?.getSnapshot() as { value?: unknown; context?: { registrationId?: string } } | undefined;
      const shard = c.actor.system.get(shardIdOf(p.workerId)) as AnyActorRef | undefined;
      const shardCtx = (shard?.getSnapshot() as ShardSnapshot | undefined)?.context;
      if (linkSnap?.value !== 'connected') problems.push(`${p.key}'s link is ${JSON.stringify(linkSnap?.value ?? 'gone')}, not connected`);
      else if (!shardCtx?.online || shardCtx.registration?.registrationId !== linkSnap.context?.registrationId) {
        problems.push(`${p.key} is connected as ${linkSnap.context?.registrationId} but coordinator#${c.gen} has its shard ${shardCtx ? `${shardCtx.online ? 'online' : 'offline'} as ${shardCtx.registration?.registrationId ?? 'none'}` : 'missing'}`);
      }
      for (const [id, r] of Object.entries(p.snapshot().context.held)) {
        if (!p.disk.workspaces.has(id)) problems.push(`${p.key} holds ${id} (${r.state}) but its workspace is not on disk`);
      }
      const onDisk = [...p.disk.descriptions.keys()].sort();
      const held = Object.keys(p.snapshot().context.held).sort();
      if (JSON.stringify(onDisk) !== JSON.stringify(held)) problems.push(`${p.key} holds [${held.join(' ')}] but its disk has [${onDisk.join(' ')}]`);
      for (const id of p.warm.keys()) if (!(id in p.snapshot().context.held)) problems.push(`${p.key} runs a warm interpreter for ${id}, which it does not hold`);
      for (const id of p.interpreters.keys()) if (!(id in p.snapshot().context.held)) problems.push(`${p.key} runs a stateful interpreter for ${id}, which it does not hold`);
      for (const id of p.snapshot().context.live) {
        const s = p.actor.system.get(sessionChildId(id)) as AnyActorRef | undefined;
        const ctx = (s?.getSnapshot() as SessionSnapshot | undefined)?.context;
        if (ctx && (ctx.current || ctx.queue.length)) problems.push(`${p.key}'s session ${id} still has tasks [${[ctx.current, ...ctx.queue].filter(Boolean).join(' ')}]`);
      }
    }
    // Files survive every restart that is not a destroy.
    for (const [sessionId, files] of this.filesWritten) {
      if (this.destroyRequested.has(sessionId) || this.refusedCreates.has(sessionId)) continue;
      const home = [...this.disks.values()].find((d) => d.workspaces.has(sessionId));
      if (!home) problems.push(`the files of ${sessionId} (${files.join(' ')}) are gone, yet it was never destroyed`);
      else for (const f of files) if (!home.workspaces.get(sessionId)!.has(f)) problems.push(`${sessionId} lost its file ${f}`);
    }
    // Every metadata change ended once, and none confirmed was lost: a session's value is its last
    // confirmed one, or one of the changes after it that failed (those may or may not have been saved).
    for (const call of this.metadataCalls) if (call.answers.length === 0 && !call.coordinator.alive) call.answers.push('coordinator stopped');
    for (const call of this.metadataCalls) if (call.answers.length !== 1) problems.push(`metadata change k=${call.value} of ${call.sessionId} got ${call.answers.length} answers: ${call.answers.join(', ')}`);
    const heldNow = new Map<string, Record<string, string>>();
    for (const p of this.workers.values()) for (const [id, r] of Object.entries(p.snapshot().context.held)) heldNow.set(id, r.description.metadata);
    for (const sessionId of new Set(this.metadataCalls.map((m) => m.sessionId))) {
      const metadata = heldNow.get(sessionId);
      if (!metadata || this.destroyRequested.has(sessionId)) continue;
      const calls = this.metadataCalls.filter((m) => m.sessionId === sessionId);
      const lastOk = calls.map((m) => m.answers[0]).lastIndexOf('ok');
      const allowed = new Set([lastOk >= 0 ? calls[lastOk]!.value : undefined, ...calls.slice(lastOk + 1).filter((m) => m.answers[0] !== 'ok').map((m) => m.value)]);
      if (!allowed.has(metadata.k)) problems.push(`${sessionId} has metadata k=${metadata.k ?? 'none'}, but its last confirmed change was k=${lastOk >= 0 ? calls[lastOk]!.value : 'none'}`);
    }
    // The coordinator's view equals the workers'.
    const norm = (state: string) => (state === 'BUSY' ? 'READY' : state);
    const theirs: Record<string, { workerId: string; state: string; metadata: Record<string, string> }> = {};
    for (const p of this.workers.values()) {
      for (const [id, r] of Object.entries(p.snapshot().context.held)) theirs[id] = { workerId: p.workerId, state: norm(r.state), metadata: r.description.metadata };
    }
    const ours: Record<string, { workerId: string; state: string; metadata: Record<string, string> }> = {};
    for (const v of await this.coordinatorView()) {
      ours[v.sessionId] = { workerId: v.workerId, state: norm(v.state), metadata: v.metadata };
      if (v.unreachableSinceMs !== 0) problems.push(`coordinator#${c.gen} still shows ${v.sessionId} unreachable since ${v.unreachableSinceMs}`);
    }
    for (const id of [...new Set([...Object.keys(theirs), ...Object.keys(ours)])].sort()) {
      const a = ours[id];
      const b = theirs[id];
      if (JSON.stringify(a) !== JSON.stringify(b)) problems.push(`views differ on ${id}: coordinator#${c.gen} ${JSON.stringify(a ?? 'nothing')}, worker ${JSON.stringify(b ?? 'nothing')}`);
    }
    if (problems.length) throw new ModelFailure(problems.join('\n'));
  }

  /** The run so far, for a failure message. */
  report(maxTrace = 200): string {
    const lines = this.log.length > maxTrace ? [`... ${this.log.length - maxTrace} earlier lines`, ...this.log.slice(-maxTrace)] : this.log;
    return [`workers: ${this.workerIds.join(', ')}`, 'operations:', ...this.ops.map((o, i) => `  ${i}. ${formatOp(o)}`), 'trace:', ...lines.map((l) => `  ${l}`)].join('\n');
  }

  /** Stops every process. */
  stop(): void {
    this.coordinator?.stop();
    this.coordinator = undefined;
    for (const p of this.workers.values()) if (p.alive) p.kill();
  }
}

/** Runs `ops` on a fresh model, then quiesces and checks; a failure carries the operations and the trace. */
export async function runModel(workers: number, ops: Op[], options: { quiesce?: boolean; onSnapshotPoint?: (m: ModelSystem) => void } = {}): Promise<ModelSystem> {
  const m = new ModelSystem(['w1', 'w2', 'w3'].slice(0, workers));
  if (options.onSnapshotPoint) m.onSnapshotPoint = () => options.onSnapshotPoint!(m);
  let phase = 'starting';
  try {
    await m.start();
    m.checkStep();
    for (const [i, o] of ops.entries()) {
      phase = `after operation ${i} ${formatOp(o)}`;
      await m.apply(o);
    }
    if (options.quiesce !== false) {
      phase = 'while quiescing';
      await m.quiesce();
      phase = 'once quiesced';
      await m.checkQuiesced();
      options.onSnapshotPoint?.(m);
    }
    return m;
  } catch (err) {
    const what = err instanceof Error ? err.message : String(err);
    throw new ModelFailure(`${phase}:\n${what}\n\n${m.report()}`, { cause: err });
  } finally {
    m.stop();
  }
}

// ---------------------------------------------------------------- generators

export function opArb(options: { snapshots?: boolean } = {}): fc.Arbitrary<Op> {
  const arbs: { weight: number; arbitrary: fc.Arbitrary<Op> }[] = [
    { weight: 5, arbitrary: fc.record({ op: fc.constant('create' as const), worker: fc.option(fc.nat(2), { nil: null, freq: 2 }), idle: fc.boolean() }) },
    { weight: 9, arbitrary: fc.record({ op: fc.constant('submit' as const), session: fc.nat(5) }) },
    { weight: 8, arbitrary: fc.record({ op: fc.constant('finish' as const), pick: fc.nat(5), kind: fc.constantFrom('SUCCESS' as const, 'SUCCESS' as const, 'FAILURE' as const, 'INTERNAL' as const, 'CANCELLED' as const) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('cancel' as const), pick: fc.nat(5), cooperative: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('destroy' as const), session: fc.nat(5), force: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('metadata' as const), session: fc.nat(5), value: fc.nat(9) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('crashSession' as const), session: fc.nat(5) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('restartWorker' as const), worker: fc.nat(2), graceful: fc.boolean(), downMs: fc.constantFrom(0, 2_000, 10_000) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('stallWorker' as const), worker: fc.nat(2), ms: fc.constantFrom(4_000, 8_000) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('restartCoordinator' as const), downMs: fc.constantFrom(0, 3_000) }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.constantFrom(100, 1_000, 3_000, 12_000) }) },
  ];
  if (options.snapshots) arbs.push({ weight: 3, arbitrary: fc.constant({ op: 'snapshot' as const }) });
  // A counterexample prints as a script: create(worker=null idle=false), submit(session=0), ...
  return fc.oneof(...arbs).map((o) => Object.assign(o, { [fc.toStringMethod]: () => formatOp(o) }));
}

// ---------------------------------------------------------------- snapshots

/** Every actor under `root`, depth first, with its path of ids. */
export function actorTree(root: AnyActorRef, path = root.id): { path: string; ref: AnyActorRef }[] {
  const out = [{ path, ref: root }];
  const children = (root.getSnapshot() as { children?: Record<string, AnyActorRef | undefined> }).children ?? {};
  for (const [id, child] of Object.entries(children)) if (child) out.push(...actorTree(child, `${path}/${id}`));
  return out;
}

/**
 * Where `value` is not plain JSON: what JSON.stringify would drop or change (functions, class
 * instances such as Error, Map or Buffer, NaN and infinities, undefined inside arrays, cycles).
 * An undefined object property is fine: JSON leaves it out, as equality after parsing does.
 */
export function jsonProblems(value: unknown, path = '$', seen = new Set<object>()): string[] {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return [];
  if (typeof value === 'number') return Number.isFinite(value) ? [] : [`${path}: the number ${value}`];
  if (value === undefined) return [];
  if (typeof value !== 'object') return [`${path}: a ${typeof value}`];
  if (seen.has(value)) return [`${path}: a cycle`];
  const proto = Object.getPrototypeOf(value);
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return [`${path}: an instance of ${(value as object).constructor?.name ?? 'a class'}${value instanceof Error ? ` (${value.message})` : ''}`];
  seen.add(value);
  const out: string[] = [];
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      if (v === undefined) out.push(`${path}[${i}]: undefined in an array`);
      else out.push(...jsonProblems(v, `${path}[${i}]`, seen));
    });
  } else {
    for (const [k, v] of Object.entries(value)) out.push(...jsonProblems(v, `${path}.${k}`, seen));
  }
  seen.delete(value);
  return out;
}
