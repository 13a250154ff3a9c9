import { assign, enqueueActions, setup, type ActorRefFrom, type AnyActorRef, type PromiseActorLogic, type SnapshotFrom } from 'xstate';
import { errorInfo, type ErrorInfo } from '../domain/errors.js';
import type { SessionDescription, SessionReport } from '../domain/sessions.js';
import type { TaskSpec } from '../domain/tasks.js';
import { supervisorIdOf, supervisorMachine, type SupervisorInput, type SupervisorParentEvent } from '../supervisor.machine.js';
import { removeFailedChild, type BackoffPolicy, type RestartIntensity } from '../supervision.js';
import type { CoordinatorLinkParentEvent } from './coordinator-link.machine.js';
import { sessionChildId, type SessionInput, type SessionParentEvent } from './session.machine.js';
import { atMsOf } from '../domain/events.js';

/**
 * The worker's root: it owns its sessions' lifecycles. It supervises, each under a supervisor:
 * the venv pool (permanent), one session actor per session (transient: a crashed session is
 * restarted from its description on disk), and the coordinator link (permanent: registers with
 * every session it holds, heartbeats, carries the task stream; escalation stops the worker).
 * SIGTERM drains: new work is refused, sessions finish or cancel their running task within the
 * drain bound and stay on disk, then the link deregisters, then the pool stops.
 */
export interface WorkerInput {
  workerId: string;
  /** Random per process start (also sent at registration). */
  instanceId?: string;
  maxSessions: number;
  drainTimeoutMs: number;
  /** Sessions found on disk at start, whose locks this process now holds. */
  adopt: SessionDescription[];
  link: { intensity: RestartIntensity; backoff: BackoffPolicy; shutdownTimeoutMs: number };
  sessions: { intensity: RestartIntensity; backoff: BackoffPolicy };
  pool: { intensity: RestartIntensity; backoff: BackoffPolicy };
  /** Each session's warm interpreter, supervised (absent: WARM_PYTHON=false). */
  warm?: { intensity: RestartIntensity; backoff: BackoffPolicy };
  /** Each session's stateful interpreter (python_exec), supervised (absent: python_exec answers UNAVAILABLE). */
  interpreter?: { intensity: RestartIntensity; backoff: BackoffPolicy };
  seed: number;
  /** Test hook (CODEGEN_TEST_FAULTS). */
  faults?: boolean;
}

export interface WorkerContext extends WorkerInput {
  /** The latest report of every session this worker holds, by id (at most MAX_SESSIONS and what it adopted). */
  held: Record<string, SessionReport>;
  /** Sessions whose supervisor runs now (an escalated one stays held, FAILED, with none). */
  live: string[];
  /** Held sessions with no session actor running: restarting after a crash, given up on (FAILED), or drained for the shutdown. */
  down: string[];
  /** Destroys of sessions with no actor, done by `discardSession`: session id → the command's request id. */
  discarding: Record<string, string>;
  /** Metadata changes sent to each session's actor and not yet on disk (request ids): answered when saved, or failed with it. */
  metadataAsks: Record<string, string[]>;
  linkAlive: boolean;
  poolAlive: boolean;
  registrationId: string;
  escalation: string;
}

/** Commands that arrive over the task stream (the link forwards them). */
export type WorkerCommand =
  | { type: 'command.create'; requestId: string; description: SessionDescription; atMs: number }
  | { type: 'command.destroy'; requestId: string; sessionId: string; atMs: number }
  | { type: 'command.task'; requestId: string; spec: TaskSpec; atMs: number }
  | { type: 'command.cancel'; requestId: string; sessionId: string; taskId: string; reason: string; atMs: number }
  | { type: 'command.put_metadata'; requestId: string; sessionId: string; metadata: Record<string, string>; merge: boolean; atMs: number };

export type WorkerEvent =
  | WorkerCommand
  | CoordinatorLinkParentEvent
  | SessionParentEvent
  | SupervisorParentEvent
  | { type: 'worker.shutdown'; atMs: number }
  | { type: 'worker.fault' }
  | { type: 'link.collect' }
  | { type: `xstate.done.actor.${string}`; output?: unknown }
  | { type: `xstate.error.actor.${string}`; error: unknown };

/** What the worker answers a command with (routed back to the session's proxy by session id). */
export interface CommandReply {
  requestId: string;
  sessionId: string;
  ok: boolean;
  error?: ErrorInfo;
}

export type WorkerEmitted =
  | { type: 'coordinator.reply'; reply: CommandReply }
  | { type: 'session.report'; report: SessionReport }
  | { type: 'task.error'; sessionId: string; taskId: string; error: ErrorInfo }
  | { type: 'worker.warning'; message: string; details: Record<string, string> }
  /** Why the worker is stopping on its own with a non-zero exit (the process logs it as an error). */
  | { type: 'worker.fatal'; message: string };

export const LINK_ID = 'link';
export const POOL_ID = 'pool';

const replyEvent = (p: { requestId: string; sessionId: string; error?: ErrorInfo }): WorkerEmitted => ({
  type: 'coordinator.reply',
  reply: { requestId: p.requestId, sessionId: p.sessionId, ok: !p.error, ...(p.error ? { error: p.error } : {}) },
});

/** A session actor's input (its supervisor adds how often it restarted). */
const sessionInputOf = (context: WorkerContext, description: SessionDescription, origin: SessionInput['origin']): SessionInput => ({
  description,
  workerId: context.workerId,
  drainTimeoutMs: context.drainTimeoutMs,
  origin,
  faults: context.faults ?? false,
  ...(context.instanceId ? { instanceId: context.instanceId } : {}),
  ...(context.warm ? { warm: { ...context.warm, seed: context.seed + 7 } } : {}),
  ...(context.interpreter ? { interpreter: { ...context.interpreter, seed: context.seed + 11 } } : {}),
});

/** A session's supervisor spec, and the context after starting it. */
function sessionStart(context: WorkerContext, description: SessionDescription, origin: SessionInput['origin']) {
  const childId = sessionChildId(description.sessionId);
  const childInput = sessionInputOf(context, description, origin);
  const input: SupervisorInput = {
    childId,
    restart: 'transient',
    intensity: context.sessions.intensity,
    backoff: context.sessions.backoff,
    shutdownTimeoutMs: context.drainTimeoutMs + 5_000,
    stopEvent: { type: 'session.drain', atMs: 0 },
    // A restart starts from the latest reported description (supervisor.child_exited below) and prepares the workspace again, reading the disk's.
    childInput: childInput as unknown as Record<string, unknown>,
    seed: context.seed,
  };
  return {
    spawn: { id: supervisorIdOf(childId), systemId: supervisorIdOf(childId), input } as const,
    assign: {
      held: { ...context.held, [description.sessionId]: { description, state: 'INITIALIZING' as const, workspacePath: '', failureReason: '', gone: false, incarnation: '' } },
      live: [...context.live, description.sessionId],
    },
  };
}

const sessionOf = (id: string): string | undefined => (id.startsWith('sup:session:') ? id.slice('sup:session:'.length) : undefined);

export const workerMachine = setup({
  types: {
    context: {} as WorkerContext,
    input: {} as WorkerInput,
    events: {} as WorkerEvent,
    emitted: {} as WorkerEmitted,
  },
  actors: {
    // Each provided with its child logic by the worker process.
    sessionSupervisor: supervisorMachine,
    // Provided by the worker: removes a session that has no actor (files, description, lock).
    discardSession: {} as PromiseActorLogic<void, { sessionId: string }>,
    linkSupervisor: supervisorMachine,
    poolSupervisor: supervisorMachine,
  },
  guards: {
    isHeld: ({ context }, p: { sessionId: string }) => p.sessionId in context.held,
    isDown: ({ context }, p: { sessionId: string }) => context.down.includes(p.sessionId),
    hasNoLiveSessions: ({ context }) => context.live.length === 0,
    linkStopped: ({ context }) => !context.linkAlive,
    poolStopped: ({ context }) => !context.poolAlive,
  },
  actions: {
    reply: enqueueActions(({ enqueue }, p: { requestId: string; sessionId: string; error?: ErrorInfo }) => enqueue.emit(replyEvent(p))),
    startSession: enqueueActions(({ context, enqueue }, p: { description: SessionDescription; origin: SessionInput['origin'] }) => {
      const s = sessionStart(context, p.description, p.origin);
      enqueue.spawnChild('sessionSupervisor', s.spawn);
      enqueue.assign(s.assign);
    }),
    createSession: enqueueActions(({ context, enqueue }, e: Extract<WorkerCommand, { type: 'command.create' }>) => {
      const id = e.description.sessionId;
      const refusal = id in context.held
        ? errorInfo('FAILED_PRECONDITION', `session ${id} already exists on worker ${context.workerId}`)
        : Object.keys(context.held).length >= context.maxSessions
          ? errorInfo('CAPACITY_EXHAUSTED', `worker ${context.workerId} already runs its maximum of ${context.maxSessions} sessions (MAX_SESSIONS)`)
          : undefined;
      if (refusal) {
        enqueue.emit(replyEvent({ requestId: e.requestId, sessionId: id, error: refusal }));
        return;
      }
      const s = sessionStart(context, e.description, 'create');
      enqueue.spawnChild('sessionSupervisor', s.spawn);
      enqueue.assign(s.assign);
      enqueue.emit(replyEvent({ requestId: e.requestId, sessionId: id }));
    }),
    toSession: enqueueActions(({ enqueue, system }, p: { sessionId: string; event: { type: string } & Record<string, unknown> }) => {
      const ref = system.get(sessionChildId(p.sessionId)) as AnyActorRef | undefined;
      if (ref) enqueue.sendTo(ref, p.event);
    }),
    noteReport: enqueueActions(({ context, enqueue }, p: { report: SessionReport }) => {
      const id = p.report.description.sessionId;
      const held = { ...context.held };
      if (p.report.gone) delete held[id];
      else held[id] = p.report;
      enqueue.assign({ held, down: context.down.filter((d) => d !== id) });
      enqueue.emit({ type: 'session.report', report: p.report });
    }),
    /** Metadata changes the session's actor took but did not save (it crashed, or ended): they fail, saying why. */
    failMetadataAsks: enqueueActions(({ context, enqueue }, p: { sessionId: string; error: ErrorInfo }) => {
      const asks = context.metadataAsks[p.sessionId];
      if (!asks) return;
      for (const requestId of asks) enqueue.emit(replyEvent({ requestId, sessionId: p.sessionId, error: p.error }));
      const rest = { ...context.metadataAsks };
      delete rest[p.sessionId];
      enqueue.assign({ metadataAsks: rest });
    }),
    answerLink: enqueueActions(({ context, enqueue, system }) => {
      const link = system.get(LINK_ID) as AnyActorRef | undefined;
      if (link) enqueue.sendTo(link, { type: 'link.sessions', sessions: Object.values(context.held) });
    }),
    /** A new registration: the coordinator ended the tasks it had sent before as WORKER_LOST, so stop them here too. */
    orphanTasks: enqueueActions(({ context, enqueue, system }, p: { registrationId: string; atMs: number }) => {
      if (context.registrationId && context.registrationId !== p.registrationId) {
        for (const id of Object.keys(context.held)) {
          const ref = system.get(sessionChildId(id)) as AnyActorRef | undefined;
          if (ref) enqueue.sendTo(ref, { type: 'tasks.orphan', reason: 'the coordinator ended this task (WORKER_LOST) when the link dropped', atMs: p.atMs });
        }
      }
      enqueue.assign({ registrationId: p.registrationId });
    }),
    /** Each session's supervisor asks it to drain (a session waiting for a restart just stops). */
    drainSessions: enqueueActions(({ context, enqueue, self }, p: { atMs: number }) => {
      for (const id of context.live) {
        const sup = self.getSnapshot().children[supervisorIdOf(sessionChildId(id))];
        if (sup) enqueue.sendTo(sup, { type: 'supervisor.stop', stopEvent: { type: 'session.drain', atMs: p.atMs } });
      }
    }),
    stopSupervisor: enqueueActions(({ enqueue, self }, p: { childId: string }) => {
      const sup = self.getSnapshot().children[supervisorIdOf(p.childId)];
      if (sup) enqueue.sendTo(sup, { type: 'supervisor.stop' });
    }),
    warn: enqueueActions(({ enqueue }, p: { message: string; details: Record<string, string> }) => enqueue.emit({ type: 'worker.warning', ...p })),
    fatal: enqueueActions(({ enqueue }, p: { message: string }) => enqueue.emit({ type: 'worker.fatal', message: p.message })),
  },
}).createMachine({
  id: 'worker',
  context: ({ input }) => ({ ...input, held: {}, live: [], down: [], discarding: {}, metadataAsks: {}, linkAlive: true, poolAlive: true, registrationId: '', escalation: '' }),
  entry: enqueueActions(({ context, enqueue }) => {
    // Start order: the pool, the adopted sessions, then the link (it registers with every session held).
    enqueue.spawnChild('poolSupervisor', {
      id: supervisorIdOf(POOL_ID),
      systemId: supervisorIdOf(POOL_ID),
      input: { childId: POOL_ID, restart: 'permanent', intensity: context.pool.intensity, backoff: context.pool.backoff, shutdownTimeoutMs: 10_000, stopEvent: null, childInput: {}, seed: context.seed + 1 } satisfies SupervisorInput,
    });
    for (const description of context.adopt) enqueue({ type: 'startSession', params: { description, origin: 'adopt' } });
    enqueue.spawnChild('linkSupervisor', {
      id: supervisorIdOf(LINK_ID),
      systemId: supervisorIdOf(LINK_ID),
      input: {
        childId: LINK_ID,
        restart: 'permanent',
        intensity: context.link.intensity,
        backoff: context.link.backoff,
        shutdownTimeoutMs: context.link.shutdownTimeoutMs,
        stopEvent: { type: 'link.deregister', reason: 'worker shutting down' },
        childInput: { workerId: context.workerId, backoff: context.link.backoff, seed: context.seed + 2 },
        seed: context.seed + 3,
      } satisfies SupervisorInput,
    });
    enqueue.assign({ adopt: [] });
  }),
  on: {
    'session.changed': { actions: { type: 'noteReport', params: ({ event }) => event } },
    'task.refused': { actions: enqueueActions(({ enqueue, event }) => enqueue.emit({ type: 'task.error', sessionId: event.sessionId, taskId: event.taskId, error: event.error })) },
    'command.destroy': [
      // No actor to drain it (restarting, or given up on): its supervisor stops and the files go.
      {
        guard: { type: 'isDown', params: ({ event }) => event },
        actions: enqueueActions(({ context, enqueue, event }) => {
          enqueue.stopChild(supervisorIdOf(sessionChildId(event.sessionId)));
          if (event.sessionId in context.discarding) return;
          enqueue.assign({ discarding: { ...context.discarding, [event.sessionId]: event.requestId }, live: context.live.filter((l) => l !== event.sessionId) });
          enqueue.spawnChild('discardSession', { id: `discard:${event.sessionId}`, input: { sessionId: event.sessionId } });
        }),
      },
      { guard: { type: 'isHeld', params: ({ event }) => event }, actions: { type: 'toSession', params: ({ event }) => ({ sessionId: event.sessionId, event: { type: 'session.destroy', atMs: event.atMs } }) } },
      // Idempotent: a session this worker does not hold is already gone.
      { actions: { type: 'reply', params: ({ event }) => ({ requestId: event.requestId, sessionId: event.sessionId }) } },
    ],
    'command.cancel': { actions: { type: 'toSession', params: ({ event }) => ({ sessionId: event.sessionId, event: { type: 'task.cancel', taskId: event.taskId, reason: event.reason, atMs: event.atMs } }) } },
    // Answered once the change is on disk (metadata.saved), so a client told "done" never loses it.
    'command.put_metadata': [
      {
        guard: { type: 'isDown', params: ({ event }) => event },
        actions: enqueueActions(({ context, enqueue, event }) => {
          const last = context.held[event.sessionId];
          const error = context.live.includes(event.sessionId)
            ? errorInfo('UNAVAILABLE', `session ${event.sessionId} is restarting (its actor crashed); change its metadata again shortly`)
            : last?.state !== 'FAILED'
              ? errorInfo('UNAVAILABLE', `session ${event.sessionId} was shut down with this worker; change its metadata once the worker is back`)
              : errorInfo('FAILED_PRECONDITION', `session ${event.sessionId} has FAILED (${last.failureReason || 'its actor kept crashing'}); its metadata can no longer change`);
          enqueue.emit(replyEvent({ requestId: event.requestId, sessionId: event.sessionId, error }));
        }),
      },
      {
        guard: { type: 'isHeld', params: ({ event }) => event },
        actions: [
          assign({ metadataAsks: ({ context, event }) => ({ ...context.metadataAsks, [event.sessionId]: [...(context.metadataAsks[event.sessionId] ?? []), event.requestId] }) }),
          { type: 'toSession', params: ({ event }) => ({ sessionId: event.sessionId, event: { type: 'metadata.put', requestId: event.requestId, metadata: event.metadata, merge: event.merge, atMs: event.atMs } }) },
        ],
      },
      { actions: { type: 'reply', params: ({ event, context }) => ({ requestId: event.requestId, sessionId: event.sessionId, error: errorInfo('SESSION_NOT_FOUND', `session ${event.sessionId} does not exist on worker ${context.workerId}`) }) } },
    ],
    'metadata.saved': {
      actions: enqueueActions(({ context, enqueue, event }) => {
        const saved = new Set(event.requestIds);
        const left = (context.metadataAsks[event.sessionId] ?? []).filter((r) => !saved.has(r));
        const rest = { ...context.metadataAsks, [event.sessionId]: left };
        if (left.length === 0) delete rest[event.sessionId];
        enqueue.assign({ metadataAsks: rest });
        for (const requestId of event.requestIds) enqueue.emit(replyEvent({ requestId, sessionId: event.sessionId, ...(event.error ? { error: event.error } : {}) }));
      }),
    },
    'link.collect': { actions: 'answerLink' },
    'link.registered': { actions: { type: 'orphanTasks', params: ({ event }) => event } },
    'link.down': {},
    'link.refused': {
      actions: [
        assign({ escalation: ({ event }) => event.reason }),
        { type: 'fatal', params: ({ event }) => ({ message: `${event.reason}; stopping (check WORKER_TOKEN, or the client certificate with mutual TLS)` }) },
        enqueueActions(({ enqueue }) => enqueue.raise({ type: 'worker.shutdown', atMs: 0 })),
      ],
    },
    'worker.fault': {
      actions: enqueueActions(({ context, enqueue, system }) => {
        for (const id of Object.keys(context.held)) {
          const ref = system.get(sessionChildId(id)) as AnyActorRef | undefined;
          if (ref) enqueue.sendTo(ref, { type: 'session.fault' });
        }
      }),
    },
    // A session actor that ended abnormally and is being restarted: down until it reports again.
    'supervisor.child_exited': {
      actions: enqueueActions(({ context, enqueue, event, self }) => {
        const id = event.childId.startsWith('session:') ? event.childId.slice('session:'.length) : undefined;
        if (id === undefined) return;
        if (event.restarting && id in context.held && !context.down.includes(id)) enqueue.assign({ down: [...context.down, id] });
        // The next run starts from the latest description, not the one it was first given: until its
        // workspace is prepared (which reads the disk) it may report or even save it.
        const last = context.held[id];
        const sup = self.getSnapshot().children[supervisorIdOf(event.childId)];
        if (event.restarting && last && sup) enqueue.sendTo(sup, { type: 'supervisor.update_input', childInput: sessionInputOf(context, last.description, 'adopt') as unknown as Record<string, unknown> });
        const why = event.abnormal ? `its actor ${event.reason || 'crashed'}` : 'it shut down';
        enqueue({ type: 'failMetadataAsks', params: { sessionId: id, error: errorInfo('UNAVAILABLE', `session ${id} stopped before the metadata change was saved (${why}); change it again`) } });
      }),
    },
    'supervisor.escalated': [
      {
        guard: ({ event }) => event.childId === LINK_ID,
        actions: [assign({ escalation: ({ event }) => `coordinator link: ${event.reason}` }), enqueueActions(({ enqueue }) => enqueue.raise({ type: 'worker.shutdown', atMs: 0 }))],
      },
      {
        guard: ({ event }) => event.childId === POOL_ID,
        actions: { type: 'warn', params: ({ event }) => ({ message: 'the venv pool failed too often; venvs are made on demand', details: { reason: event.reason } }) },
      },
      {
        // A session that keeps crashing stays on disk, reported FAILED; a destroy still removes it.
        actions: enqueueActions(({ context, enqueue, event }) => {
          const id = event.childId.slice('session:'.length);
          const last = context.held[id];
          if (!last) return;
          const report: SessionReport = { ...last, state: 'FAILED', failureReason: `the session actor kept crashing: ${event.reason}` };
          enqueue({ type: 'noteReport', params: { report } });
          enqueue.assign({ down: [...context.down.filter((d) => d !== id), id] });
        }),
      },
    ],
    'xstate.done.actor.*': {
      actions: enqueueActions(({ context, enqueue, event }) => {
        const childId = event.type.slice('xstate.done.actor.'.length);
        enqueue.stopChild(childId);
        if (childId.startsWith('discard:')) {
          const id = childId.slice('discard:'.length);
          const held = { ...context.held };
          const last = held[id];
          delete held[id];
          const discarding = { ...context.discarding };
          const requestId = discarding[id] ?? '';
          delete discarding[id];
          enqueue.assign({ held, discarding, down: context.down.filter((d) => d !== id), live: context.live.filter((l) => l !== id) });
          if (last) enqueue.emit({ type: 'session.report', report: { ...last, state: 'TERMINATED', gone: true } });
          if (requestId) enqueue.emit(replyEvent({ requestId, sessionId: id }));
          return;
        }
        if (childId === supervisorIdOf(LINK_ID)) return enqueue.assign({ linkAlive: false });
        if (childId === supervisorIdOf(POOL_ID)) return enqueue.assign({ poolAlive: false });
        const id = sessionOf(childId);
        if (id === undefined) return;
        // A destroyed session is no longer held (its gone report came first). One drained for the
        // shutdown stays held with no actor, its files on disk: a destroy now removes them (as for a
        // session given up on), and the next start adopts it otherwise. An escalated one stays FAILED.
        const drained = id in context.held;
        const error = drained
          ? errorInfo('UNAVAILABLE', `session ${id} was shut down with its worker before the metadata change was saved; change it again once it is back`)
          : errorInfo('FAILED_PRECONDITION', `session ${id} was destroyed before the metadata change was saved`);
        enqueue({ type: 'failMetadataAsks', params: { sessionId: id, error } });
        enqueue.assign({ live: context.live.filter((s) => s !== id), down: drained && !context.down.includes(id) ? [...context.down, id] : context.down });
      }),
    },
    // Supervisors do not crash; if one does, its child is gone: say so and carry on.
    'xstate.error.actor.*': {
      actions: enqueueActions(({ context, enqueue, event, self }) => {
        const childId = removeFailedChild(event, self, enqueue);
        if (childId.startsWith('discard:')) {
          const id = childId.slice('discard:'.length);
          const discarding = { ...context.discarding };
          const requestId = discarding[id] ?? '';
          delete discarding[id];
          enqueue.assign({ discarding });
          if (requestId) enqueue.emit(replyEvent({ requestId, sessionId: id, error: errorInfo('INTERNAL', `session ${id} could not be removed: ${String((event as { error?: unknown }).error)}`) }));
          return;
        }
        enqueue({ type: 'warn', params: { message: 'a supervisor crashed', details: { childId, error: String((event as { error?: unknown }).error) } } });
      }),
    },
  },
  initial: 'running',
  states: {
    running: {
      on: {
        'command.create': { actions: { type: 'createSession', params: ({ event }) => event } },
        'command.task': [
          {
            guard: { type: 'isDown', params: ({ event }) => ({ sessionId: event.spec.sessionId }) },
            actions: enqueueActions(({ context, enqueue, event }) => {
              const failed = context.held[event.spec.sessionId]?.state === 'FAILED';
              const error = failed
                ? errorInfo('FAILED_PRECONDITION', `session ${event.spec.sessionId} has FAILED (${context.held[event.spec.sessionId]?.failureReason}); destroy it and create a new one`)
                : errorInfo('UNAVAILABLE', `session ${event.spec.sessionId} is restarting (its actor crashed); run the task again shortly`);
              enqueue.emit({ type: 'task.error', sessionId: event.spec.sessionId, taskId: event.spec.taskId, error });
            }),
          },
          { guard: { type: 'isHeld', params: ({ event }) => ({ sessionId: event.spec.sessionId }) }, actions: { type: 'toSession', params: ({ event }) => ({ sessionId: event.spec.sessionId, event: { type: 'task.submit', spec: event.spec, atMs: event.atMs } }) } },
          {
            actions: enqueueActions(({ context, enqueue, event }) =>
              enqueue.emit({ type: 'task.error', sessionId: event.spec.sessionId, taskId: event.spec.taskId, error: errorInfo('SESSION_NOT_FOUND', `session ${event.spec.sessionId} does not exist on worker ${context.workerId}`) }),
            ),
          },
        ],
        'worker.shutdown': 'draining',
      },
    },
    draining: {
      entry: { type: 'drainSessions', params: ({ event }) => ({ atMs: atMsOf(event) }) },
      on: {
        'command.create': { actions: { type: 'reply', params: ({ event }) => ({ requestId: event.requestId, sessionId: event.description.sessionId, error: errorInfo('UNAVAILABLE', 'this worker is shutting down; the session will be placed elsewhere if you retry') }) } },
        'command.task': {
          actions: enqueueActions(({ enqueue, event }) =>
            enqueue.emit({ type: 'task.error', sessionId: event.spec.sessionId, taskId: event.spec.taskId, error: errorInfo('UNAVAILABLE', 'this worker is shutting down; run the task again once it is back') }),
          ),
        },
      },
      always: { guard: 'hasNoLiveSessions', target: 'deregistering' },
    },
    // Reverse start order: sessions (above), then the link, then the pool.
    deregistering: {
      entry: { type: 'stopSupervisor', params: { childId: LINK_ID } },
      always: { guard: 'linkStopped', target: 'stoppingPool' },
    },
    stoppingPool: {
      entry: { type: 'stopSupervisor', params: { childId: POOL_ID } },
      always: { guard: 'poolStopped', target: 'stopped' },
    },
    stopped: { type: 'final' },
  },
});

export type WorkerActor = ActorRefFrom<typeof workerMachine>;
export type WorkerSnapshot = SnapshotFrom<typeof workerMachine>;
