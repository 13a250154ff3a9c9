/**
 * Fakes and builders for the coordinator-side machines (machines/coordinator/*).
 *
 * - The one effect that talks to a worker is the connection's `workerStream` logic. The fake
 *   records every command written to it, and lets a test play the worker: reports, command
 *   replies and task updates are routed by systemId exactly as src/coordinator/streams.ts does.
 * - `coordinatorTree` provides the real machines with only the leaf effects replaced
 *   (workerStream, keepOutcome, taskIdTakenElsewhere), like provideCoordinator does.
 * - `startSystem` creates a root actor with an inspection observer that records every event
 *   sent between actors and every event any actor emits; `startHost` does the same with a
 *   small host machine as the root, for testing one machine as somebody's child (proxies and
 *   connections look each other up by systemId, so they must share a system).
 *
 * No real time: every test passes a SimulatedClock (started at T0, so no time is the 0 sentinel).
 */
import {
  createActor,
  enqueueActions,
  fromCallback,
  setup,
  SimulatedClock,
  type AnyActorLogic,
  type AnyActorRef,
  type AnyEventObject,
  type EventObject,
  type InspectionEvent,
} from 'xstate';
import { errorInfo, type ErrorCode, type ErrorInfo } from '../../machines/domain/errors.js';
import type { SessionDescription, SessionReport } from '../../machines/domain/sessions.js';
import type { TaskOutcome, TaskSpec, TaskStatus } from '../../machines/domain/tasks.js';
import { bucketMachine } from '../../machines/coordinator/bucket.machine.js';
import { coordinatorMachine, type CoordinatorInput } from '../../machines/coordinator/coordinator.machine.js';
import { sessionProxyIdOf, sessionProxyMachine, type SessionProxyInput } from '../../machines/coordinator/session-proxy.machine.js';
import { shardMachine, type Registration, type ShardInput } from '../../machines/coordinator/shard.machine.js';
import { taskProxyIdOf, taskProxyMachine } from '../../machines/coordinator/task-proxy.machine.js';
import { connectionIdOf, workerConnectionMachine, type WorkerCommandMessage, type WorkerConnectionInput } from '../../machines/coordinator/worker-connection.machine.js';
import { supervisorMachine } from '../../machines/supervisor.machine.js';

/** Where simulated time starts: far from 0, which some contexts use as "never". */
export const T0 = 1_000_000;

export function simulatedClock(start = T0): SimulatedClock {
  const clock = new SimulatedClock();
  clock.set(start);
  return clock;
}

// ---------------------------------------------------------------- domain values

export function sessionDescription(sessionId = 's1', overrides: Partial<SessionDescription> = {}): SessionDescription {
  return {
    sessionId,
    workspaceId: sessionId,
    userId: 'u1',
    tenant: 'default',
    config: { env_vars: {}, allow_network: false, language: 'python' },
    metadata: {},
    metadataVersion: 0,
    createdAtMs: T0,
    lastActivityMs: T0,
    restartedAtMs: 0,
    survivalNote: '',
    idleTimeoutMs: 0,
    ...overrides,
  };
}

export interface ReportOverrides extends Partial<Omit<SessionReport, 'description'>> {
  description?: Partial<SessionDescription>;
}

/** A worker's report on a session it holds: READY in /ws/<id> unless told otherwise. */
export function sessionReport(sessionId = 's1', overrides: ReportOverrides = {}): SessionReport {
  const { description, ...rest } = overrides;
  return { description: sessionDescription(sessionId, description), state: 'READY', workspacePath: `/ws/${sessionId}`, failureReason: '', gone: false, incarnation: 'inst-1#0', ...rest };
}

/** The report a shard gives a proxy it makes for a new session (what session.create carries). */
export function creatingReport(description: SessionDescription): SessionReport {
  return { description, state: 'INITIALIZING', workspacePath: '', failureReason: '', gone: false, incarnation: '' };
}

export function taskSpec(taskId: string, sessionId = 's1', sequence = 0): TaskSpec {
  return {
    taskId,
    sessionId,
    call: { tool: 'echo', input: { message: taskId } },
    constraints: { timeout_seconds: 30, max_memory_bytes: 0, max_output_bytes: 0, allow_network: false },
    sequence,
  };
}

/** A worker's result, with the tool's whole reply (which contexts must not keep). */
export function resultOutcome(status: TaskStatus = 'SUCCESS', finishedAtMs = T0 + 500, message = 'a large reply'): Extract<TaskOutcome, { type: 'result' }> {
  return {
    type: 'result',
    status,
    reply: { tool: 'echo', output: { message } },
    artifacts: ['artifacts/out.txt'],
    metadata: { workerId: 'w1', startedAtMs: T0 + 100, finishedAtMs, durationMs: finishedAtMs - T0 - 100, queuedMs: 100 },
  };
}

export function errorOf(code: ErrorCode, message = `${code} in test`): ErrorInfo {
  return errorInfo(code, message);
}

export function registration(registrationId = 'reg-1', overrides: Partial<Registration> = {}): Registration {
  return { registrationId, instanceId: `inst-${registrationId}`, maxSessions: 10, isolation: 'bwrap', hostname: 'host.local', ...overrides };
}

// ---------------------------------------------------------------- the worker's stream

export interface StreamInput {
  workerId: string;
  registrationId: string;
  streamId: string;
}

/** One open task stream, as the worker at its other end. */
export interface FakeStream {
  input: StreamInput;
  /** Every command written to the worker on this stream, in order. */
  commands: WorkerCommandMessage[];
  /** True once the connection stopped the stream actor (its cleanup ran). */
  stopped: boolean;
  /** The worker reports on a session (routed to `session:<id>`); false when no proxy took it. */
  report(report: SessionReport): boolean;
  /** The worker answers the newest command about a session that asked for an answer (routed to `session:<id>`), or the one named. */
  reply(sessionId: string, ok: boolean, error?: ErrorInfo, requestId?: string): boolean;
  progress(taskId: string, percent: number, message?: string): boolean;
  log(taskId: string, line: string): boolean;
  finish(taskId: string, outcome: TaskOutcome): boolean;
  /** The stream ends (the worker's end hung up). */
  close(reason: string): void;
  /** The stream logic itself fails. */
  crash(message: string): void;
}

export interface FakeStreams {
  logic: ReturnType<typeof fromCallback<EventObject, StreamInput>>;
  all: FakeStream[];
  /** The newest stream of the worker that is still open; throws when there is none. */
  of(workerId?: string): FakeStream;
  /** Streams that are open now (not stopped). */
  open(workerId?: string): FakeStream[];
  /** Every command written to the worker, over all its streams. */
  commands(workerId?: string): WorkerCommandMessage[];
  /** The commands of one kind written to the worker. */
  commandsOf<K extends WorkerCommandMessage['kind']>(kind: K, workerId?: string): Array<Extract<WorkerCommandMessage, { kind: K }>>;
}

const commandSessionOf = (c: WorkerCommandMessage): string => (c.kind === 'create_session' ? c.description.sessionId : c.kind === 'assign_task' ? c.spec.sessionId : c.sessionId);

/** A `workerStream` fake: writes are recorded, the worker's messages come from the test. */
export function fakeWorkerStreams(clock: SimulatedClock): FakeStreams {
  const all: FakeStream[] = [];
  const logic = fromCallback<EventObject, StreamInput>(({ input, receive, sendBack, system, self }) => {
    const to = (systemId: string): AnyActorRef | undefined => system.get(systemId) as AnyActorRef | undefined;
    const deliver = (systemId: string, event: AnyEventObject): boolean => {
      if (stream.stopped) throw new Error(`the test wrote to a stopped stream of ${input.workerId}`);
      const ref = to(systemId);
      if (!ref) return false;
      ref.send(event);
      return true;
    };
    const stream: FakeStream = {
      input,
      commands: [],
      stopped: false,
      report: (report) => deliver(sessionProxyIdOf(report.description.sessionId), { type: 'session.reported', workerId: input.workerId, report, atMs: clock.now() }),
      reply: (sessionId, ok, error, requestId) => {
        const asked = [...stream.commands].reverse().find((c) => c.requestId && commandSessionOf(c) === sessionId);
        const id = requestId ?? asked?.requestId ?? `reply-${sessionId}`;
        return deliver(sessionProxyIdOf(sessionId), { type: 'command.replied', requestId: id, ok, ...(error ? { error } : {}), atMs: clock.now() });
      },
      progress: (taskId, percent, message = '') =>
        deliver(taskProxyIdOf(taskId), { type: 'task.progressed', progress: { stage: 'run', message, percent, elapsedMs: 0 }, atMs: clock.now() }),
      log: (taskId, line) => deliver(taskProxyIdOf(taskId), { type: 'task.logged', log: { stream: 'stdout', line, timestampMs: clock.now() }, atMs: clock.now() }),
      finish: (taskId, outcome) => deliver(taskProxyIdOf(taskId), { type: 'task.finished', outcome, atMs: clock.now() }),
      close: (reason) => sendBack({ type: 'stream.closed', reason, atMs: clock.now() }),
      crash: (message) => self.send({ type: 'fake.crash', message } as EventObject),
    };
    all.push(stream);
    receive((event) => {
      if (event.type === 'fake.crash') throw new Error((event as { type: string; message?: string }).message ?? 'crash');
      if (event.type === 'worker.command') stream.commands.push((event as unknown as { command: WorkerCommandMessage }).command);
    });
    return () => {
      stream.stopped = true;
    };
  });
  const open = (workerId?: string) => all.filter((s) => !s.stopped && (workerId === undefined || s.input.workerId === workerId));
  const commands = (workerId?: string) => all.filter((s) => workerId === undefined || s.input.workerId === workerId).flatMap((s) => s.commands);
  return {
    logic,
    all,
    open,
    of(workerId?: string) {
      const s = open(workerId).at(-1);
      if (!s) throw new Error(`no open stream${workerId ? ` of ${workerId}` : ''}`);
      return s;
    },
    commands,
    commandsOf: <K extends WorkerCommandMessage['kind']>(kind: K, workerId?: string) => commands(workerId).filter((c): c is Extract<WorkerCommandMessage, { kind: K }> => c.kind === kind),
  };
}

// ---------------------------------------------------------------- the tree with its leaf effects

export interface KeptOutcome {
  taskId: string;
  sessionId: string;
  outcome: TaskOutcome;
}

/** The real coordinator machines with the leaf effects replaced by recorders. */
export function coordinatorTree(clock: SimulatedClock) {
  const streams = fakeWorkerStreams(clock);
  const kept: KeptOutcome[] = [];
  /** Task ids a finished task of some session still holds in the result cache: taskId → sessionId. */
  const remembered = new Map<string, string>();
  const taskProxy = taskProxyMachine.provide({
    actions: { keepOutcome: (_, p) => void kept.push({ taskId: p.taskId, sessionId: p.sessionId, outcome: p.outcome }) },
  });
  const sessionProxy = sessionProxyMachine.provide({
    actors: { taskProxy },
    guards: {
      taskIdTakenElsewhere: (_, p) => {
        const owner = remembered.get(p.taskId);
        return owner !== undefined && owner !== p.sessionId;
      },
    },
  });
  const bucket = bucketMachine.provide({ actors: { sessionProxy } });
  const connection = workerConnectionMachine.provide({ actors: { workerStream: streams.logic } });
  const shard = shardMachine.provide({ actors: { bucket, connection } });
  const coordinator = coordinatorMachine.provide({ actors: { shardSupervisor: supervisorMachine.provide({ actors: { child: shard } }) } });
  return { streams, kept, remembered, taskProxy, sessionProxy, bucket, connection, shard, coordinator };
}

export const HOUR = 3_600_000;

export const shardInput = (workerId: string, overrides: Partial<Omit<ShardInput, 'workerId'>> = {}): ShardInput => ({
  workerId,
  bucketSize: 4,
  createTimeoutMs: 30_000,
  destroyTimeoutMs: 10_000,
  heartbeatTimeoutMs: HOUR,
  ...overrides,
});

export const coordinatorInput = (overrides: Partial<CoordinatorInput> = {}): CoordinatorInput => ({
  recoveryGraceMs: 0,
  shard: { bucketSize: 4, createTimeoutMs: 30_000, destroyTimeoutMs: 10_000, heartbeatTimeoutMs: HOUR },
  supervision: { intensity: { maxRestarts: 3, windowMs: 60_000 }, backoff: { initialMs: 100, maxMs: 1_000, factor: 2 } },
  seed: 7,
  ...overrides,
});

export const connectionInput = (workerId: string, registrationId: string, atMs: number, heartbeatTimeoutMs = HOUR): WorkerConnectionInput => ({ workerId, registrationId, heartbeatTimeoutMs, atMs });

export const proxyInput = (overrides: Partial<SessionProxyInput> = {}): SessionProxyInput => ({
  workerId: 'w1',
  mode: 'mirror',
  report: sessionReport('s1'),
  reachable: true,
  createTimeoutMs: 30_000,
  destroyTimeoutMs: 10_000,
  atMs: T0,
  ...overrides,
});

// ---------------------------------------------------------------- a recorded system

export interface Delivery {
  /** systemId (else id) of the sender; '' for events from outside. */
  from: string;
  /** systemId (else id) of the receiver. */
  to: string;
  event: AnyEventObject;
}

export interface Emission {
  from: string;
  event: AnyEventObject;
}

const nameOf = (ref: AnyActorRef | undefined): string => (ref ? ((ref as { systemId?: string }).systemId ?? ref.id) : '');

export interface RecordedSystem<TRoot extends AnyActorRef = AnyActorRef> {
  root: TRoot;
  clock: SimulatedClock;
  /** Errors that reached the root's error observer. */
  errors: unknown[];
  deliveries: Delivery[];
  emissions: Emission[];
  get(systemId: string): AnyActorRef | undefined;
  /** The actor with this systemId, or a failed expectation. */
  must(systemId: string): AnyActorRef;
  /** Events delivered to `to` (optionally only of `type`, only from `from`). */
  received(to: string, type?: string, from?: string): AnyEventObject[];
  /** Events emitted (optionally only by `from`), of `type`. */
  emitted<E extends AnyEventObject = AnyEventObject>(type: string, from?: string): E[];
  /**
   * Sends `event` to `target` and returns the one answer emitted synchronously with the event's
   * requestId, of `answerTypes` (as the front doors' askNow does); throws unless there is exactly one.
   */
  ask<E extends AnyEventObject = AnyEventObject>(target: string | AnyActorRef, event: AnyEventObject & { requestId: string }, answerTypes: string | string[]): E;
}

export function startSystem<TLogic extends AnyActorLogic>(logic: TLogic, opts: { clock: SimulatedClock; input?: unknown; systemId?: string }): RecordedSystem {
  const deliveries: Delivery[] = [];
  const emissions: Emission[] = [];
  const errors: unknown[] = [];
  const inspect = (ev: InspectionEvent) => {
    if (ev.type === '@xstate.actor') {
      const ref = ev.actorRef as AnyActorRef;
      ref.on('*', (e: AnyEventObject) => void emissions.push({ from: nameOf(ref), event: e }));
    } else if (ev.type === '@xstate.event') {
      if (ev.event.type.startsWith('xstate.init') || ev.event.type === 'xstate.stop') return;
      deliveries.push({ from: nameOf(ev.sourceRef as AnyActorRef | undefined), to: nameOf(ev.actorRef as AnyActorRef), event: ev.event });
    }
  };
  const root = createActor(logic, { clock: opts.clock, input: opts.input, inspect, ...(opts.systemId ? { systemId: opts.systemId } : {}) } as Parameters<typeof createActor<TLogic>>[1]) as unknown as AnyActorRef;
  root.subscribe({ error: (e) => void errors.push(e) });
  root.start();
  const get = (systemId: string) => root.system.get(systemId) as AnyActorRef | undefined;
  return {
    root,
    clock: opts.clock,
    errors,
    deliveries,
    emissions,
    get,
    must(systemId) {
      const ref = get(systemId);
      if (!ref) throw new Error(`no actor ${systemId} in the system`);
      return ref;
    },
    received: (to, type, from) => deliveries.filter((d) => d.to === to && (type === undefined || d.event.type === type) && (from === undefined || d.from === from)).map((d) => d.event),
    emitted: <E extends AnyEventObject>(type: string, from?: string) => emissions.filter((e) => e.event.type === type && (from === undefined || e.from === from)).map((e) => e.event as E),
    ask<E extends AnyEventObject>(target: string | AnyActorRef, event: AnyEventObject & { requestId: string }, answerTypes: string | string[]): E {
      const ref = typeof target === 'string' ? get(target) : target;
      if (!ref) throw new Error(`no actor ${String(target)} to ask`);
      const types = typeof answerTypes === 'string' ? [answerTypes] : answerTypes;
      const before = emissions.length;
      ref.send(event);
      const answers = emissions.slice(before).filter((e) => types.includes(e.event.type) && (e.event as { requestId?: string }).requestId === event.requestId);
      if (answers.length !== 1) throw new Error(`expected one of ${types.join('/')} for ${event.requestId}, got ${answers.length}`);
      return answers[0]!.event as E;
    },
  };
}

// ---------------------------------------------------------------- a host for children

export const HOST_ID = 'host';

type HostEvent =
  | { type: 'host.spawn'; src: string; systemId: string; input: unknown }
  | { type: 'host.stop'; systemId: string }
  | AnyEventObject;

/** A root that spawns the given logics as its children (id = systemId) and ignores what they tell it. */
export function hostMachine(actors: Record<string, AnyActorLogic>) {
  return setup({ types: { events: {} as HostEvent }, actors: actors as Record<string, AnyActorLogic> }).createMachine({
    id: 'host',
    on: {
      'host.spawn': {
        actions: enqueueActions(({ enqueue, event }) => {
          const e = event as Extract<HostEvent, { type: 'host.spawn' }>;
          // The source is chosen at run time, so the typed overloads do not apply.
          const spawn = enqueue.spawnChild as unknown as (src: string, options: { id: string; systemId: string; input: unknown }) => void;
          spawn(e.src, { id: e.systemId, systemId: e.systemId, input: e.input });
        }),
      },
      'host.stop': { actions: enqueueActions(({ enqueue, event }) => enqueue.stopChild((event as Extract<HostEvent, { type: 'host.stop' }>).systemId)) },
      // Children that end or fail stay visible in the deliveries; the host itself never fails.
      'xstate.done.actor.*': {},
      'xstate.error.actor.*': {},
    },
  });
}

export interface Host extends RecordedSystem {
  /** Spawns `src` as a child of the host, with id and systemId `systemId`; returns it. */
  spawn(src: string, systemId: string, input: unknown): AnyActorRef;
  stop(systemId: string): void;
  /** Events the host's children sent it (sendParent), optionally only of `type` and from `from`. */
  toHost(type?: string, from?: string): AnyEventObject[];
}

export function startHost(actors: Record<string, AnyActorLogic>, clock: SimulatedClock): Host {
  const sys = startSystem(hostMachine(actors), { clock, systemId: HOST_ID });
  return {
    ...sys,
    spawn(src, systemId, input) {
      sys.root.send({ type: 'host.spawn', src, systemId, input });
      return sys.must(systemId);
    },
    stop(systemId) {
      sys.root.send({ type: 'host.stop', systemId });
    },
    toHost: (type, from) => sys.received(HOST_ID, type, from),
  };
}

/**
 * A host with an online connection to worker `workerId` (its stream open), so proxies spawned
 * next to it reach the worker. Heartbeats never time out unless asked.
 */
export function hostWithWorker(actors: Record<string, AnyActorLogic> & { connection: AnyActorLogic }, clock: SimulatedClock, workerId = 'w1', registrationId = 'reg-1'): Host {
  const host = startHost(actors, clock);
  const connection = host.spawn('connection', connectionIdOf(workerId), connectionInput(workerId, registrationId, clock.now()));
  connection.send({ type: 'stream.opened', streamId: `stream-${workerId}`, atMs: clock.now() });
  return host;
}
