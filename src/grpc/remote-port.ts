/**
 * The CoordinatorPort of a coordinator in another process, over its public gRPC API (for
 * `codegen-mcp mcp` with COORDINATOR_ADDR). Every method is asynchronous here, since each is a
 * round trip; the MCP front door awaits them all. gRPC statuses come back as CodegenErrors.
 *
 * Tasks stream over ExecuteTask. `detach` stops forwarding updates but keeps reading the stream
 * (cancelling the call would cancel the task on the coordinator), so a later getTask/waitTask
 * of this client still has the full outcome; tasks this client did not start are followed by
 * polling GetTaskStatus.
 */
import * as grpc from '@grpc/grpc-js';
import type { CoordinatorPort, CreateSessionInput, SubmitTaskInput, TaskHandle, TaskView } from '../coordinator/port.js';
import { CodegenError, type ErrorInfo } from '../domain/errors.js';
import { newTaskId } from '../domain/ids.js';
import type { SessionView, WorkerView } from '../domain/sessions.js';
import { isFinalTaskState, taskStateOf, type TaskOutcome, type TaskProgress, type TaskState, type TaskUpdate } from '../domain/tasks.js';
import { connectCoordinator, unary, type CoordinatorClients, type RequestOf, type ResponseOf, type UnaryMethod } from '../wire/client.js';
import { num, decodeError, decodeSessionState, decodeTaskStatus, decodeTaskUpdate, encodeToolRequest } from '../wire/codecs.js';
import type { GetSessionStatusResponse__Output, StatusResponse__Output, TaskRequest, TaskResponse__Output } from '../wire/messages.js';
import { remoteError } from '../wire/status.js';

/** The port with every answer asynchronous. */
export type AsyncCoordinatorPort = {
  [K in keyof CoordinatorPort]: CoordinatorPort[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
};

export interface RemotePortOptions {
  /** Deadline of each unary call. Default 120 s (session creation may build a venv). */
  deadlineMs?: number;
  channelOptions?: grpc.ChannelOptions;
  /** How long submitTask waits for an early refusal (unknown session, bad input) before answering. Default 500 ms. */
  acceptWaitMs?: number;
  /** Polling interval of waitTask for tasks this client did not start. Default 500 ms. */
  pollIntervalMs?: number;
  /** Finished tasks remembered for getTask/waitTask. Default 1000. */
  maxRememberedTasks?: number;
}

const taskStates: readonly TaskState[] = ['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'errored'];
const toTaskState = (v: unknown, fallback: TaskState): TaskState => (taskStates.includes(v as TaskState) ? (v as TaskState) : fallback);

interface RemoteTask {
  taskId: string;
  sessionId: string;
  tool: string;
  state: TaskState;
  progress?: TaskProgress;
  outcome?: TaskOutcome;
  startedAt: number;
  listeners: Set<(update: TaskUpdate, taskId: string) => void>;
  stream?: grpc.ClientReadableStream<TaskResponse__Output>;
}

const noMetadata = {
  workerId: '',
  startedAtMs: 0,
  finishedAtMs: 0,
  durationMs: 0,
  queuedMs: 0,
};

export class RemoteCoordinatorPort implements AsyncCoordinatorPort {
  private readonly clients: CoordinatorClients;
  private readonly tasks = new Map<string, RemoteTask>();
  private readonly opts: Required<Omit<RemotePortOptions, 'channelOptions'>>;
  /** Who failed, in the messages of errors the coordinator did not send itself. */
  private readonly peer: string;
  private closed = false;

  constructor(
    readonly address: string,
    options: RemotePortOptions = {},
  ) {
    this.clients = connectCoordinator(address, options.channelOptions ?? {});
    this.peer = `the coordinator at ${address}`;
    this.opts = {
      deadlineMs: options.deadlineMs ?? 120_000,
      acceptWaitMs: options.acceptWaitMs ?? 500,
      pollIntervalMs: options.pollIntervalMs ?? 500,
      maxRememberedTasks: options.maxRememberedTasks ?? 1000,
    };
  }

  private async call<C extends grpc.Client, M extends UnaryMethod<C>>(client: C, method: M, request: RequestOf<C, M>): Promise<ResponseOf<C, M>> {
    if (this.closed) throw new CodegenError('FAILED_PRECONDITION', 'the remote coordinator port is closed');
    try {
      return await unary(client, method, request, { deadlineMs: this.opts.deadlineMs });
    } catch (err) {
      throw remoteError(err, this.peer);
    }
  }

  // ---- sessions ---------------------------------------------------------------------------

  async createSession(input: CreateSessionInput): Promise<SessionView> {
    const res = await this.call(this.clients.sessions, 'CreateSession', {
      worker_id: input.workerId ?? '',
      workspace_id: input.workspaceId ?? '',
      user_id: input.userId ?? '',
      config: { env_vars: input.config?.env_vars ?? {}, allow_network: input.config?.allow_network ?? false, language: input.config?.language ?? '' },
      metadata: input.metadata ?? {},
    });
    const created = num(res.created_at_ms);
    return {
      sessionId: String(res.session_id),
      workerId: String(res.worker_id ?? ''),
      workspaceId: input.workspaceId ?? '',
      workspacePath: String(res.workspace_path ?? ''),
      state: decodeSessionState(res.state) ?? 'READY',
      createdAtMs: created,
      lastActivityMs: created,
      activeTasks: 0,
      recentTasks: [],
      metadata: { ...(res.metadata ?? {}) },
      failureReason: '',
    };
  }

  async destroySession(sessionId: string, options: { force?: boolean } = {}): Promise<{ destroyed: boolean; artifacts: string[] }> {
    const res = await this.call(this.clients.sessions, 'DestroySession', { session_id: sessionId, force: Boolean(options.force) });
    return { destroyed: Boolean(res.destroyed), artifacts: (res.artifacts ?? []).map(String) };
  }

  private viewOf(status: GetSessionStatusResponse__Output, metadata: Record<string, string>): SessionView {
    const info = status.info;
    return {
      sessionId: String(status.session_id),
      workerId: String(status.worker_id ?? ''),
      workspaceId: String(info?.workspace_id ?? ''),
      workspacePath: '',
      state: decodeSessionState(status.state) ?? decodeSessionState(info?.state) ?? 'READY',
      createdAtMs: num(info?.created_at_ms),
      lastActivityMs: num(info?.last_activity_ms),
      activeTasks: num(info?.active_tasks),
      recentTasks: (status.recent_tasks ?? []).map(String),
      metadata,
      failureReason: '',
    };
  }

  async getSession(sessionId: string): Promise<SessionView> {
    const [status, metadata] = await Promise.all([
      this.call(this.clients.sessions, 'GetSessionStatus', { session_id: sessionId }),
      this.getMetadata(sessionId),
    ]);
    return this.viewOf(status, metadata);
  }

  async listSessions(): Promise<SessionView[]> {
    const res = await this.call(this.clients.sessions, 'ListSessions', {});
    const statuses = res.sessions ?? [];
    const views: Array<SessionView | undefined> = new Array(statuses.length);
    // ListSessions carries no metadata: fetch it, a few at a time; sessions gone meanwhile are dropped.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < statuses.length) {
        const i = next++;
        const status = statuses[i]!;
        try {
          views[i] = this.viewOf(status, await this.getMetadata(String(status.session_id)));
        } catch (err) {
          if (!(err instanceof CodegenError && err.code === 'SESSION_NOT_FOUND')) throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, statuses.length) }, worker));
    return views.filter((v): v is SessionView => v !== undefined);
  }

  async getMetadata(sessionId: string): Promise<Record<string, string>> {
    const res = await this.call(this.clients.sessions, 'GetSessionMetadata', { session_id: sessionId });
    return { ...(res.metadata ?? {}) };
  }

  async putMetadata(sessionId: string, metadata: Record<string, string>, merge: boolean): Promise<Record<string, string>> {
    const res = await this.call(this.clients.sessions, merge ? 'UpdateSessionMetadata' : 'SetSessionMetadata', { session_id: sessionId, metadata });
    return { ...(res.metadata ?? {}) };
  }

  // ---- tasks ------------------------------------------------------------------------------

  private remember(task: RemoteTask): void {
    this.tasks.set(task.taskId, task);
    if (this.tasks.size <= this.opts.maxRememberedTasks) return;
    for (const [id, t] of this.tasks) {
      if (this.tasks.size <= this.opts.maxRememberedTasks) break;
      if (t.outcome) this.tasks.delete(id);
    }
  }

  private deliver(task: RemoteTask, update: TaskUpdate): void {
    if (task.outcome) return;
    if (update.type === 'progress') {
      task.progress = update.progress;
      task.state = 'running';
    } else if (update.type === 'log') {
      task.state = 'running';
    } else {
      task.outcome = update.outcome;
      task.state = taskStateOf(update.outcome);
      task.stream = undefined;
    }
    for (const listener of [...task.listeners]) {
      try {
        listener(update, task.taskId);
      } catch {
        // listeners must not break the stream
      }
    }
    if (task.outcome) task.listeners.clear();
  }

  async submitTask(input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle> {
    if (this.closed) throw new CodegenError('FAILED_PRECONDITION', 'the remote coordinator port is closed');
    const taskId = input.taskId || newTaskId();
    const known = this.tasks.get(taskId);
    if (known) {
      if (known.outcome) onUpdate({ type: 'outcome', outcome: known.outcome }, taskId);
      else known.listeners.add(onUpdate);
      return { taskId, duplicate: true, detach: () => known.listeners.delete(onUpdate) };
    }

    const task: RemoteTask = { taskId, sessionId: input.sessionId, tool: input.call.tool, state: 'queued', startedAt: Date.now(), listeners: new Set([onUpdate]) };
    const c = input.constraints ?? {};
    const request: TaskRequest = {
      task_id: taskId,
      session_id: input.sessionId,
      typed_request: encodeToolRequest(input.call),
      constraints: { timeout_seconds: c.timeout_seconds ?? 0, max_memory_bytes: c.max_memory_bytes ?? 0, max_output_bytes: c.max_output_bytes ?? 0, allow_network: c.allow_network ?? false, allowed_paths: [] },
      sequence: String(input.sequence ?? 0),
    };
    const stream = this.clients.tasks.ExecuteTask(request, new grpc.Metadata());
    task.stream = stream;

    return new Promise<TaskHandle>((resolve, reject) => {
      let answered = false;
      const handle: TaskHandle = { taskId, duplicate: false, detach: () => task.listeners.delete(onUpdate) };
      const accept = (): void => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        this.remember(task);
        resolve(handle);
      };
      const timer = setTimeout(accept, this.opts.acceptWaitMs);
      stream.on('metadata', accept);
      stream.on('data', (wire: TaskResponse__Output) => {
        accept();
        let update: TaskUpdate;
        try {
          update = decodeTaskUpdate(wire);
        } catch {
          return;
        }
        this.deliver(task, update);
      });
      stream.on('error', (err: unknown) => {
        if (task.outcome) return;
        const e = remoteError(err, this.peer);
        if (!answered) {
          answered = true;
          clearTimeout(timer);
          task.stream = undefined;
          reject(e);
          return;
        }
        this.deliver(task, { type: 'outcome', outcome: { type: 'error', error: e.toJSON() } });
      });
      stream.on('end', () => {
        accept();
        if (!task.outcome) {
          this.deliver(task, { type: 'outcome', outcome: { type: 'error', error: { code: 'INTERNAL', message: `the coordinator ended task ${taskId}'s stream without a result`, details: '', retriable: true } } });
        }
      });
    });
  }

  async cancelTask(taskId: string, reason: string, sessionId?: string): Promise<{ cancelled: boolean; state: TaskState }> {
    const res = await this.call(this.clients.tasks, 'CancelTask', { task_id: taskId, reason, session_id: sessionId ?? this.tasks.get(taskId)?.sessionId ?? '' });
    return { cancelled: Boolean(res.cancelled), state: toTaskState(res.state, 'cancelled') };
  }

  private outcomeFromStatus(res: StatusResponse__Output, state: TaskState): TaskOutcome | undefined {
    if (!isFinalTaskState(state)) return undefined;
    if (res.error && res.error.code) return { type: 'error', error: decodeError(res.error) };
    const status = decodeTaskStatus(res.status);
    if (status) return { type: 'result', status, artifacts: [], metadata: noMetadata };
    if (state === 'errored') {
      const error: ErrorInfo = { code: 'INTERNAL', message: 'the task failed', details: '', retriable: false };
      return { type: 'error', error };
    }
    const byState = { succeeded: 'SUCCESS', failed: 'FAILURE', timed_out: 'TIMEOUT', cancelled: 'CANCELLED' } as const;
    return { type: 'result', status: byState[state as keyof typeof byState] ?? 'FAILURE', artifacts: [], metadata: noMetadata };
  }

  async getTask(taskId: string, sessionId?: string): Promise<TaskView> {
    const local = this.tasks.get(taskId);
    const res = await this.call(this.clients.tasks, 'GetTaskStatus', { task_id: taskId, session_id: sessionId ?? local?.sessionId ?? '' });
    const state = toTaskState(res.state, local?.state ?? 'running');
    const p = res.progress;
    const progress = p && (p.stage || p.message || p.percent) ? { stage: String(p.stage ?? ''), message: String(p.message ?? ''), percent: Number(p.percent ?? 0), elapsedMs: num(p.elapsed_ms) } : local?.progress;
    const outcome = local?.outcome ?? this.outcomeFromStatus(res, state);
    return {
      taskId: String(res.task_id || taskId),
      sessionId: local?.sessionId ?? sessionId ?? '',
      tool: local?.tool ?? '',
      state: local?.outcome ? local.state : state,
      ...(progress ? { progress } : {}),
      elapsedMs: num(res.elapsed_ms),
      ...(outcome ? { outcome } : {}),
    };
  }

  async waitTask(taskId: string, timeoutMs: number): Promise<TaskOutcome | undefined> {
    const local = this.tasks.get(taskId);
    if (local?.outcome) return local.outcome;
    if (local?.stream) {
      return new Promise((resolve) => {
        const listener = (u: TaskUpdate): void => {
          if (u.type !== 'outcome') return;
          clearTimeout(timer);
          resolve(u.outcome);
        };
        const timer = setTimeout(() => {
          local.listeners.delete(listener);
          resolve(undefined);
        }, timeoutMs);
        local.listeners.add(listener);
      });
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const view = await this.getTask(taskId);
      if (view.outcome) return view.outcome;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise((r) => setTimeout(r, Math.min(this.opts.pollIntervalMs, left)));
    }
  }

  /** The public API has no worker listing; a remote client sees none. */
  async listWorkers(): Promise<WorkerView[]> {
    return [];
  }

  /** Closes the channel. Tasks still streaming are cancelled by the coordinator when their calls end. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.tasks.values()) t.stream?.cancel();
    this.clients.close();
  }
}
