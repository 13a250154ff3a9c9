/**
 * Fakes for the named effect actors of `machines/` (their completion is the test's to decide),
 * builders of domain values, a test parent that records what a child machine sends it, and
 * harnesses that assemble the worker-side machines (supervisor, task, session, coordinator link,
 * worker root) with every effect faked.
 *
 * No real time: harnesses use a `SimulatedClock` and tests call `clock.increment(ms)`; `flush()`
 * only drains microtasks (promise actors settle on them).
 */
import {
  assign,
  createActor,
  fromCallback,
  fromPromise,
  sendParent,
  setup,
  SimulatedClock,
  type AnyActorLogic,
  type AnyActorRef,
  type AnyEventObject,
  type EventObject,
  type InspectionEvent,
} from 'xstate';
import type { ErrorCode } from '../../machines/domain/errors.js';
import type { SessionDescription, SessionReport, SessionState } from '../../machines/domain/sessions.js';
import type { TaskMetadata, TaskOutcome, TaskSpec, TaskStatus, TaskUpdate } from '../../machines/domain/tasks.js';
import type { ToolReply } from '../../machines/domain/tools.js';
import type { ProcessInput } from '../../machines/process.machine.js';
import { supervisorMachine, type StopEvent, type Supervision, type SupervisorInput } from '../../machines/supervisor.machine.js';
import { UP_ID } from '../../machines/up.machine.js';
import { coordinatorLinkMachine, type CoordinatorLinkInput, type LinkRegistration } from '../../machines/worker/coordinator-link.machine.js';
import { sessionChildId, sessionMachine, sessionStateOf, type DescriptionSave, type PreparedWorkspace, type SessionInput, type SessionParentEvent, type SessionSnapshot } from '../../machines/worker/session.machine.js';
import { taskMachine, type ExecutorEvent, type ExecutorInput } from '../../machines/worker/task.machine.js';
import { LINK_ID, workerMachine, type CommandReply, type WorkerEmitted, type WorkerInput } from '../../machines/worker/worker.machine.js';

/** Let promise actors settle and their parents react: microtasks only, no timers. */
export async function flush(rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

// ---------------------------------------------------------------- domain values

/** An echo task of session `sessionId`. */
export function taskSpec(taskId: string, sessionId = 's1', sequence = 0): TaskSpec {
  return {
    taskId,
    sessionId,
    call: { tool: 'echo', input: { message: taskId } },
    constraints: { timeout_seconds: 30, max_memory_bytes: 0, max_output_bytes: 0, allow_network: false },
    sequence,
  };
}

/** A result outcome; by default with an echo reply (the payload contexts must not keep). */
export function resultOutcome(status: TaskStatus = 'SUCCESS', metadata: Partial<TaskMetadata> = {}, reply: ToolReply | undefined = { tool: 'echo', output: { message: 'hello' } }): TaskOutcome {
  return {
    type: 'result',
    status,
    ...(reply ? { reply } : {}),
    artifacts: [],
    metadata: { workerId: 'w1', startedAtMs: 0, finishedAtMs: 0, durationMs: 0, queuedMs: 0, ...metadata },
  };
}

/** An error outcome with `code`. */
export function failedOutcome(code: ErrorCode, message = `${code} in test`): TaskOutcome {
  return { type: 'error', error: { code, message, details: '', retriable: code === 'WORKER_LOST' || code === 'INTERNAL' || code === 'UNAVAILABLE' } };
}

/** A session description as a worker keeps it (id s1, no idle timeout, metadata version 0). */
export function sessionDescription(overrides: Partial<SessionDescription> = {}): SessionDescription {
  const sessionId = overrides.sessionId ?? 's1';
  return {
    sessionId,
    workspaceId: sessionId,
    userId: 'user-1',
    tenant: 'default',
    config: { env_vars: {}, allow_network: false, language: 'python' },
    metadata: {},
    metadataVersion: 0,
    createdAtMs: 0,
    lastActivityMs: 0,
    restartedAtMs: 0,
    survivalNote: '',
    idleTimeoutMs: 0,
    ...overrides,
  };
}

/** A worker's report on a session. */
export function sessionReport(state: SessionState = 'READY', description: Partial<SessionDescription> = {}, overrides: Partial<SessionReport> = {}): SessionReport {
  const d = sessionDescription(description);
  return { description: d, state, workspacePath: `/ws/${d.sessionId}`, failureReason: '', gone: false, ...overrides };
}

export type SessionInputOverrides = Omit<Partial<SessionInput>, 'description'> & { description?: Partial<SessionDescription> };

/** The worker session machine's input: a session created now on worker w1. */
export function sessionInput(overrides: SessionInputOverrides = {}): SessionInput {
  const { description, ...rest } = overrides;
  return { description: sessionDescription(description), workerId: 'w1', drainTimeoutMs: 5_000, origin: 'create', ...rest };
}

// ---------------------------------------------------------------- promise actors

export interface PendingCall<TInput, TOutput> {
  input: TInput;
  signal: AbortSignal;
  settled: boolean;
  resolve(output: TOutput): void;
  reject(error: unknown): void;
}

/**
 * A `fromPromise` fake that records its calls and stays pending until the test settles one;
 * with `auto`, every call settles at once (on a microtask) with `auto(input)` (an Error rejects).
 */
export function controlledPromise<TOutput, TInput>(auto?: (input: TInput) => TOutput | Error) {
  const calls: PendingCall<TInput, TOutput>[] = [];
  const logic = fromPromise<TOutput, TInput>(
    ({ input, signal }) =>
      new Promise<TOutput>((resolve, reject) => {
        const call: PendingCall<TInput, TOutput> = {
          input,
          signal,
          settled: false,
          resolve: (o) => {
            if (call.settled) return;
            call.settled = true;
            resolve(o);
          },
          reject: (e) => {
            if (call.settled) return;
            call.settled = true;
            reject(e);
          },
        };
        calls.push(call);
        if (auto) {
          const r = auto(input);
          if (r instanceof Error) call.reject(r);
          else call.resolve(r);
        }
      }),
  );
  return {
    logic,
    calls,
    /** The newest call, or a failed expectation. */
    last(): PendingCall<TInput, TOutput> {
      const c = calls.at(-1);
      if (!c) throw new Error('the promise actor was never invoked');
      return c;
    },
    /** Calls neither settled nor aborted (their actor still runs). */
    pending(): PendingCall<TInput, TOutput>[] {
      return calls.filter((c) => !c.settled && !c.signal.aborted);
    },
  };
}

/** A `fromPromise` fake that settles at once (on the next microtask) with `result(input)`. */
export function instantPromise<TOutput, TInput>(result: (input: TInput) => TOutput | Error) {
  const inputs: TInput[] = [];
  const logic = fromPromise<TOutput, TInput>(async ({ input }) => {
    inputs.push(input);
    const r = result(input);
    if (r instanceof Error) throw r;
    return r;
  });
  return { logic, inputs };
}

// ---------------------------------------------------------------- callback actors

export interface CallbackInstance<TInput, TEvent extends EventObject = EventObject> {
  input: TInput;
  /** True once its actor was stopped (the cleanup ran), or it crashed. */
  stopped: boolean;
  received: TEvent[];
  sendBack: (e: AnyEventObject) => void;
  /** Make the actor itself fail (its parent gets xstate.error.actor.<id>). */
  crash(message: string): void;
}

/**
 * A `fromCallback` that does nothing until stopped; records its inputs, what it receives and
 * whether it stopped. `crash(message)` makes the actor itself fail.
 */
export function idleCallback<TInput, TEvent extends EventObject = EventObject>(opts: { onReceive?: (inst: CallbackInstance<TInput, TEvent>, event: TEvent) => void } = {}) {
  const instances: CallbackInstance<TInput, TEvent>[] = [];
  const logic = fromCallback<TEvent, TInput>(({ input, sendBack, receive, self }) => {
    const inst: CallbackInstance<TInput, TEvent> = {
      input,
      stopped: false,
      received: [],
      sendBack: sendBack as (e: AnyEventObject) => void,
      crash: (message) => (self as AnyActorRef).send({ type: 'fake.crash', message }),
    };
    instances.push(inst);
    receive((e) => {
      const event = e as EventObject;
      if (event.type === 'fake.crash') {
        inst.stopped = true; // XState never runs the cleanup of a callback actor that errored
        throw new Error((event as unknown as { message: string }).message);
      }
      inst.received.push(e);
      opts.onReceive?.(inst, e);
    });
    return () => {
      inst.stopped = true;
    };
  });
  return {
    logic,
    instances,
    active(): CallbackInstance<TInput, TEvent>[] {
      return instances.filter((i) => !i.stopped);
    },
    last(): CallbackInstance<TInput, TEvent> {
      const i = instances.at(-1);
      if (!i) throw new Error('the callback actor was never started');
      return i;
    },
  };
}

// ---------------------------------------------------------------- the task executor

export interface ExecutorRun {
  input: ExecutorInput;
  spec: TaskSpec;
  workerId: string;
  /** Reasons of every `executor.cancel` it received. */
  cancels: string[];
  /** True once its actor was stopped (the cleanup ran). */
  stopped: boolean;
  finish(outcome?: TaskOutcome): void;
  progress(percent: number): void;
  log(line: string): void;
  /** Make the executor actor itself fail (as a crashed process runner would). */
  crash(message: string): void;
}

export interface FakeExecutorOptions {
  /** Answer `executor.cancel` at once with a CANCELLED result (a cooperative executor). */
  finishOnCancel?: boolean;
  /** Throw on start for these tasks (the executor cannot even start). */
  failOnStart?: (spec: TaskSpec) => boolean;
  /** Called on every start, after the run is recorded. */
  onStart?: (run: ExecutorRun) => void;
}

/** A `fromCallback` executor whose outcome the test reports; records starts, cancels, stops. */
export function fakeExecutor(options: FakeExecutorOptions = {}) {
  const runs: ExecutorRun[] = [];
  const logic = fromCallback<ExecutorEvent, ExecutorInput>(({ input, sendBack, receive, self }) => {
    if (options.failOnStart?.(input.spec)) throw new Error(`executor for ${input.spec.taskId} could not start`);
    const run: ExecutorRun = {
      input,
      spec: input.spec,
      workerId: input.workerId,
      cancels: [],
      stopped: false,
      finish: (outcome = resultOutcome()) => sendBack({ type: 'task.finished', outcome }),
      progress: (percent) => sendBack({ type: 'task.progressed', progress: { stage: 'run', message: '', percent, elapsedMs: 0 } }),
      log: (line) => sendBack({ type: 'task.logged', log: { stream: 'stdout', line, timestampMs: 0 } }),
      crash: (message) => (self as AnyActorRef).send({ type: 'fake.crash', message }),
    };
    runs.push(run);
    receive((event) => {
      const e = event as ExecutorEvent | { type: 'fake.crash'; message: string };
      if (e.type === 'fake.crash') {
        run.stopped = true; // XState never runs the cleanup of a callback actor that errored
        throw new Error(e.message);
      }
      run.cancels.push(e.reason);
      if (options.finishOnCancel) sendBack({ type: 'task.finished', outcome: resultOutcome('CANCELLED') });
    });
    options.onStart?.(run);
    return () => {
      run.stopped = true;
    };
  });
  return {
    logic,
    runs,
    run(taskId: string): ExecutorRun {
      const r = runs.find((x) => x.spec.taskId === taskId);
      if (!r) throw new Error(`no executor ran for ${taskId}`);
      return r;
    },
    active(): ExecutorRun[] {
      return runs.filter((r) => !r.stopped);
    },
  };
}

// ---------------------------------------------------------------- observing actors

/**
 * An `inspect` callback that subscribes to `task.update` on every actor as it is created, so
 * tests see every task's emissions wherever the task lives in the tree.
 */
export function taskUpdateCollector() {
  const outcomes = new Map<string, TaskOutcome[]>();
  const updates: { taskId: string; type: TaskUpdate['type']; update: TaskUpdate }[] = [];
  const inspect = (ev: InspectionEvent): void => {
    if (ev.type !== '@xstate.actor') return;
    (ev.actorRef as AnyActorRef).on('task.update', (e: EventObject) => {
      const u = e as unknown as { taskId: string; update: TaskUpdate };
      updates.push({ taskId: u.taskId, type: u.update.type, update: u.update });
      if (u.update.type === 'outcome') outcomes.set(u.taskId, [...(outcomes.get(u.taskId) ?? []), u.update.outcome]);
    });
  };
  return { inspect, outcomes, updates };
}

/**
 * Runs `logic` as the invoked child `child` of a test parent that records every event the child
 * sends it (session.changed, task.ended, link.collect, supervisor.escalated, xstate.done.actor.child…).
 */
export function underParent(logic: AnyActorLogic, input: unknown, options: { clock?: SimulatedClock; inspect?: (ev: InspectionEvent) => void } = {}) {
  const received: EventObject[] = [];
  const parentMachine = setup({ actors: { child: logic } }).createMachine({
    id: 'testParent',
    invoke: { id: 'child', src: 'child', input: () => input as never },
    on: {
      '*': {
        actions: ({ event }) => {
          received.push(event);
        },
      },
    },
  });
  const errors: unknown[] = [];
  const parent = createActor(parentMachine, { clock: options.clock, inspect: options.inspect });
  parent.subscribe({ error: (e) => errors.push(e) });
  parent.start();
  const child = parent.getSnapshot().children.child as AnyActorRef;
  return {
    parent,
    child,
    received,
    errors,
    /** Events of `type` the child sent the parent. */
    sent<T extends EventObject = EventObject>(type: string): T[] {
      return received.filter((e) => e.type === type) as T[];
    },
  };
}

/** Collects what an actor emits (its `.on('*')` stream). */
export function collectEmitted(actor: AnyActorRef): EventObject[] {
  const out: EventObject[] = [];
  actor.on('*', (e: EventObject) => {
    out.push(e);
  });
  return out;
}

/** Runs several `inspect` callbacks. */
export function inspectAll(...fns: ((ev: InspectionEvent) => void)[]) {
  return (ev: InspectionEvent): void => {
    for (const f of fns) f(ev);
  };
}

/** The top-level state name of a machine snapshot (a done or stopped actor without a value reports its status). */
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

/**
 * An `inspect` callback recording the top-level state after every microstep of the actors
 * `pick` selects, including states a macrostep passes through (READY between IDLE and BUSY).
 */
export function microstepTrail(pick: (ref: AnyActorRef) => boolean) {
  const trail: string[] = [];
  const inspect = (ev: InspectionEvent): void => {
    if (ev.type !== '@xstate.microstep' || !pick(ev.actorRef as AnyActorRef)) return;
    const s = topState(ev.snapshot as { value?: unknown; status: string });
    if (trail.at(-1) !== s) trail.push(s);
  };
  return { inspect, trail };
}

// ---------------------------------------------------------------- a supervised child

/** What the controlled child records of each start. */
export interface ChildStart {
  input: Record<string, unknown> & { supervision: Supervision };
  /** The actor clock's time when it started. */
  atMs: number;
}

/**
 * Child logic for the supervisor whose runs the test controls, through the child's systemId:
 * `finish(output)` ends it (output `{exit:'abnormal', reason}` counts as a crash), `crash()` makes
 * it fail, `tell(event)` makes it send its parent `event`. It records every start (input with
 * `supervision`) and every other event it receives (the stop event). With `finishOnStop`, an
 * event of that type ends it normally.
 */
export function controlledChild(options: { finishOnStop?: string; clock?: SimulatedClock } = {}) {
  const starts: ChildStart[] = [];
  const received: EventObject[] = [];
  const logic = setup({
    types: { context: {} as { input: ChildStart['input']; output: unknown }, input: {} as ChildStart['input'] },
  }).createMachine({
    id: 'controlledChild',
    context: ({ input }) => ({ input, output: undefined }),
    entry: ({ context }) => {
      starts.push({ input: context.input, atMs: options.clock?.now() ?? 0 });
    },
    initial: 'running',
    states: {
      running: {
        on: {
          'child.finish': { target: 'done', actions: assign({ output: ({ event }) => (event as unknown as { output?: unknown }).output }) },
          'child.crash': {
            actions: ({ event }) => {
              throw new Error((event as unknown as { message?: string }).message ?? 'child crashed');
            },
          },
          'child.tell': { actions: sendParent(({ event }) => (event as unknown as { event: EventObject }).event) },
          '*': [
            { guard: ({ event }) => options.finishOnStop !== undefined && event.type === options.finishOnStop, target: 'done', actions: ({ event }) => void received.push(event) },
            { actions: ({ event }) => void received.push(event) },
          ],
        },
      },
      done: { type: 'final' },
    },
    output: ({ context }) => context.output,
  });
  return { logic, starts, received };
}

export interface SupervisorHarnessOptions {
  childOptions?: { finishOnStop?: string };
}

/**
 * A supervisor of a `controlledChild()` under a test parent, on a simulated clock. The child is
 * reached by its systemId (`input.childId`); `finish/crash/tell` act on the running one.
 */
export function supervisorHarness(input: Partial<SupervisorInput> & Pick<SupervisorInput, 'restart'>, options: SupervisorHarnessOptions = {}) {
  const clock = new SimulatedClock();
  const child = controlledChild({ ...options.childOptions, clock });
  const full: SupervisorInput = {
    childId: 'kid',
    intensity: { maxRestarts: 3, windowMs: 10_000 },
    backoff: { initialMs: 100, maxMs: 1_000, factor: 2 },
    shutdownTimeoutMs: 1_000,
    stopEvent: { type: 'child.stop' },
    childInput: { name: 'kid' },
    seed: 7,
    ...input,
  };
  const t = underParent(supervisorMachine.provide({ actors: { child: child.logic } }), full, { clock });
  const current = (): AnyActorRef | undefined => t.parent.system.get(full.childId) as AnyActorRef | undefined;
  const running = (): AnyActorRef => {
    const ref = t.child.getSnapshot().children[full.childId] as AnyActorRef | undefined;
    if (!ref || ref.getSnapshot().status !== 'active') throw new Error(`no running child (supervisor in ${JSON.stringify(t.child.getSnapshot().value)})`);
    return ref;
  };
  return {
    ...t,
    input: full,
    clock,
    starts: child.starts,
    childReceived: child.received,
    supervisor: t.child,
    value: () => t.child.getSnapshot().value as string,
    status: () => t.child.getSnapshot().status as string,
    output: () => t.child.getSnapshot().output as { childId: string; end: string; reason: string } | undefined,
    current,
    running,
    finish: (output?: unknown) => running().send({ type: 'child.finish', output }),
    crash: (message = 'boom') => running().send({ type: 'child.crash', message }),
    tell: (event: EventObject) => running().send({ type: 'child.tell', event }),
    stop: (stopEvent?: StopEvent) => t.child.send({ type: 'supervisor.stop', ...(stopEvent ? { stopEvent } : {}) }),
    /** Advance the clock until the child runs again; returns how long that took (throws past `limit`). */
    waitRestart(limit = 100_000, step = 1): number {
      let waited = 0;
      while (t.child.getSnapshot().value !== 'running') {
        if (waited >= limit) throw new Error('never restarted');
        clock.increment(step);
        waited += step;
      }
      return waited;
    },
  };
}

// ---------------------------------------------------------------- worker session fakes

type PrepareInput = { description: SessionDescription; origin: SessionInput['origin']; restarts: number };
type ReleaseInput = { sessionId: string; remove: boolean };
type PersistInput = { sessionId: string };

export interface SessionFakesOptions {
  exec?: FakeExecutorOptions;
  /** Prepare every workspace at once (`/ws/<id>`, the input description, at `now()`). */
  autoPrepare?: boolean;
  /** Release every workspace at once. */
  autoRelease?: boolean;
  /** The time `autoPrepare` reports (the worker's clock); 0 by default. */
  now?: () => number;
  /** Saves are not confirmed (no description.saved) until the test calls `confirmSaves()`: a write still under way. */
  holdSaves?: boolean;
}

/**
 * The worker session machine with every effect faked: `prepare` / `release` (controlled
 * promises), `persist` (records each description.save it receives), `exec` (the task executor).
 */
export function sessionFakes(options: SessionFakesOptions = {}) {
  const exec = fakeExecutor(options.exec);
  const prepare = controlledPromise<PreparedWorkspace, PrepareInput>(
    options.autoPrepare ? (input) => ({ workspacePath: `/ws/${input.description.sessionId}`, description: input.description, atMs: options.now?.() ?? 0 }) : undefined,
  );
  const release = controlledPromise<{ removedArtifacts: string[] } | void, ReleaseInput>(options.autoRelease ? () => ({ removedArtifacts: [] }) : undefined);
  // Like the real writer: a save that carries metadata changes is confirmed once "written" (here at once, unless held).
  const held: Array<{ inst: CallbackInstance<PersistInput, DescriptionSave>; requestIds: string[] }> = [];
  const confirm = (inst: CallbackInstance<PersistInput, DescriptionSave>, requestIds: string[]) => {
    if (!inst.stopped && requestIds.length > 0) inst.sendBack({ type: 'description.saved', requestIds, error: null });
  };
  const persist = idleCallback<PersistInput, DescriptionSave>({
    onReceive: (inst, e) => {
      if (e.type !== 'description.save') return;
      if (options.holdSaves) held.push({ inst, requestIds: e.requestIds });
      else confirm(inst, e.requestIds);
    },
  });
  const confirmSaves = () => {
    for (const h of held.splice(0)) confirm(h.inst, h.requestIds);
  };
  const logic = sessionMachine.provide({
    actors: { task: taskMachine.provide({ actors: { executor: exec.logic } }), prepareWorkspace: prepare.logic, releaseWorkspace: release.logic, persist: persist.logic },
  });
  /** Every description saved so far, by every session actor, in order. */
  const saved = (sessionId?: string): SessionDescription[] =>
    persist.instances
      .filter((i) => sessionId === undefined || i.input.sessionId === sessionId)
      .flatMap((i) => i.received.filter((e) => e.type === 'description.save').map((e) => e.description));
  return { logic, exec, prepare, release, persist, saved, confirmSaves };
}

/**
 * A worker session machine under a test parent (standing in for its supervisor), every effect
 * faked. `ready()` settles the workspace; `reports()` are the session.changed reports it sent.
 */
export function sessionHarness(overrides: SessionInputOverrides = {}, execOptions: FakeExecutorOptions = {}, fakeOptions: Omit<SessionFakesOptions, 'exec'> = {}) {
  const clock = new SimulatedClock();
  const fakes = sessionFakes({ ...fakeOptions, exec: execOptions });
  const input = sessionInput(overrides);
  const updates = taskUpdateCollector();
  const steps = microstepTrail((ref) => ref.id === 'child');
  steps.trail.push('INITIALIZING');
  const t = underParent(fakes.logic, input, { clock, inspect: inspectAll(updates.inspect, steps.inspect) });
  const session = t.child;
  const sessionId = input.description.sessionId;
  const snapshot = () => session.getSnapshot() as SessionSnapshot;
  const reports = (): SessionReport[] => t.sent<Extract<SessionParentEvent, { type: 'session.changed' }>>('session.changed').map((e) => e.report);
  return {
    ...t,
    input,
    sessionId,
    clock,
    ...fakes,
    session,
    outcomes: updates.outcomes,
    updates: updates.updates,
    trail: steps.trail,
    snapshot,
    state: () => sessionStateOf(snapshot()),
    reports,
    reportStates: (): SessionState[] => reports().map((r) => r.state),
    refused: () => t.sent<Extract<SessionParentEvent, { type: 'task.refused' }>>('task.refused'),
    submit: (taskId: string, atMs = clock.now(), sequence = 0) => session.send({ type: 'task.submit', spec: taskSpec(taskId, sessionId, sequence), atMs }),
    /** Settles the workspace preparation (by default: the input description, as on disk, at the clock's time). */
    async ready(prepared: Partial<PreparedWorkspace> = {}) {
      fakes.prepare.last().resolve({ workspacePath: `/ws/${sessionId}`, description: input.description, atMs: clock.now(), ...prepared });
      await flush();
    },
  };
}

// ---------------------------------------------------------------- coordinator link fakes

type RegisterInput = { workerId: string; attempt: number; sessions: SessionReport[] };
type DeregisterInput = { workerId: string; registrationId: string; reason: string };

/** The link's effects: `register` / `deregister` (controlled promises), `heartbeats` / `streams` (idle callbacks). */
export function linkFakes() {
  const register = controlledPromise<LinkRegistration, RegisterInput>();
  const deregister = controlledPromise<void, DeregisterInput>();
  const heartbeats = idleCallback<{ workerId: string; registrationId: string; intervalMs: number }>();
  const streams = idleCallback<{ workerId: string; registrationId: string }>();
  const logic = coordinatorLinkMachine.provide({ actors: { register: register.logic, deregister: deregister.logic, heartbeats: heartbeats.logic, taskStream: streams.logic } });
  return { logic, register, deregister, heartbeats, streams };
}

/** The coordinator link under a test parent (standing in for the worker), on a simulated clock. */
export function linkHarness(input: Partial<CoordinatorLinkInput> = {}) {
  const clock = new SimulatedClock();
  const fakes = linkFakes();
  const full: CoordinatorLinkInput = { workerId: 'w1', backoff: { initialMs: 100, maxMs: 1_000, factor: 2 }, seed: 11, ...input };
  const t = underParent(fakes.logic, full, { clock });
  return {
    ...t,
    input: full,
    clock,
    ...fakes,
    link: t.child,
    value: () => t.child.getSnapshot().value as unknown,
    /** Answers the link's link.collect as the worker does. */
    answerCollect: (sessions: SessionReport[] = []) => t.child.send({ type: 'link.sessions', sessions }),
    async succeed(registrationId = 'reg-1', heartbeatIntervalMs = 500, atMs = clock.now()) {
      fakes.register.last().resolve({ registrationId, heartbeatIntervalMs, atMs });
      await flush();
    },
    async fail(message = 'connection refused') {
      fakes.register.last().reject(new Error(message));
      await flush();
    },
  };
}

// ---------------------------------------------------------------- the worker root

export interface WorkerHarnessOptions extends SessionFakesOptions {
  /** Pool supervisor's child logic; default: an idle callback (`pool`). */
  poolLogic?: AnyActorLogic;
}

/** The worker's input for tests: w1, MAX_SESSIONS 2, fast backoffs. */
export function workerInput(overrides: Partial<WorkerInput> = {}): WorkerInput {
  return {
    workerId: 'w1',
    maxSessions: 2,
    drainTimeoutMs: 5_000,
    adopt: [],
    link: { intensity: { maxRestarts: 2, windowMs: 10_000 }, backoff: { initialMs: 100, maxMs: 1_000, factor: 2 }, shutdownTimeoutMs: 5_000 },
    sessions: { intensity: { maxRestarts: 2, windowMs: 10_000 }, backoff: { initialMs: 100, maxMs: 1_000, factor: 2 } },
    pool: { intensity: { maxRestarts: 2, windowMs: 10_000 }, backoff: { initialMs: 100, maxMs: 1_000, factor: 2 } },
    seed: 5,
    ...overrides,
  };
}

/**
 * The worker root as src/worker/main.ts assembles it (a supervisor per session, the link and the
 * pool), every effect faked; systemId 'worker', simulated clock. Workspaces are prepared at once
 * unless `autoPrepare: false`.
 */
export function workerHarness(overrides: Partial<WorkerInput> = {}, options: WorkerHarnessOptions = {}) {
  const clock = new SimulatedClock();
  const session = sessionFakes({ autoPrepare: true, now: () => clock.now(), ...options });
  const link = linkFakes();
  const pool = idleCallback<Record<string, unknown>>();
  const discard = controlledPromise<void, { sessionId: string }>();
  const machine = workerMachine.provide({
    actors: {
      sessionSupervisor: supervisorMachine.provide({ actors: { child: session.logic } }),
      discardSession: discard.logic,
      linkSupervisor: supervisorMachine.provide({ actors: { child: link.logic } }),
      poolSupervisor: supervisorMachine.provide({ actors: { child: options.poolLogic ?? pool.logic } }),
    },
  });
  const updates = taskUpdateCollector();
  const input = workerInput(overrides);
  const actor = createActor(machine, { systemId: 'worker', input, clock, inspect: updates.inspect });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  const emitted = collectEmitted(actor) as WorkerEmitted[];
  actor.start();
  const of = <T extends WorkerEmitted['type']>(type: T) => emitted.filter((e): e is Extract<WorkerEmitted, { type: T }> => e.type === type);
  const sessionRef = (id: string): AnyActorRef | undefined => actor.system.get(sessionChildId(id)) as AnyActorRef | undefined;
  return {
    actor,
    input,
    clock,
    ...session,
    register: link.register,
    deregister: link.deregister,
    heartbeats: link.heartbeats,
    streams: link.streams,
    pool,
    discard,
    errors,
    emitted,
    outcomes: updates.outcomes,
    of,
    replies: (): CommandReply[] => of('coordinator.reply').map((e) => e.reply),
    reply: (requestId: string): CommandReply | undefined => of('coordinator.reply').find((e) => e.reply.requestId === requestId)?.reply,
    reports: (sessionId?: string): SessionReport[] => of('session.report').map((e) => e.report).filter((r) => sessionId === undefined || r.description.sessionId === sessionId),
    taskErrors: () => of('task.error'),
    warnings: () => of('worker.warning'),
    context: () => actor.getSnapshot().context,
    value: () => actor.getSnapshot().value as string,
    link: (): AnyActorRef | undefined => actor.system.get(LINK_ID) as AnyActorRef | undefined,
    session: sessionRef,
    sessionState(id: string): SessionState | undefined {
      const ref = sessionRef(id);
      return ref ? sessionStateOf(ref.getSnapshot() as SessionSnapshot) : undefined;
    },
    /** Resolves the pending registration (the link collected the sessions from the worker). */
    async connect(registrationId = 'reg-1', atMs = clock.now()) {
      await flush();
      link.register.last().resolve({ registrationId, heartbeatIntervalMs: 1_000, atMs });
      await flush();
    },
    create(description: Partial<SessionDescription> = {}, requestId = `create-${description.sessionId ?? 's1'}`, atMs = clock.now()) {
      actor.send({ type: 'command.create', requestId, description: sessionDescription(description), atMs });
    },
    async createReady(sessionId: string, description: Partial<SessionDescription> = {}) {
      actor.send({ type: 'command.create', requestId: `create-${sessionId}`, description: sessionDescription({ ...description, sessionId }), atMs: clock.now() });
      await flush();
    },
    task(taskId: string, sessionId = 's1', requestId = `task-${taskId}`) {
      actor.send({ type: 'command.task', requestId, spec: taskSpec(taskId, sessionId), atMs: clock.now() });
    },
  };
}

// ---------------------------------------------------------------- processes (`codegen-mcp up`)

export interface FakeProcess {
  input: ProcessInput;
  /** How many SIGTERMs (`terminate`) it got. */
  terminated: number;
  /** True when its actor was stopped with the process still there (SIGKILL). */
  killed: boolean;
  exited: boolean;
  /** The process exits: its actor hears process.exited. */
  exit(code: number | null, signal?: string | null): void;
  /** The process says it is ready (its IPC message), as src/cli/up.ts relays it to the `up` actor. */
  ready(grpcPort: number, httpPort?: number): void;
}

/**
 * The process machine's `run` logic with no process: records every start, counts `terminate`s,
 * marks a kill when stopped before it exited. With `exitOnTerminate`, a terminate makes it exit
 * with that code (a process that drains at once).
 */
export function fakeProcessRunner(options: { exitOnTerminate?: (p: FakeProcess) => number | undefined } = {}) {
  const procs: FakeProcess[] = [];
  const logic = fromCallback<{ type: 'terminate' }, ProcessInput>(({ input, sendBack, receive, system }) => {
    const p: FakeProcess = {
      input,
      terminated: 0,
      killed: false,
      exited: false,
      exit: (code, signal = null) => {
        if (p.exited) return;
        p.exited = true;
        sendBack({ type: 'process.exited', code, signal });
      },
      ready: (grpcPort, httpPort) => {
        const up = system.get(UP_ID) as AnyActorRef | undefined;
        up?.send({ type: 'process.ready', name: input.name, grpcPort, ...(httpPort ? { httpPort } : {}) });
      },
    };
    procs.push(p);
    receive((e) => {
      if (e.type !== 'terminate') return;
      p.terminated++;
      const code = options.exitOnTerminate?.(p);
      if (code !== undefined) p.exit(code);
    });
    return () => {
      if (!p.exited) p.killed = true;
    };
  });
  return {
    logic,
    procs,
    /** Every start of process `name`, in order. */
    starts: (name: string): FakeProcess[] => procs.filter((p) => p.input.name === name),
    /** The newest start of process `name`. */
    latest(name: string): FakeProcess {
      const p = procs.filter((x) => x.input.name === name).at(-1);
      if (!p) throw new Error(`process ${name} never started`);
      return p;
    },
    /** Processes started and neither exited nor killed. */
    alive: (): FakeProcess[] => procs.filter((p) => !p.exited && !p.killed),
  };
}
