import type * as grpc from '@grpc/grpc-js';
import { errorInfo, type ErrorInfo } from '../domain/errors.js';
import type { SessionReport } from '../domain/sessions.js';
import type { TaskUpdate } from '../domain/tasks.js';
import type { Logger } from '../log/logger.js';
import type { CoordinatorMessage__Output, WorkerMessage } from '../wire/messages.js';
import { encodeReply, encodeReportMessage, encodeTaskUpdateMessage } from '../wire/worker-codecs.js';
import { loadProtos, MAX_MESSAGE_BYTES } from '../wire/protos.js';
import type { CommandReply } from '../../machines/worker/worker.machine.js';

type TaskStreamCall = grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output>;

/** A result's message with room to spare under the limit (the coordinator re-wraps it for the client). */
const MAX_RESULT_BYTES = MAX_MESSAGE_BYTES - 1024 * 1024;
const mib = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
const adviceFor = (tool: string): string =>
  tool === 'fs_read' || tool === 'artifact_get'
    ? 'split or compress the file in the session (run_python), then read the parts'
    : 'write large output to a file in the session and read it in parts';

let serialize: ((msg: WorkerMessage) => Buffer) | undefined;
/** The bytes a message takes on the stream, by the stream's own serializer. */
function serializedSize(msg: WorkerMessage): number {
  serialize ??= loadProtos().services.WorkerLifecycle.service.TaskStream.requestSerialize as (msg: WorkerMessage) => Buffer;
  return serialize(msg).length;
}

/**
 * The worker's end of the open task stream, as the effects write to it: the stream logic
 * attaches the live call. With no stream open, task updates and replies are dropped (the
 * coordinator ended those tasks as WORKER_LOST), but the latest report of each session is kept
 * and sent when a stream opens: a session that changed between the registration (which listed
 * it) and the stream would otherwise stay stale at the coordinator.
 */
export class Uplink {
  private call: TaskStreamCall | undefined;
  private readonly pendingReports = new Map<string, SessionReport>();

  constructor(private readonly log: Logger) {}

  /** Counts the streams attached: a forwarder starts again (reset) on each new one. */
  generation = 0;

  get attached(): boolean {
    return this.call !== undefined;
  }

  /** The stream has more unsent than its buffer wants (live-view records wait then). */
  get congested(): boolean {
    return Boolean(this.call?.writableNeedDrain);
  }

  attach(call: TaskStreamCall): void {
    this.call = call;
    this.generation++;
    const pending = [...this.pendingReports.values()];
    this.pendingReports.clear();
    for (const r of pending) this.write(encodeReportMessage(r));
  }

  detach(call: TaskStreamCall): void {
    if (this.call === call) this.call = undefined;
  }

  taskUpdate(sessionId: string, taskId: string, update: TaskUpdate): void {
    const msg = encodeTaskUpdateMessage(sessionId, taskId, update);
    // A result too large for one message would break the stream, and every task on it: it
    // becomes the task's error instead (the worker and its other tasks carry on).
    if (update.type === 'outcome' && update.outcome.type === 'result' && update.outcome.reply) {
      const bytes = serializedSize(msg);
      if (bytes > MAX_RESULT_BYTES) {
        const tool = update.outcome.reply.tool;
        this.log.warn({ sessionId, taskId, tool, bytes }, 'a task result too large for one message was replaced by an error');
        this.write(encodeTaskUpdateMessage(sessionId, taskId, { type: 'outcome', outcome: { type: 'error', error: errorInfo('LIMIT_EXCEEDED', `the ${tool} result is ${mib(bytes)}, more than the ${mib(MAX_RESULT_BYTES)} one message can carry; ${adviceFor(tool)}`, false) } }));
        return;
      }
    }
    this.write(msg);
  }

  taskError(sessionId: string, taskId: string, error: ErrorInfo): void {
    this.taskUpdate(sessionId, taskId, { type: 'outcome', outcome: { type: 'error', error } });
  }

  /** Live-view records; dropped with no stream (the next stream starts with a full reset). */
  inspection(msg: WorkerMessage): void {
    if (this.call) this.write(msg);
  }

  reply(reply: CommandReply): void {
    this.write(encodeReply(reply));
  }

  report(report: SessionReport): void {
    if (!this.call) {
      this.pendingReports.set(report.description.sessionId, report);
      return;
    }
    this.write(encodeReportMessage(report));
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
