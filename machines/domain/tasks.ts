import { errorInfo, type ErrorInfo } from './errors.js';
import type { ToolCall, ToolReply } from './tools.js';

export type TaskStatus = 'SUCCESS' | 'FAILURE' | 'TIMEOUT' | 'CANCELLED';

/** Where a task is in its life; the last five are final. */
export type TaskState = 'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled' | 'errored';

export const taskStates: readonly TaskState[] = ['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'errored'];

export interface TaskConstraints {
  timeout_seconds: number;
  max_memory_bytes: number;
  max_output_bytes: number;
  allow_network: boolean;
}

/** A task as the coordinator accepted it: ids minted, input validated. */
export interface TaskSpec {
  taskId: string;
  sessionId: string;
  call: ToolCall;
  constraints: TaskConstraints;
  /** 0 when the client sent none. */
  sequence: number;
}

export interface TaskProgress { stage: string; message: string; percent: number; elapsedMs: number }
export interface TaskLog { stream: 'stdout' | 'stderr' | 'system'; line: string; timestampMs: number }

export interface TaskMetadata {
  workerId: string;
  startedAtMs: number;
  finishedAtMs: number;
  durationMs: number;
  queuedMs: number;
  /** The session was evicted (or recovered) and restored from this checkpoint before the task ran. */
  restoredFromCheckpoint?: string;
}

/** How a task ended: exactly one of these per task. Carries the tool's whole reply (possibly large). */
export type TaskOutcome =
  | { type: 'result'; status: TaskStatus; reply?: ToolReply; artifacts: string[]; metadata: TaskMetadata }
  | { type: 'error'; error: ErrorInfo };

/** An outcome without the tool's reply: the bounded part that machine contexts keep. */
export type TaskOutcomeSummary =
  | { type: 'result'; status: TaskStatus; metadata: TaskMetadata }
  | { type: 'error'; error: ErrorInfo };

/** What streams to whoever follows a task: progress and logs, then one outcome. */
export type TaskUpdate =
  | { type: 'progress'; progress: TaskProgress }
  | { type: 'log'; log: TaskLog }
  | { type: 'outcome'; outcome: TaskOutcome };

export function taskStateOf(outcome: TaskOutcome | TaskOutcomeSummary): TaskState {
  if (outcome.type === 'error') return 'errored';
  switch (outcome.status) {
    case 'SUCCESS': return 'succeeded';
    case 'FAILURE': return 'failed';
    case 'TIMEOUT': return 'timed_out';
    case 'CANCELLED': return 'cancelled';
  }
}

export const isFinalTaskState = (s: TaskState): boolean => s !== 'queued' && s !== 'running';

export function summarizeOutcome(outcome: TaskOutcome | TaskOutcomeSummary): TaskOutcomeSummary {
  return outcome.type === 'error' ? { type: 'error', error: outcome.error } : { type: 'result', status: outcome.status, metadata: outcome.metadata };
}

export const errorOutcome = (error: ErrorInfo): TaskOutcome => ({ type: 'error', error });

export const workerLostOutcome = (reason: string): TaskOutcome =>
  errorOutcome(errorInfo('WORKER_LOST', `the worker running this task was lost (${reason}); run the task again`));

export function cancelledOutcome(workerId: string, enqueuedAtMs: number, startedAtMs: number, atMs: number): TaskOutcome {
  const started = startedAtMs || atMs;
  return {
    type: 'result',
    status: 'CANCELLED',
    artifacts: [],
    metadata: { workerId, startedAtMs: started, finishedAtMs: atMs, durationMs: atMs - started, queuedMs: Math.max(0, started - enqueuedAtMs) },
  };
}

/** The bounded summary of one task that a session keeps (the last MAX_TASK_RECORDS of them). */
export interface TaskRecord {
  taskId: string;
  tool: string;
  sequence: number;
  state: TaskState;
  enqueuedAtMs: number;
  startedAtMs: number;
  endedAtMs: number;
  progress: TaskProgress | null;
  outcome: TaskOutcomeSummary | null;
}

export const MAX_TASK_RECORDS = 256;

/**
 * Task records in arrival order, bounded: live ones always stay, the oldest finished go first.
 * An array, not a map by id: every change copies it, and copying 256 pointers costs far less than
 * spreading an object of 256 keys (the bookkeeping was a tenth of a task's CPU before).
 */
export interface TaskBook {
  records: TaskRecord[];
  /** Client sequence numbers (as strings) → task id, for answering repeats from the first run. */
  sequences: Record<string, string>;
}

export const emptyTaskBook = (): TaskBook => ({ records: [], sequences: {} });

/** Where the task's record is (searched from the newest: the live ones are there), or -1. */
function indexOf(book: TaskBook, taskId: string): number {
  for (let i = book.records.length - 1; i >= 0; i--) if (book.records[i]!.taskId === taskId) return i;
  return -1;
}

export function recordOf(book: TaskBook, taskId: string): TaskRecord | undefined {
  const i = indexOf(book, taskId);
  return i < 0 ? undefined : book.records[i];
}

export function findRecord(book: TaskBook, ref: { taskId?: string; sequence?: number }): TaskRecord | undefined {
  const byId = ref.taskId ? recordOf(book, ref.taskId) : undefined;
  if (byId) return byId;
  if (ref.sequence && ref.sequence > 0) {
    const id = book.sequences[String(ref.sequence)];
    if (id) return recordOf(book, id);
  }
  return undefined;
}

/** The book with one more record; beyond MAX_TASK_RECORDS the oldest finished one goes. */
export function addRecord(book: TaskBook, record: TaskRecord): TaskBook {
  const records = [...book.records, record];
  let sequences = book.sequences;
  if (record.sequence > 0) sequences = { ...sequences, [String(record.sequence)]: record.taskId };
  while (records.length > MAX_TASK_RECORDS) {
    const idx = records.findIndex((r) => r.outcome !== null);
    if (idx < 0) break;
    const [old] = records.splice(idx, 1);
    if (old && old.sequence > 0 && sequences[String(old.sequence)] === old.taskId) {
      sequences = { ...sequences };
      delete sequences[String(old.sequence)];
    }
  }
  return { records, sequences };
}

export function updateRecord(book: TaskBook, taskId: string, patch: Partial<TaskRecord>): TaskBook {
  const i = indexOf(book, taskId);
  if (i < 0) return book;
  const records = book.records.slice();
  records[i] = { ...records[i]!, ...patch };
  return { ...book, records };
}

/** The task ids, oldest first. */
export const taskIdsOf = (book: TaskBook): string[] => book.records.map((r) => r.taskId);

export const liveRecords = (book: TaskBook): TaskRecord[] => book.records.filter((r) => r.outcome === null);
