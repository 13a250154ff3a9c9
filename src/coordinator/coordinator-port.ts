import { waitFor, type AnyActorRef } from 'xstate';
import { isEnvName } from '../domain/env.js';
import { CodegenError, invalidArgument, type ErrorInfo } from '../domain/errors.js';
import { isSafeId, newSessionId, newTaskId } from '../domain/ids.js';
import type { SessionConfig, SessionView, WorkerView } from '../domain/sessions.js';
import type { TaskConstraints, TaskOutcome, TaskSpec, TaskUpdate } from '../domain/tasks.js';
import { acceptsTasks, findTaskRecord, sessionChildId, sessionStateOf, type SessionActor, type SessionSnapshot } from '../../machines/session.machine.js';
import type { TaskActor, TaskEmitted } from '../../machines/task.machine.js';
import type { CoordinatorActor } from '../../machines/coordinator.machine.js';
import type { CoordinatorPort, CreateSessionInput, SubmitTaskInput, TaskHandle, TaskView } from './port.js';

export interface ActorPortOptions {
  createTimeoutMs: number;
  /** Bound on how long DestroySession waits for the session to drain and release. */
  destroyTimeoutMs: number;
}


/**
 * The CoordinatorPort over the coordinator's actor system: sends events, reads snapshots,
 * listens to emitted events. It keeps no state of its own.
 */
export class ActorCoordinatorPort implements CoordinatorPort {
  constructor(
    private readonly root: CoordinatorActor,
    private readonly opts: ActorPortOptions,
  ) {}

  private sessionActor(sessionId: string): SessionActor {
    const actor = sessionId ? (this.root.system.get(sessionChildId(sessionId)) as SessionActor | undefined) : undefined;
    if (!actor || actor.getSnapshot().status !== 'active') throw new CodegenError('SESSION_NOT_FOUND', `session_id: no session ${JSON.stringify(sessionId)} exists (create one first, or check the id)`);
    return actor;
  }

  private sessionActors(): SessionActor[] {
    const children = this.root.getSnapshot().children as Record<string, AnyActorRef | undefined>;
    return Object.entries(children)
      .filter(([id, a]) => id.startsWith('session:') && a && a.getSnapshot().status === 'active')
      .map(([, a]) => a as SessionActor);
  }

  async createSession(input: CreateSessionInput): Promise<SessionView> {
    const config: SessionConfig = {
      env_vars: input.config?.env_vars ?? {},
      allow_network: input.config?.allow_network ?? false,
      language: input.config?.language || 'python',
    };
    if (config.language !== 'python') throw invalidArgument('config.language', `only "python" is supported, not ${JSON.stringify(config.language)}`);
    for (const name of Object.keys(config.env_vars)) {
      if (!isEnvName(name)) throw invalidArgument(`config.env_vars.${name}`, 'is not a valid environment variable name');
    }
    const workspaceId = input.workspaceId ?? '';
    if (workspaceId && !isSafeId(workspaceId)) throw invalidArgument('workspace_id', 'letters, digits, ".", "_" and "-" only, at most 128');
    const sessionId = newSessionId();
    let rejected: ErrorInfo | undefined;
    const sub = this.root.on('session.rejected', (e) => {
      if (e.sessionId === sessionId) rejected = e.error;
    });
    try {
      this.root.send({ type: 'session.create', sessionId, workerId: input.workerId ?? '', workspaceId: workspaceId || sessionId, config, metadata: { ...(input.metadata ?? {}) } });
    } finally {
      sub.unsubscribe();
    }
    if (rejected) throw CodegenError.from(rejected);
    const actor = this.sessionActor(sessionId);
    let snap: SessionSnapshot;
    try {
      snap = await waitFor(actor, (s) => s.status !== 'active' || sessionStateOf(s) !== 'INITIALIZING', { timeout: this.opts.createTimeoutMs });
    } catch {
      actor.send({ type: 'session.destroy', force: true, requestId: '' });
      throw new CodegenError('INTERNAL', `the worker did not make session ${sessionId} ready within ${this.opts.createTimeoutMs} ms`);
    }
    if (sessionStateOf(snap) !== 'READY' && sessionStateOf(snap) !== 'BUSY') {
      const reason = snap.context.failureReason || `session ended in state ${sessionStateOf(snap)}`;
      if (snap.status === 'active') actor.send({ type: 'session.destroy', force: true, requestId: '' });
      throw new CodegenError('INTERNAL', `session could not be created: ${reason}`);
    }
    return viewOf(snap);
  }

  async destroySession(sessionId: string, options: { force?: boolean } = {}): Promise<{ destroyed: boolean; artifacts: string[] }> {
    const actor = this.sessionActor(sessionId);
    const snap = actor.getSnapshot();
    const state = sessionStateOf(snap);
    if (state === 'BUSY' && !options.force) {
      throw new CodegenError('FAILED_PRECONDITION', `session ${sessionId} is BUSY running task ${snap.context.current}; wait for it, cancel it, or destroy with force`);
    }
    actor.send({ type: 'session.destroy', force: Boolean(options.force), requestId: '' });
    try {
      await waitFor(actor, (s) => s.status !== 'active', { timeout: this.opts.destroyTimeoutMs });
    } catch {
      throw new CodegenError('INTERNAL', `session ${sessionId} did not finish shutting down within ${this.opts.destroyTimeoutMs} ms; it is still DRAINING`);
    }
    return { destroyed: true, artifacts: [] };
  }

  getSession(sessionId: string): SessionView {
    return viewOf(this.sessionActor(sessionId).getSnapshot());
  }

  listSessions(): SessionView[] {
    return this.sessionActors()
      .map((a) => viewOf(a.getSnapshot()))
      .sort((a, b) => a.createdAtMs - b.createdAtMs || a.sessionId.localeCompare(b.sessionId));
  }

  getMetadata(sessionId: string): Record<string, string> {
    return { ...this.sessionActor(sessionId).getSnapshot().context.metadata };
  }

  putMetadata(sessionId: string, metadata: Record<string, string>, merge: boolean): Record<string, string> {
    const actor = this.sessionActor(sessionId);
    actor.send({ type: 'metadata.put', metadata: { ...metadata }, merge });
    return { ...actor.getSnapshot().context.metadata };
  }

  async submitTask(input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle> {
    const actor = this.sessionActor(input.sessionId);
    if (input.taskId && !isSafeId(input.taskId)) throw invalidArgument('task_id', 'letters, digits, ".", "_" and "-" only, at most 128');
    const sequence = input.sequence ?? 0;
    if (!Number.isSafeInteger(sequence) || sequence < 0) throw invalidArgument('sequence', 'must be a non-negative integer');
    const first = findTaskRecord(actor.getSnapshot(), { taskId: input.taskId, sequence });
    if (first) return { taskId: first.taskId, duplicate: true, detach: this.follow(actor, first.taskId, onUpdate) };
    if (input.taskId && this.findSessionOfTask(input.taskId)) {
      throw invalidArgument('task_id', `${input.taskId} is already used by a task of another session`);
    }
    const state = sessionStateOf(actor.getSnapshot());
    if (!acceptsTasks(state)) {
      const reason = actor.getSnapshot().context.failureReason;
      throw new CodegenError('FAILED_PRECONDITION', `session ${input.sessionId} is ${state}${reason ? ` (${reason})` : ''} and takes no tasks; create a new session`);
    }
    const constraints: TaskConstraints = {
      timeout_seconds: input.constraints?.timeout_seconds ?? 0,
      max_memory_bytes: input.constraints?.max_memory_bytes ?? 0,
      max_output_bytes: input.constraints?.max_output_bytes ?? 0,
      allow_network: input.constraints?.allow_network ?? false,
    };
    const spec: TaskSpec = { taskId: input.taskId || newTaskId(), sessionId: input.sessionId, call: input.call, constraints, sequence };
    actor.send({ type: 'task.submit', spec });
    return { taskId: spec.taskId, duplicate: false, detach: this.follow(actor, spec.taskId, onUpdate) };
  }

  /** Streams a task's further updates; a finished task gets its outcome on the next tick. */
  private follow(session: SessionActor, taskId: string, onUpdate: (u: TaskUpdate, taskId: string) => void): () => void {
    const task = session.system.get(`task:${taskId}`) as TaskActor | undefined;
    let active = true;
    const deliver = (u: TaskUpdate) => {
      if (!active) return;
      if (u.type === 'outcome') active = false;
      try {
        onUpdate(u, taskId);
      } catch {
        // a front door's listener must not break the actor system
      }
    };
    if (task && task.getSnapshot().status === 'active') {
      const sub = task.on('task.update', (e: TaskEmitted) => {
        deliver(e.update);
        if (e.update.type === 'outcome') sub.unsubscribe();
      });
      return () => {
        active = false;
        sub.unsubscribe();
      };
    }
    const outcome = findTaskRecord(session.getSnapshot(), { taskId })?.outcome ?? (task?.getSnapshot().output as TaskOutcome | undefined);
    if (outcome) queueMicrotask(() => deliver({ type: 'outcome', outcome }));
    return () => {
      active = false;
    };
  }

  private findSessionOfTask(taskId: string, sessionId?: string): SessionActor | undefined {
    if (sessionId) {
      const actor = this.sessionActor(sessionId);
      return findTaskRecord(actor.getSnapshot(), { taskId }) ? actor : undefined;
    }
    return this.sessionActors().find((a) => findTaskRecord(a.getSnapshot(), { taskId }));
  }

  private taskSession(taskId: string, sessionId?: string): SessionActor {
    if (!taskId) throw invalidArgument('task_id', 'is required');
    const actor = this.findSessionOfTask(taskId, sessionId);
    if (!actor) throw new CodegenError('TASK_NOT_FOUND', `task_id: no task ${JSON.stringify(taskId)}${sessionId ? ` in session ${sessionId}` : ''} (finished tasks are kept for the session's last 256 tasks)`);
    return actor;
  }

  async cancelTask(taskId: string, reason: string, sessionId?: string) {
    const session = this.taskSession(taskId, sessionId);
    const before = findTaskRecord(session.getSnapshot(), { taskId })!;
    if (before.outcome) return { cancelled: false, state: before.state };
    session.send({ type: 'task.cancel', taskId, reason: reason || 'cancelled by the client' });
    return { cancelled: true, state: findTaskRecord(session.getSnapshot(), { taskId })?.state ?? before.state };
  }

  getTask(taskId: string, sessionId?: string): TaskView {
    const session = this.taskSession(taskId, sessionId);
    const rec = findTaskRecord(session.getSnapshot(), { taskId })!;
    const task = session.system.get(`task:${taskId}`) as TaskActor | undefined;
    const progress = task?.getSnapshot().context.progress;
    const end = rec.endedAtMs || Date.now();
    return {
      taskId,
      sessionId: session.getSnapshot().context.sessionId,
      tool: rec.tool,
      state: rec.state,
      ...(progress ? { progress } : {}),
      elapsedMs: rec.startedAtMs ? end - rec.startedAtMs : 0,
      ...(rec.outcome ? { outcome: rec.outcome } : {}),
    };
  }

  waitTask(taskId: string, timeoutMs: number): Promise<TaskOutcome | undefined> {
    const session = this.taskSession(taskId);
    return new Promise((resolve) => {
      let detach = () => {};
      const timer = setTimeout(() => {
        detach();
        resolve(undefined);
      }, Math.max(0, timeoutMs));
      detach = this.follow(session, taskId, (u) => {
        if (u.type !== 'outcome') return;
        clearTimeout(timer);
        resolve(u.outcome);
      });
    });
  }

  listWorkers(): WorkerView[] {
    const ctx = this.root.getSnapshot().context;
    return Object.entries(ctx.workers)
      .map(([workerId, w]) => ({
        workerId,
        state: w.online ? 'online' : 'connecting',
        maxSessions: w.maxSessions,
        sessions: Object.values(ctx.placements).filter((id) => id === workerId).length,
        isolation: w.isolation,
      }))
      .sort((a, b) => a.workerId.localeCompare(b.workerId));
  }
}

export function viewOf(snap: SessionSnapshot): SessionView {
  const c = snap.context;
  const live = (c.current ? 1 : 0) + c.queue.length;
  return {
    sessionId: c.sessionId,
    workerId: c.workerId,
    workspaceId: c.workspaceId,
    workspacePath: c.workspacePath,
    state: sessionStateOf(snap),
    createdAtMs: c.createdAtMs,
    lastActivityMs: c.lastActivityMs,
    activeTasks: live,
    recentTasks: c.order.slice(-20),
    metadata: { ...c.metadata },
    failureReason: c.failureReason,
  };
}
