import type { TaskConstraints, TaskLog, TaskProgress, TaskStatus } from '../../domain/tasks.js';
import type { ToolCall, ToolReply } from '../../domain/tools.js';

/** Everything a tool needs to run inside one session's workspace. */
export interface ToolContext {
  sessionId: string;
  /** Absolute path of BASE_WORKSPACE/<session-id>. */
  workspace: string;
  /** The session's own interpreter: <workspace>/.venv/bin/python. */
  venvPython: string;
  /** Environment the session was created with (SessionConfig.env_vars). */
  sessionEnv: Record<string, string>;
  allowNetwork: boolean;
  constraints: TaskConstraints;
  /** Fires on cancel: the tool kills its process group and ends with status CANCELLED. */
  signal: AbortSignal;
  onLog(log: TaskLog): void;
  onProgress(progress: TaskProgress): void;
}

/** A completed tool run. Tool errors (bad path, missing file, bad input) are thrown as CodegenError. */
export interface ToolExecution {
  status: TaskStatus;
  reply: ToolReply;
  artifacts?: string[];
}

export type ToolRunner = (call: ToolCall, ctx: ToolContext) => Promise<ToolExecution>;
