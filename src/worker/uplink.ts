import type * as grpc from '@grpc/grpc-js';
import type { ErrorInfo } from '../domain/errors.js';
import type { TaskUpdate } from '../domain/tasks.js';
import type { Logger } from '../log/logger.js';
import { encodeError, encodeTaskUpdate } from '../wire/codecs.js';
import type { CoordinatorMessage__Output, WorkerMessage } from '../wire/messages.js';
import type { CommandReply } from '../../machines/worker.machine.js';

type TaskStreamCall = grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output>;

/**
 * The worker's side of the open task stream, as the effects see it: the stream actor attaches
 * the live call, everything else writes through here. With no stream open, messages are
 * dropped: the coordinator has already ended those tasks as WORKER_LOST.
 */
export class Uplink {
  private call: TaskStreamCall | undefined;

  constructor(private readonly log: Logger) {}

  attach(call: TaskStreamCall): void {
    this.call = call;
  }

  detach(call: TaskStreamCall): void {
    if (this.call === call) this.call = undefined;
  }

  taskUpdate(sessionId: string, taskId: string, update: TaskUpdate): void {
    this.write({ task_update: { session_id: sessionId, response: encodeTaskUpdate(taskId, update) } });
  }

  taskError(sessionId: string, taskId: string, error: ErrorInfo): void {
    this.taskUpdate(sessionId, taskId, { type: 'outcome', outcome: { type: 'error', error } });
  }

  reply(requestId: string, reply: CommandReply): void {
    this.write({
      request_id: requestId,
      reply: { ok: reply.ok, error: reply.error ? encodeError(reply.error) : undefined, workspace_path: reply.workspacePath ?? '', artifacts: [] },
    });
  }

  private write(msg: WorkerMessage): void {
    const call = this.call;
    if (!call) {
      this.log.debug({ msg: Object.keys(msg) }, 'no task stream open; message dropped');
      return;
    }
    try {
      call.write(msg);
    } catch (err) {
      this.log.warn({ err }, 'write on the task stream failed');
    }
  }
}
