import { CodegenError, type ErrorInfo } from '../domain/errors.js';
import { newRequestId } from '../domain/ids.js';
import type { SessionConfig } from '../domain/sessions.js';
import type { TaskSpec, TaskUpdate } from '../domain/tasks.js';
import type { Logger } from '../log/logger.js';
import { decodeError, decodeTaskUpdate, encodeTaskSpec } from '../wire/codecs.js';
import type { CoordinatorMessage, WorkerMessage__Output } from '../wire/messages.js';
import { workerLostOutcome } from '../../machines/task.machine.js';
import type { WorkerStream, WorkerStreamLink } from './port.js';

/** A worker's answer to a session command. */
export interface WorkerReply { ok: boolean; error?: ErrorInfo; workspacePath: string; artifacts: string[] }

/**
 * One worker's open task stream: commands down, replies and task updates up. Every command
 * is answered or failed: a reply, a deadline, or the stream's end (WORKER_LOST).
 */
export class WorkerChannel implements WorkerStreamLink {
  readonly kind = 'stream-handle' as const;
  private readonly pending = new Map<string, { resolve: (r: WorkerReply) => void; reject: (e: CodegenError) => void; timer: NodeJS.Timeout }>();
  private readonly tasks = new Map<string, (u: TaskUpdate) => void>();
  private closedReason: string | undefined;
  private closeListeners: Array<(reason: string) => void> = [];

  constructor(
    readonly workerId: string,
    readonly registrationId: string,
    private readonly call: WorkerStream,
    private readonly log: Logger,
  ) {}

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  onClose(listener: (reason: string) => void): void {
    if (this.closedReason !== undefined) listener(this.closedReason);
    else this.closeListeners.push(listener);
  }

  createSession(sessionId: string, config: SessionConfig, timeoutMs: number): Promise<WorkerReply> {
    return this.request({ create_session: { session_id: sessionId, config } }, timeoutMs);
  }

  destroySession(sessionId: string, force: boolean, timeoutMs: number): Promise<WorkerReply> {
    return this.request({ destroy_session: { session_id: sessionId, force } }, timeoutMs);
  }

  /** Sends a command and resolves with the worker's reply. */
  private request(command: Omit<CoordinatorMessage, 'request_id'>, timeoutMs: number): Promise<WorkerReply> {
    if (this.closedReason !== undefined) return Promise.reject(this.lostError());
    const requestId = newRequestId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new CodegenError('WORKER_LOST', `worker ${this.workerId} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      this.write({ request_id: requestId, ...command });
    });
  }

  /** Assigns a task; its updates (ending with one outcome) go to `onUpdate`. */
  runTask(spec: TaskSpec, onUpdate: (u: TaskUpdate) => void): void {
    if (this.closedReason !== undefined) {
      onUpdate({ type: 'outcome', outcome: workerLostOutcome(this.closedReason) });
      return;
    }
    this.tasks.set(spec.taskId, onUpdate);
    this.write({ request_id: newRequestId(), assign_task: { task: encodeTaskSpec(spec) } });
  }

  cancelTask(taskId: string, sessionId: string, reason: string): void {
    if (this.closedReason === undefined) this.write({ request_id: newRequestId(), cancel_task: { task_id: taskId, session_id: sessionId, reason } });
  }

  /** A message from the worker. Malformed ones are logged and dropped, never thrown. */
  receive(msg: WorkerMessage__Output): void {
    try {
      switch (msg.body) {
        case 'reply': {
          const p = this.pending.get(String(msg.request_id));
          if (!p) return;
          this.pending.delete(String(msg.request_id));
          clearTimeout(p.timer);
          const r = msg.reply;
          p.resolve({ ok: Boolean(r?.ok), ...(r?.error && r.error.code ? { error: decodeError(r.error) } : {}), workspacePath: String(r?.workspace_path ?? ''), artifacts: (r?.artifacts ?? []).map(String) });
          return;
        }
        case 'task_update': {
          const response = msg.task_update?.response;
          const taskId = String(response?.task_id ?? '');
          const listener = this.tasks.get(taskId);
          if (!listener || !response) return;
          const update = decodeTaskUpdate(response);
          if (update.type === 'outcome') this.tasks.delete(taskId);
          listener(update);
          return;
        }
        case 'session_report':
          this.log.debug({ report: msg.session_report }, 'session report from worker');
          return;
        default:
          this.log.warn({ body: msg.body }, 'unexpected message on task stream');
      }
    } catch (err) {
      this.log.warn({ err }, 'dropped a malformed message from the worker');
    }
  }

  /** Ends the stream: pending commands fail and running tasks end WORKER_LOST, at once. */
  close(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(this.lostError());
    }
    this.pending.clear();
    const tasks = [...this.tasks.values()];
    this.tasks.clear();
    for (const listener of tasks) listener({ type: 'outcome', outcome: workerLostOutcome(reason) });
    try {
      this.call.end();
    } catch {
      // already gone
    }
    const listeners = this.closeListeners;
    this.closeListeners = [];
    for (const l of listeners) l(reason);
  }

  private lostError(): CodegenError {
    return new CodegenError('WORKER_LOST', `worker ${this.workerId} is not connected (${this.closedReason ?? 'unknown'})`);
  }

  private write(msg: CoordinatorMessage): void {
    try {
      this.call.write(msg);
    } catch (err) {
      this.close(`write failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

/** The open channels by worker id: registered and removed by the connection actors' stream logic. */
export class WorkerLinks {
  private readonly channels = new Map<string, WorkerChannel>();
  set(channel: WorkerChannel): void {
    this.channels.set(channel.workerId, channel);
  }
  delete(channel: WorkerChannel): void {
    if (this.channels.get(channel.workerId) === channel) this.channels.delete(channel.workerId);
  }
  get(workerId: string): WorkerChannel | undefined {
    return this.channels.get(workerId);
  }
  closeAll(reason: string): void {
    for (const c of [...this.channels.values()]) c.close(reason);
  }
}
