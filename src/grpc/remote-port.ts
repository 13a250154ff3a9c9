/**
 * The CoordinatorPort of a coordinator in another process, over its public gRPC API (for
 * `codegen-mcp mcp` with COORDINATOR_ADDR). It keeps nothing: every question goes to the
 * coordinator, which knows the answer. gRPC statuses come back as CodegenErrors with the
 * coordinator's own code (carried in metadata).
 *
 * Tasks stream over ExecuteTask: the response headers say the task was accepted, an error
 * before them that it was refused. `detach` stops forwarding but lets the stream run to its end
 * (cancelling the call would tell the coordinator this caller went away); `abandon` cancels the
 * call. Tasks started elsewhere are followed with WatchTask.
 */
import * as grpc from '@grpc/grpc-js';
import { CodegenError } from '../domain/errors.js';
import { unknownCheckpoint } from '../checkpoints/store.js';
import { newTaskId } from '../domain/ids.js';
import type { SessionView, WorkerView } from '../domain/sessions.js';
import { taskStates, type TaskOutcome, type TaskState, type TaskUpdate } from '../domain/tasks.js';
import type { CheckpointView, CoordinatorPort, CreateSessionInput, SubmitTaskInput, TaskHandle, TaskView } from '../runtime/port.js';
import { waitForOutcome } from '../runtime/wait-task.js';
import { connectCoordinator, unary, type ConnectOptions, type CoordinatorClients, type RequestOf, type ResponseOf, type UnaryMethod } from '../wire/client.js';
import { decodeCheckpointInfo, decodeError, decodeLimits, decodeSessionState, decodeTaskUpdate, encodeToolRequest, num } from '../wire/codecs.js';
import type { GetSessionStatusResponse__Output, TaskRequest, TaskResponse__Output } from '../wire/messages.js';
import { TASK_DUPLICATE_METADATA, TASK_ID_METADATA } from '../wire/metadata.js';
import { remoteError } from '../wire/status.js';

export interface RemotePortOptions {
  /** Deadline of each unary call. Default 120 s (session creation may build a venv). */
  deadlineMs?: number;
  channelOptions?: grpc.ChannelOptions;
  /** The bearer credential and TLS (see wire/client.ts). */
  connect?: ConnectOptions;
}

const toTaskState = (v: unknown, fallback: TaskState): TaskState => (taskStates.includes(v as TaskState) ? (v as TaskState) : fallback);

export function sessionViewFromStatus(status: GetSessionStatusResponse__Output): SessionView {
  const info = status.info;
  return {
    sessionId: String(status.session_id),
    workerId: String(status.worker_id ?? ''),
    workspaceId: String(info?.workspace_id ?? ''),
    userId: String(info?.user_id ?? ''),
    tenant: String(info?.tenant ?? ''),
    usage: { memoryBytes: num(info?.usage?.memory_bytes), cpuMillicores: num(info?.usage?.cpu_millicores), diskBytes: num(info?.usage?.disk_bytes) },
    limits: decodeLimits(info?.limits),
    workspacePath: '',
    state: decodeSessionState(status.state) ?? decodeSessionState(info?.state) ?? 'READY',
    createdAtMs: num(info?.created_at_ms),
    lastActivityMs: num(info?.last_activity_ms),
    activeTasks: num(info?.active_tasks),
    recentTasks: (status.recent_tasks ?? []).map(String),
    metadata: { ...(status.metadata ?? {}) },
    failureReason: String(info?.failure_reason ?? ''),
    restartedAtMs: num(info?.restarted_at_ms),
    survivalNote: String(info?.survival_note ?? ''),
    unreachableSinceMs: num(info?.worker_unreachable_since_ms),
  };
}

export class RemoteCoordinatorPort implements CoordinatorPort {
  private readonly clients: CoordinatorClients;
  private readonly deadlineMs: number;
  /** Who failed, in the messages of errors the coordinator did not send itself. */
  private readonly peer: string;
  private readonly streams = new Set<grpc.ClientReadableStream<TaskResponse__Output>>();
  private closed = false;

  constructor(
    readonly address: string,
    options: RemotePortOptions = {},
  ) {
    this.clients = connectCoordinator(address, options.channelOptions ?? {}, options.connect ?? {});
    this.peer = `the coordinator at ${address}`;
    this.deadlineMs = options.deadlineMs ?? 120_000;
  }

  private async call<C extends grpc.Client, M extends UnaryMethod<C>>(client: C, method: M, request: RequestOf<C, M>): Promise<ResponseOf<C, M>> {
    this.assertOpen();
    try {
      return await unary(client, method, request, { deadlineMs: this.deadlineMs });
    } catch (err) {
      throw remoteError(err, this.peer);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new CodegenError('FAILED_PRECONDITION', 'the remote coordinator port is closed');
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
    return this.getSession(String(res.session_id));
  }

  async destroySession(sessionId: string, options: { force?: boolean; saveCheckpoint?: boolean } = {}): Promise<{ destroyed: boolean; artifacts: string[]; checkpointId: string }> {
    const res = await this.call(this.clients.sessions, 'DestroySession', { session_id: sessionId, force: Boolean(options.force), save_checkpoint: Boolean(options.saveCheckpoint) });
    return { destroyed: Boolean(res.destroyed), artifacts: (res.artifacts ?? []).map(String), checkpointId: String(res.checkpoint_id ?? '') };
  }

  // ---- checkpoints ------------------------------------------------------------------------

  async checkpointSession(sessionId: string, options: { name?: string } = {}): Promise<CheckpointView> {
    const res = await this.call(this.clients.sessions, 'CheckpointSession', { session_id: sessionId, checkpoint_name: options.name ?? '' });
    return this.getCheckpoint(String(res.checkpoint_id));
  }

  async restoreCheckpoint(checkpointId: string, options: { workerId?: string; createNew?: boolean } = {}): Promise<{ session: SessionView; checkpoint: CheckpointView }> {
    const res = await this.call(this.clients.sessions, 'RestoreSession', { checkpoint_id: checkpointId, worker_id: options.workerId ?? '', create_new_session: Boolean(options.createNew) });
    return { session: await this.getSession(String(res.session_id)), checkpoint: await this.getCheckpoint(checkpointId) };
  }

  async getCheckpoint(checkpointId: string): Promise<CheckpointView> {
    const found = (await this.listCheckpoints()).find((c) => c.checkpointId === checkpointId);
    if (!found) throw unknownCheckpoint(checkpointId);
    return found;
  }

  async listCheckpoints(sessionId = ''): Promise<CheckpointView[]> {
    const res = await this.call(this.clients.sessions, 'ListCheckpoints', { session_id: sessionId });
    return (res.checkpoints ?? []).map(decodeCheckpointInfo);
  }

  async deleteCheckpoint(checkpointId: string): Promise<boolean> {
    const res = await this.call(this.clients.sessions, 'DeleteCheckpoint', { checkpoint_id: checkpointId });
    return Boolean(res.deleted);
  }

  async getSession(sessionId: string): Promise<SessionView> {
    return sessionViewFromStatus(await this.call(this.clients.sessions, 'GetSessionStatus', { session_id: sessionId }));
  }

  async listSessions(): Promise<SessionView[]> {
    const res = await this.call(this.clients.sessions, 'ListSessions', {});
    return (res.sessions ?? []).map(sessionViewFromStatus);
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

  /**
   * Reads a task stream: updates go to `onUpdate` while `forwarding()`; the promise settles when
   * the stream was accepted (its headers) or refused (an error before any).
   */
  private readStream(stream: grpc.ClientReadableStream<TaskResponse__Output>, taskId: string, onUpdate: (u: TaskUpdate, taskId: string) => void, forwarding: () => boolean): Promise<grpc.Metadata> {
    this.streams.add(stream);
    let ended = false;
    const deliver = (u: TaskUpdate): void => {
      if (ended) return;
      if (u.type === 'outcome') ended = true;
      if (!forwarding()) return;
      try {
        onUpdate(u, taskId);
      } catch {
        // listeners must not break the stream
      }
    };
    return new Promise<grpc.Metadata>((resolve, reject) => {
      let accepted = false;
      const accept = (md?: grpc.Metadata) => {
        if (!accepted) {
          accepted = true;
          resolve(md ?? new grpc.Metadata());
        }
      };
      stream.on('metadata', accept);
      stream.on('data', (wire: TaskResponse__Output) => {
        accept();
        if (wire.task_id) taskId = wire.task_id;
        try {
          deliver(decodeTaskUpdate(wire));
        } catch {
          // a message without payload carries nothing to follow
        }
      });
      stream.on('error', (err: unknown) => {
        this.streams.delete(stream);
        const e = remoteError(err, this.peer);
        if (!accepted) {
          accepted = true;
          reject(e);
          return;
        }
        if (e.code !== 'CANCELLED') deliver({ type: 'outcome', outcome: { type: 'error', error: e.toJSON() } });
      });
      stream.on('end', () => {
        this.streams.delete(stream);
        accept();
        deliver({ type: 'outcome', outcome: { type: 'error', error: { code: 'UNAVAILABLE', message: `${this.peer} ended task ${taskId}'s stream without a result`, details: '', retriable: true } } });
      });
    });
  }

  async submitTask(input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle> {
    this.assertOpen();
    const taskId = input.taskId || newTaskId();
    const c = input.constraints ?? {};
    const request: TaskRequest = {
      task_id: taskId,
      session_id: input.sessionId,
      typed_request: encodeToolRequest(input.call),
      constraints: { timeout_seconds: c.timeout_seconds ?? 0, max_memory_bytes: c.max_memory_bytes ?? 0, max_output_bytes: c.max_output_bytes ?? 0, allow_network: c.allow_network ?? false, allowed_paths: [] },
      sequence: String(input.sequence ?? 0),
    };
    const stream = this.clients.tasks.ExecuteTask(request, new grpc.Metadata());
    let forwarding = true;
    const headers = await this.readStream(stream, taskId, onUpdate, () => forwarding);
    const first = headers.get(TASK_ID_METADATA)[0];
    return {
      taskId: typeof first === 'string' && first ? first : taskId,
      duplicate: headers.get(TASK_DUPLICATE_METADATA)[0] === 'true',
      detach: () => {
        forwarding = false;
      },
      abandon: () => {
        forwarding = false;
        stream.cancel();
      },
    };
  }

  async watchTask(taskId: string, sessionId: string | undefined, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<{ detach(): void }> {
    this.assertOpen();
    const stream = this.clients.tasks.WatchTask({ task_id: taskId, session_id: sessionId ?? '' }, new grpc.Metadata());
    let forwarding = true;
    await this.readStream(stream, taskId, onUpdate, () => forwarding);
    return {
      detach: () => {
        forwarding = false;
        stream.cancel();
      },
    };
  }

  async cancelTask(taskId: string, reason: string, sessionId?: string): Promise<{ cancelled: boolean; state: TaskState }> {
    const res = await this.call(this.clients.tasks, 'CancelTask', { task_id: taskId, reason, session_id: sessionId ?? '' });
    return { cancelled: Boolean(res.cancelled), state: toTaskState(res.state, 'running') };
  }

  async getTask(taskId: string, sessionId?: string): Promise<TaskView> {
    const res = await this.call(this.clients.tasks, 'GetTaskStatus', { task_id: taskId, session_id: sessionId ?? '' });
    const state = toTaskState(res.state, 'running');
    const p = res.progress;
    const progress = p && (p.stage || p.message || p.percent) ? { stage: String(p.stage ?? ''), message: String(p.message ?? ''), percent: Number(p.percent ?? 0), elapsedMs: num(p.elapsed_ms) } : undefined;
    let outcome: TaskOutcome | undefined;
    if (res.error && res.error.code) outcome = { type: 'error', error: decodeError(res.error) };
    else if (res.result) {
      const u = decodeTaskUpdate({ task_id: taskId, result: res.result, payload: 'result' } as TaskResponse__Output);
      if (u.type === 'outcome') outcome = u.outcome;
    }
    return {
      taskId: String(res.task_id || taskId),
      sessionId: String(res.session_id || sessionId || ''),
      tool: String(res.tool ?? ''),
      state,
      ...(progress ? { progress } : {}),
      elapsedMs: num(res.elapsed_ms),
      ...(outcome ? { outcome } : {}),
    };
  }

  async waitTask(taskId: string, timeoutMs: number): Promise<TaskOutcome | undefined> {
    return waitForOutcome(this, taskId, timeoutMs);
  }

  /** ListWorkers (ours): the fleet's workers; the coordinator does not say how each isolates its sandboxes. */
  async listWorkers(): Promise<WorkerView[]> {
    const res = await this.call(this.clients.sessions, 'ListWorkers', {});
    return (res.workers ?? []).map((w) => ({ workerId: String(w.worker_id), state: String(w.state), maxSessions: num(w.max_sessions), sessions: num(w.sessions), isolation: '' }));
  }

  /** Closes the channel; task streams still open are cancelled (the coordinator cancels the tasks this client started). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.streams) s.cancel();
    this.streams.clear();
    this.clients.close();
  }
}
