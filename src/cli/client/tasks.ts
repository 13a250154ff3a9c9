/**
 * Running one tool call as a task of a session, the way every command needs it: its logs and
 * progress as they stream, its one outcome, a cancel for Ctrl-C, and throwaway sessions for
 * commands that were given none.
 */
import { CodegenError } from '../../domain/errors.js';
import type { TaskLog, TaskOutcome, TaskProgress, TaskStatus } from '../../domain/tasks.js';
import type { ToolCall, ToolName, ToolOutputs } from '../../domain/tools.js';
import type { CoordinatorPort } from '../../runtime/port.js';
import type { Output } from './output.js';

export interface StartedTask {
  taskId: string;
  /** The task's one outcome; never rejects (a broken stream is an error outcome). */
  outcome: Promise<TaskOutcome>;
  /** Asks the coordinator to cancel it; the outcome then says CANCELLED. */
  cancel(reason: string): Promise<void>;
}

export interface TaskListeners {
  onLog?(log: TaskLog): void;
  onProgress?(progress: TaskProgress): void;
}

/** Submits `call` to the session; rejects when the coordinator refuses it (e.g. no such session). */
export async function startTask(port: CoordinatorPort, sessionId: string, call: ToolCall, listeners: TaskListeners = {}): Promise<StartedTask> {
  let settle: (o: TaskOutcome) => void = () => {};
  const outcome = new Promise<TaskOutcome>((resolve) => (settle = resolve));
  const handle = await port.submitTask({ sessionId, call }, (update) => {
    if (update.type === 'log') listeners.onLog?.(update.log);
    else if (update.type === 'progress') listeners.onProgress?.(update.progress);
    else settle(update.outcome);
  });
  return {
    taskId: handle.taskId,
    outcome,
    cancel: async (reason) => {
      await port.cancelTask(handle.taskId, reason, sessionId);
    },
  };
}

/** The tool's reply and the task's status; a TaskError (the tool could not run) is thrown. */
export function replyOf<K extends ToolName>(outcome: TaskOutcome, tool: K): { status: TaskStatus; output: ToolOutputs[K] | undefined } {
  if (outcome.type === 'error') throw CodegenError.from(outcome.error);
  const reply = outcome.reply;
  return { status: outcome.status, output: reply && reply.tool === tool ? (reply.output as ToolOutputs[K]) : undefined };
}

/** Runs `call` to its end and returns its reply; for short calls that need no cancel (fs tools). */
export async function callTool<K extends ToolName>(port: CoordinatorPort, sessionId: string, call: ToolCall & { tool: K }, listeners: TaskListeners = {}): Promise<ToolOutputs[K]> {
  const task = await startTask(port, sessionId, call, listeners);
  const { status, output } = replyOf(await task.outcome, call.tool);
  if (!output) throw new CodegenError('INTERNAL', `${call.tool} ended ${status} without a reply`);
  return output;
}

/**
 * Ctrl-C while something runs: the first SIGINT calls `onInterrupt` (cancel, then let the
 * command end with 130), a second one exits 130 at once. Returns the function that removes it.
 */
export function onInterrupt(onInterrupt: () => void): () => void {
  let count = 0;
  const handler = () => {
    if (++count > 1) return void leaveNow(130);
    onInterrupt();
  };
  process.on('SIGINT', handler);
  return () => process.removeListener('SIGINT', handler);
}

export interface SessionLease {
  sessionId: string;
  /** True when this command made the session and destroys it at the end. */
  throwaway: boolean;
  /** Destroys a throwaway session (force: its running task is cancelled); nothing for a given one. */
  release(): Promise<void>;
}

/** The session given, or a throwaway one made now (with a spinner while its venv is made). */
export async function leaseSession(port: CoordinatorPort, out: Output, sessionId: string | undefined): Promise<SessionLease> {
  if (sessionId) return { sessionId, throwaway: false, release: async () => {} };
  const progress = out.progress('starting a throwaway session');
  let view;
  try {
    view = await port.createSession({});
  } finally {
    progress.stop();
  }
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    throwaways.delete(view.sessionId);
    await port.destroySession(view.sessionId, { force: true }).catch(() => {});
  };
  throwaways.set(view.sessionId, release);
  leaveOnTermination();
  return { sessionId: view.sessionId, throwaway: true, release };
}

/** Throwaway sessions made by this command and not yet destroyed (their release). */
const throwaways = new Map<string, () => Promise<void>>();
let leaving = false;
let leavingCode: number | undefined;

/**
 * While a signal makes the command leave: a promise that never settles, for the command's own
 * ending to wait on (leaveNow exits with the signal's status once the sessions are gone).
 */
export function untilLeft(): Promise<never> | undefined {
  return leavingCode === undefined ? undefined : new Promise<never>(() => {});
}
let handlersInstalled = false;

/**
 * Leaves now — a second Ctrl-C, SIGTERM, SIGHUP (the terminal closed) — destroying this
 * command's throwaway sessions first, for at most 3 s; a further signal leaves at once.
 */
export async function leaveNow(code: number): Promise<never> {
  if (leaving) process.exit(code);
  leaving = true;
  leavingCode = code;
  await Promise.race([Promise.all([...throwaways.values()].map((release) => release())), new Promise((r) => setTimeout(r, 3_000))]);
  process.exit(code);
}

function leaveOnTermination(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('SIGTERM', () => void leaveNow(143));
  process.on('SIGHUP', () => void leaveNow(129));
}
