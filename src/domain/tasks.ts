import type { ErrorInfo } from './errors.js';
import type { ToolCall, ToolReply } from './tools.js';

export type TaskStatus = 'SUCCESS' | 'FAILURE' | 'TIMEOUT' | 'CANCELLED';

/** Where a task is in its life; the last five are final. */
export type TaskState = 'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled' | 'errored';

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

export interface TaskMetadata { workerId: string; startedAtMs: number; finishedAtMs: number; durationMs: number; queuedMs: number }

/** How a task ended: exactly one of these per task. */
export type TaskOutcome =
  | { type: 'result'; status: TaskStatus; reply?: ToolReply; artifacts: string[]; metadata: TaskMetadata }
  | { type: 'error'; error: ErrorInfo };

/** What streams to whoever follows a task: progress and logs, then one outcome. */
export type TaskUpdate =
  | { type: 'progress'; progress: TaskProgress }
  | { type: 'log'; log: TaskLog }
  | { type: 'outcome'; outcome: TaskOutcome };

export function taskStateOf(outcome: TaskOutcome): TaskState {
  if (outcome.type === 'error') return 'errored';
  switch (outcome.status) {
    case 'SUCCESS': return 'succeeded';
    case 'FAILURE': return 'failed';
    case 'TIMEOUT': return 'timed_out';
    case 'CANCELLED': return 'cancelled';
  }
}

export const isFinalTaskState = (s: TaskState): boolean => s !== 'queued' && s !== 'running';
