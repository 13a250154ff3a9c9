import type * as grpc from '@grpc/grpc-js';
import type { ErrorInfo } from '../domain/errors.js';
import type { SessionReport } from '../domain/sessions.js';
import type { TaskUpdate } from '../domain/tasks.js';
import type { Logger } from '../log/logger.js';
import type { CoordinatorMessage__Output, WorkerMessage } from '../wire/messages.js';
import { encodeReply, encodeReportMessage, encodeTaskUpdateMessage } from '../wire/worker-codecs.js';
import type { CommandReply } from '../../machines/worker/worker.machine.js';

type TaskStreamCall = grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output>;

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
    this.write(encodeTaskUpdateMessage(sessionId, taskId, update));
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
