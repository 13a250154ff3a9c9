/**
 * Long work: a tool call submits a task and waits for its outcome while progress notifications
 * (when the client sent a progress token) and log messages flow. Past the wait limit the call
 * answers with the task's id and state instead; a client cancellation cancels the task.
 */
import type { TaskHandle } from '../runtime/port.js';
import { CodegenError, toErrorInfo } from '../domain/errors.js';
import { newTaskId } from '../domain/ids.js';
import { taskStateOf, type TaskOutcome, type TaskState, type TaskUpdate } from '../domain/tasks.js';
import type { LoggingLevel } from '@modelcontextprotocol/sdk/types.js';
import type { ToolCall } from '../domain/tools.js';
import type { McpConnection, ToolExtra } from './connection.js';

export type TaskRun =
  | { kind: 'done'; taskId: string; sessionId: string; outcome: TaskOutcome }
  | { kind: 'pending'; taskId: string; sessionId: string; state: TaskState; elapsedMs: number };

/** Sends progress notifications with a strictly increasing progress value. Never throws. */
export class ProgressReporter {
  private count = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly token: string | number | undefined;

  constructor(private readonly extra: ToolExtra) {
    const token = extra._meta?.progressToken;
    this.token = typeof token === 'string' || typeof token === 'number' ? token : undefined;
  }

  get enabled(): boolean {
    return this.token !== undefined;
  }

  send(message: string): void {
    if (this.token === undefined) return;
    this.count += 1;
    this.extra
      .sendNotification({ method: 'notifications/progress', params: { progressToken: this.token, progress: this.count, message } })
      .catch(() => undefined);
  }

  /** A notification every `ms` (the spec asks for one at least every 15 s), until stop(). */
  heartbeat(ms: number, message: () => string): void {
    if (this.token === undefined || this.timer) return;
    this.timer = setInterval(() => this.send(message()), ms);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

const logLevelOf = { stdout: 'info', stderr: 'warning', system: 'debug' } as const;

const cancelledOutcome = (reason: string): TaskOutcome => ({
  type: 'error',
  error: toErrorInfo(new CodegenError('CANCELLED', reason)),
});

/** Runs one tool call as a task of the session and waits up to `waitMs` for its outcome. */
export async function runTask(conn: McpConnection, extra: ToolExtra, sessionId: string, call: ToolCall, waitMs = conn.settings.waitLimitMs, opts: { follow?: boolean } = {}): Promise<TaskRun> {
  const taskId = newTaskId();
  const started = Date.now();
  const progress = new ProgressReporter(extra);
  let logLines = 0;
  let lastStage = 'queued';
  /**
   * Set once the call answered {task_id}: the task's updates then go to the connection's own
   * stream (the request's stream is closed, and its progress token with it) until it ends.
   */
  let following = false;
  let ended: TaskOutcome | undefined;

  let settle!: (outcome: TaskOutcome) => void;
  const outcome = new Promise<TaskOutcome>((resolve) => (settle = resolve));
  const log = (level: LoggingLevel, loggerName: string, data: unknown): void => {
    if (following) conn.logToConnection(level, loggerName, data);
    else conn.log(extra, level, loggerName, data);
  };

  // Listeners must not throw: the actors rethrow listener errors on a timer.
  const onUpdate = (update: TaskUpdate): void => {
    try {
      switch (update.type) {
        case 'progress': {
          const p = update.progress;
          lastStage = p.stage || lastStage;
          const pct = p.percent > 0 ? ` ${Math.round(p.percent)}%` : '';
          const text = `${p.stage || 'running'}${pct}${p.message ? `: ${p.message}` : ''}`;
          if (following) conn.logToConnection('info', 'progress', { task_id: taskId, session_id: sessionId, stage: p.stage, percent: p.percent, message: text });
          else progress.send(text);
          break;
        }
        case 'log': {
          const l = update.log;
          logLines += 1;
          if (logLines <= conn.settings.maxLogLinesPerTask) {
            log(logLevelOf[l.stream], l.stream, { task_id: taskId, session_id: sessionId, stream: l.stream, line: l.line });
          } else if (logLines === conn.settings.maxLogLinesPerTask + 1) {
            log('notice', 'system', { task_id: taskId, session_id: sessionId, line: 'further output is not sent as log messages; it is in the result' });
          }
          if (l.stream !== 'system') lastStage = 'running';
          break;
        }
        case 'outcome':
          ended = update.outcome;
          settle(update.outcome);
          if (following) {
            const status = taskStateOf(update.outcome);
            conn.logToConnection('notice', 'system', { task_id: taskId, session_id: sessionId, status, line: `task ${taskId} ended (${status}): task_result returns its result` });
            conn.unfollow(taskId);
          }
          break;
      }
    } catch (err) {
      conn.logger.warn({ err, taskId }, 'task update listener failed');
    }
  };

  if (extra.signal.aborted) return { kind: 'done', taskId, sessionId, outcome: cancelledOutcome('the MCP request was cancelled before the task started') };

  let aborted = false;
  let resolveAbort!: () => void;
  const abortedP = new Promise<void>((resolve) => (resolveAbort = resolve));
  const cancel = (): void => {
    void Promise.resolve()
      .then(() => conn.port.cancelTask(taskId, 'the MCP client cancelled the request', sessionId))
      .catch((err: unknown) => conn.logger.debug({ err, taskId }, 'cancel after client cancellation failed'));
  };
  const onAbort = (): void => {
    aborted = true;
    cancel();
    resolveAbort();
  };
  extra.signal.addEventListener('abort', onAbort, { once: true });

  let handle: TaskHandle | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    progress.send(`task ${taskId} accepted: ${call.tool}`);
    handle = await conn.port.submitTask({ taskId, sessionId, call }, onUpdate);
    // A cancellation that raced the submission reached the coordinator before the task existed.
    if (aborted) cancel();
    progress.heartbeat(conn.settings.heartbeatMs, () => `${lastStage}: ${Math.round((Date.now() - started) / 1000)} s`);

    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), Math.max(0, waitMs))));
    const first = await Promise.race([outcome, timeout, abortedP.then(() => 'aborted' as const)]);
    if (first === 'aborted') return { kind: 'done', taskId, sessionId, outcome: cancelledOutcome('the MCP client cancelled the request') };
    if (first !== 'timeout') return { kind: 'done', taskId, sessionId, outcome: first };

    // The wait is over: say where the task is, to be polled with task_status / task_result.
    let pending: TaskRun;
    try {
      const view = await conn.port.getTask(taskId, sessionId);
      if (view.outcome) return { kind: 'done', taskId, sessionId, outcome: view.outcome };
      pending = { kind: 'pending', taskId, sessionId, state: view.state, elapsedMs: view.elapsedMs };
    } catch {
      pending = { kind: 'pending', taskId, sessionId, state: lastStage === 'queued' ? 'queued' : 'running', elapsedMs: Date.now() - started };
    }
    // It may have ended while the view was asked for.
    if (ended) return { kind: 'done', taskId, sessionId, outcome: ended };
    const h = handle;
    // A tool call's task is followed; the server's own reads (resources) answer their caller only.
    if ((opts.follow ?? true) && conn.follow(taskId, () => h.detach())) {
      following = true;
      handle = undefined; // detached when the task ends or the connection closes, not below
    }
    return pending;
  } finally {
    if (timer) clearTimeout(timer);
    progress.stop();
    extra.signal.removeEventListener('abort', onAbort);
    try {
      handle?.detach();
    } catch {
      // detaching a finished task is harmless
    }
  }
}

/** Waits for an existing task (task_result), with progress heartbeats while it waits. */
export async function waitForTask(conn: McpConnection, extra: ToolExtra, taskId: string, waitMs: number): Promise<TaskOutcome | undefined> {
  const progress = new ProgressReporter(extra);
  const started = Date.now();
  progress.send(`waiting for task ${taskId}`);
  progress.heartbeat(conn.settings.heartbeatMs, () => `waiting for task ${taskId}: ${Math.round((Date.now() - started) / 1000)} s`);
  let onAbort: (() => void) | undefined;
  try {
    const aborted = new Promise<undefined>((resolve) => {
      onAbort = () => resolve(undefined);
      extra.signal.addEventListener('abort', onAbort, { once: true });
    });
    return await Promise.race([Promise.resolve(conn.port.waitTask(taskId, waitMs)), aborted]);
  } finally {
    progress.stop();
    if (onAbort) extra.signal.removeEventListener('abort', onAbort);
  }
}
