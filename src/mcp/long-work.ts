/**
 * Long work: a tool call submits a task and waits for its outcome while progress notifications
 * (when the client sent a progress token) and log messages flow. Past the wait limit the call
 * answers with the task's id and state instead; a client cancellation cancels the task.
 */
import type { TaskHandle } from '../runtime/port.js';
import { CodegenError, toErrorInfo } from '../domain/errors.js';
import { newTaskId } from '../domain/ids.js';
import type { TaskOutcome, TaskState, TaskUpdate } from '../domain/tasks.js';
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
export async function runTask(conn: McpConnection, extra: ToolExtra, sessionId: string, call: ToolCall, waitMs = conn.settings.waitLimitMs): Promise<TaskRun> {
  const taskId = newTaskId();
  const started = Date.now();
  const progress = new ProgressReporter(extra);
  let logLines = 0;
  let lastStage = 'queued';

  let settle!: (outcome: TaskOutcome) => void;
  const outcome = new Promise<TaskOutcome>((resolve) => (settle = resolve));

  // Listeners must not throw: the actors rethrow listener errors on a timer.
  const onUpdate = (update: TaskUpdate): void => {
    try {
      switch (update.type) {
        case 'progress': {
          const p = update.progress;
          lastStage = p.stage || lastStage;
          const pct = p.percent > 0 ? ` ${Math.round(p.percent)}%` : '';
          progress.send(`${p.stage || 'running'}${pct}${p.message ? `: ${p.message}` : ''}`);
          break;
        }
        case 'log': {
          const l = update.log;
          logLines += 1;
          if (logLines <= conn.settings.maxLogLinesPerTask) {
            conn.log(extra, logLevelOf[l.stream], l.stream, { task_id: taskId, session_id: sessionId, stream: l.stream, line: l.line });
          } else if (logLines === conn.settings.maxLogLinesPerTask + 1) {
            conn.log(extra, 'notice', 'system', { task_id: taskId, session_id: sessionId, line: 'further output is not sent as log messages; it is in the result' });
          }
          if (l.stream !== 'system') lastStage = 'running';
          break;
        }
        case 'outcome':
          settle(update.outcome);
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
    try {
      const view = await conn.port.getTask(taskId, sessionId);
      if (view.outcome) return { kind: 'done', taskId, sessionId, outcome: view.outcome };
      return { kind: 'pending', taskId, sessionId, state: view.state, elapsedMs: view.elapsedMs };
    } catch {
      return { kind: 'pending', taskId, sessionId, state: lastStage === 'queued' ? 'queued' : 'running', elapsedMs: Date.now() - started };
    }
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
