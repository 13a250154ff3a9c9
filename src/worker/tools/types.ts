import type { TaskConstraints, TaskLog, TaskProgress, TaskStatus } from '../../domain/tasks.js';
import type { ToolCall, ToolReply } from '../../domain/tools.js';
import type { SessionLimits } from '../../sandbox/enforcement.js';
import type { WarmPython } from '../../sandbox/warm/sessions.js';
import type { SessionInterpreter } from '../../sandbox/interpreter/sessions.js';
import type { BlobTransport } from '../../checkpoints/snapshot.js';

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
  /**
   * Optional. pip's configuration for pkg_install: PIP_* and proxy variables. When absent,
   * those variables are taken from the worker's process.env (and nothing else of it).
   */
  pipEnv?: Record<string, string>;
  /** Optional. Host folders the sandbox covers with an empty tmpfs; default: the workspace's parent (BASE_WORKSPACE). */
  hidePaths?: string[];
  /** Optional. Limits beyond ctx.constraints.max_memory_bytes, applied with prlimit. */
  sandboxLimits?: { maxProcesses?: number; maxFileBytes?: number; cpuSeconds?: number };
  /** Optional. The session's limits (memory, processes, CPU), enforced on all of its processes together; absent: the defaults. */
  sessionLimits?: Partial<SessionLimits>;
  /** Optional. The base interpreter pip runs with; default: the one behind `python3` on the worker's PATH. */
  basePython?: string;
  /**
   * Optional. The session's warm interpreter (a fork server in a long-lived sandbox) that
   * run_python uses when it can; absent (WARM_PYTHON=false), every run starts a fresh sandbox.
   */
  warm?: WarmPython;
  /** Optional. The session's stateful interpreter (python_exec, python_reset); absent: those calls answer UNAVAILABLE. */
  interpreter?: SessionInterpreter;
  /** Optional. The checkpoint store (the coordinator's blob calls), for the checkpoint and restore tasks. */
  checkpoints?: BlobTransport;
  /** Optional. The session's file hashes from its previous checkpoints (unchanged files are not read again). */
  hashes?: Map<string, { key: string; sha256: string }>;
}

/** A completed tool run. Tool errors (bad path, missing file, bad input) are thrown as CodegenError. */
export interface ToolExecution {
  status: TaskStatus;
  reply: ToolReply;
  artifacts?: string[];
}

export type ToolRunner = (call: ToolCall, ctx: ToolContext) => Promise<ToolExecution>;
