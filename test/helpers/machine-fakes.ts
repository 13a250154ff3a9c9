/**
 * Fakes for the named effect actors of `machines/`, whose completion the test controls, and a
 * test parent that records what a child machine sends it. No real time: tests pass a
 * `SimulatedClock` and call `clock.increment(ms)`; `flush()` only drains microtasks.
 */
import {
  createActor,
  fromCallback,
  fromPromise,
  setup,
  SimulatedClock,
  type AnyActorLogic,
  type AnyActorRef,
  type AnyEventObject,
  type EventObject,
  type InspectionEvent,
} from 'xstate';
import { sessionMachine, sessionStateOf, type SessionInput, type SessionSnapshot } from '../../machines/session.machine.js';
import { taskMachine, type ExecutorEvent } from '../../machines/task.machine.js';
import type { SessionConfig } from '../../src/domain/sessions.js';
import type { ErrorCode } from '../../src/domain/errors.js';
import type { TaskOutcome, TaskSpec, TaskStatus } from '../../src/domain/tasks.js';

/** Let promise actors settle and their parents react: microtasks only, no timers. */
export async function flush(rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

// ---------------------------------------------------------------- domain values

export function taskSpec(taskId: string, sessionId = 's1', sequence = 0): TaskSpec {
  return {
    taskId,
    sessionId,
    call: { tool: 'echo', input: { message: taskId } },
    constraints: { timeout_seconds: 30, max_memory_bytes: 0, max_output_bytes: 0, allow_network: false },
    sequence,
  };
}

export function resultOutcome(status: TaskStatus = 'SUCCESS'): TaskOutcome {
  return {
    type: 'result',
    status,
    artifacts: [],
    metadata: { workerId: 'w1', startedAtMs: 0, finishedAtMs: 0, durationMs: 0, queuedMs: 0 },
  };
}

export function failedOutcome(code: ErrorCode, message = `${code} in test`): TaskOutcome {
  return { type: 'error', error: { code, message, details: '', retriable: code === 'WORKER_LOST' || code === 'INTERNAL' } };
}

export function sessionInput(overrides: Partial<SessionInput> = {}): SessionInput {
  return {
    sessionId: 's1',
    workerId: 'w1',
    workspaceId: 's1',
    config: { env_vars: {}, allow_network: false, language: 'python' },
    metadata: {},
    idleTimeoutMs: 0,
    drainTimeoutMs: 5_000,
    requestId: 'req-create',
    ...overrides,
  };
}

// ---------------------------------------------------------------- promise actors

export interface PendingCall<TInput, TOutput> {
  input: TInput;
  signal: AbortSignal;
  settled: boolean;
  resolve(output: TOutput): void;
  reject(error: unknown): void;
}

/** A `fromPromise` fake that stays pending until the test settles it. */
export function controlledPromise<TOutput, TInput>() {
  const calls: PendingCall<TInput, TOutput>[] = [];
  const logic = fromPromise<TOutput, TInput>(
    ({ input, signal }) =>
      new Promise<TOutput>((resolve, reject) => {
        const call: PendingCall<TInput, TOutput> = {
          input,
          signal,
          settled: false,
          resolve: (o) => {
            call.settled = true;
            resolve(o);
          },
          reject: (e) => {
            call.settled = true;
            reject(e);
          },
        };
        calls.push(call);
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

// ---------------------------------------------------------------- the executor

export interface ExecutorRun {
  spec: TaskSpec;
  workerId: string;
  /** Reasons of every `executor.cancel` it received. */
  cancels: string[];
  /** True once its actor was stopped (the cleanup ran). */
  stopped: boolean;
  finish(outcome: TaskOutcome): void;
  progress(percent: number): void;
  log(line: string): void;
  /** Make the executor actor itself fail (as a crashed process runner would). */
  crash(message: string): void;
}

export interface FakeExecutorOptions {
  /** Answer `executor.cancel` at once with a CANCELLED result (a cooperative executor). */
  finishOnCancel?: boolean;
  /** Throw on start for these task ids (the executor cannot even start). */
  failOnStart?: (spec: TaskSpec) => boolean;
  /** Called on every start, after the run is recorded. */
  onStart?: (run: ExecutorRun) => void;
}

/** A `fromCallback` executor whose outcome the test reports; records starts, cancels, stops. */
export function fakeExecutor(options: FakeExecutorOptions = {}) {
  const runs: ExecutorRun[] = [];
  const logic = fromCallback<ExecutorEvent, { spec: TaskSpec; workerId: string }>(({ input, sendBack, receive, self }) => {
    if (options.failOnStart?.(input.spec)) throw new Error(`executor for ${input.spec.taskId} could not start`);
    const run: ExecutorRun = {
      spec: input.spec,
      workerId: input.workerId,
      cancels: [],
      stopped: false,
      finish: (outcome) => sendBack({ type: 'task.finished', outcome }),
      progress: (percent) => sendBack({ type: 'task.progressed', progress: { stage: 'run', message: '', percent, elapsedMs: 0 } }),
      log: (line) => sendBack({ type: 'task.logged', log: { stream: 'stdout', line, timestampMs: 0 } }),
      crash: (message) => (self as AnyActorRef).send({ type: 'fake.crash', message }),
    };
    runs.push(run);
    receive((event) => {
      const e = event as ExecutorEvent | { type: 'fake.crash'; message: string };
      if (e.type === 'fake.crash') {
        // XState never runs the cleanup of a callback actor that errored: the run is over now.
        run.stopped = true;
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

/**
 * A `fromCallback` that does nothing until stopped; records its inputs, what it receives and
 * whether it stopped. `crash(message)` makes the actor itself fail.
 */
export function idleCallback<TInput>() {
  interface Instance {
    input: TInput;
    stopped: boolean;
    received: EventObject[];
    sendBack: (e: AnyEventObject) => void;
    crash(message: string): void;
  }
  const instances: Instance[] = [];
  const logic = fromCallback<EventObject, TInput>(({ input, sendBack, receive, self }) => {
    const inst: Instance = {
      input,
      stopped: false,
      received: [],
      sendBack: sendBack as (e: AnyEventObject) => void,
      crash: (message) => (self as AnyActorRef).send({ type: 'fake.crash', message }),
    };
    instances.push(inst);
    receive((e) => {
      if (e.type === 'fake.crash') {
        inst.stopped = true; // XState never runs the cleanup of a callback actor that errored
        throw new Error((e as unknown as { message: string }).message);
      }
      inst.received.push(e);
    });
    return () => {
      inst.stopped = true;
    };
  });
  return {
    logic,
    instances,
    active(): Instance[] {
      return instances.filter((i) => !i.stopped);
    },
    last(): Instance {
      const i = instances.at(-1);
      if (!i) throw new Error('the callback actor was never started');
      return i;
    },
  };
}

// ---------------------------------------------------------------- observing actors

/**
 * An `inspect` callback that subscribes to `task.update` on every actor as it is created, so
 * property tests see every task's emissions wherever the task lives in the tree.
 */
export function taskUpdateCollector() {
  const outcomes = new Map<string, TaskOutcome[]>();
  const updates: { taskId: string; type: string }[] = [];
  const inspect = (ev: InspectionEvent): void => {
    if (ev.type !== '@xstate.actor') return;
    (ev.actorRef as AnyActorRef).on('task.update', (e: EventObject) => {
      const u = e as unknown as { taskId: string; update: { type: string; outcome?: TaskOutcome } };
      updates.push({ taskId: u.taskId, type: u.update.type });
      if (u.update.type === 'outcome') outcomes.set(u.taskId, [...(outcomes.get(u.taskId) ?? []), u.update.outcome!]);
    });
  };
  return { inspect, outcomes, updates };
}

/**
 * Runs `logic` as the invoked child `child` of a test parent that records every event the
 * child sends it (task.ended, session.terminated, worker.lost, link.closed, ...).
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

/** The top-level state name of a machine snapshot ('TERMINATED' style: a done machine reports its final state). */
export function topState(snapshot: { value?: unknown; status: string }): string {
  const v = snapshot.value;
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object') return Object.keys(v)[0]!;
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

/**
 * A session machine under a test parent with every effect faked: the test settles the
 * workspace calls, reports executor outcomes and moves the simulated clock. Records the
 * top-level state after every microstep (`trail`), task outcomes and rejections.
 */
export function sessionHarness(overrides: Partial<SessionInput> = {}, execOptions: FakeExecutorOptions = {}) {
  const clock = new SimulatedClock();
  const exec = fakeExecutor(execOptions);
  const prepare = controlledPromise<{ workspacePath: string }, { sessionId: string; workerId: string; config: SessionConfig }>();
  const release = controlledPromise<void, { sessionId: string; workerId: string; remove: boolean; force: boolean }>();
  const machine = sessionMachine.provide({
    actors: { task: taskMachine.provide({ actors: { executor: exec.logic } }), prepareWorkspace: prepare.logic, releaseWorkspace: release.logic },
  });
  const updates = taskUpdateCollector();
  const steps = microstepTrail((ref) => ref.id === 'child');
  steps.trail.push('INITIALIZING');
  const t = underParent(machine, sessionInput(overrides), { clock, inspect: inspectAll(updates.inspect, steps.inspect) });
  const session = t.child;
  const rejected: string[] = [];
  session.on('task.rejected', (e: EventObject) => {
    rejected.push((e as unknown as { taskId: string }).taskId);
  });
  return {
    ...t,
    clock,
    exec,
    prepare,
    release,
    session,
    outcomes: updates.outcomes,
    rejected,
    trail: steps.trail,
    snapshot: () => session.getSnapshot() as SessionSnapshot,
    state: () => sessionStateOf(session.getSnapshot() as SessionSnapshot),
  };
}
