/**
 * Wire ↔ domain. Decoders take the generated `__Output` types (what @grpc/proto-loader gives
 * with the contract's options: snake_case, int64 as strings, enums as names, oneofs as a
 * virtual field); encoders give the permissive input types. Decoders still read every field
 * defensively (a peer may send anything), validate, and throw CodegenError('INVALID_ARGUMENT')
 * naming the field.
 */
import { CodegenError, invalidArgument, isErrorCode, type ErrorInfo } from '../domain/errors.js';
import { sessionStates, type SessionLimitsView, type SessionState, type SessionView } from '../domain/sessions.js';
import type { TaskConstraints, TaskOutcome, TaskSpec, TaskStatus, TaskUpdate } from '../domain/tasks.js';
import { checkTimeout, requireString, toolCallFrom } from '../domain/tool-calls.js';
import { CHECKPOINT_NOT_SAVED, internalToolNames, toolNames, type ToolCall, type ToolName, type ToolReply } from '../domain/tools.js';

export { MAX_TIMEOUT_SECONDS, toolCallFrom } from '../domain/tool-calls.js';
import type { CheckpointView } from '../runtime/port.js';
import type {
  CheckpointInfo,
  CheckpointInfo__Output,
  CheckpointMetadata,
  ExecutionConstraints__Output,
  GetSessionStatusResponse,
  SessionState as WireSessionState,
  TaskError,
  TaskError__Output,
  TaskRequest,
  TaskRequest__Output,
  TaskResponse,
  TaskResponse__Output,
  TaskResultStatus,
  ToolRequest,
  ToolRequest__Output,
  ToolResponse,
  ToolResponse__Output,
} from './messages.js';

/** An int64 (a string on the wire) or absent, as a number. */
export const num = (v: unknown): number => (v === undefined || v === null || v === '' ? 0 : Number(v));
const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));

const isToolName = (v: string, internal: boolean): v is ToolName => (toolNames as readonly string[]).includes(v) || (internal && (internalToolNames as readonly string[]).includes(v));

/** internal: the worker's decoding of an assignment, which may carry the coordinator's own tools (checkpoint, restore). */
export function decodeToolRequest(wire: ToolRequest__Output | null | undefined, field = 'typed_request', internal = false): ToolCall {
  const which = wire?.request;
  if (!wire || !which || !isToolName(which, internal)) {
    throw invalidArgument(field, `set one of ${toolNames.join(', ')}`);
  }
  return toolCallFrom(which, wire[which] ?? {}, `${field}.${which}`);
}

// The domain's tool inputs and outputs have the wire's shape: only the oneof becomes a tag.
export function encodeToolRequest(call: ToolCall): ToolRequest {
  return { [call.tool]: call.input };
}

export function encodeToolReply(reply: ToolReply): ToolResponse {
  return { [reply.tool]: reply.output };
}

export function decodeToolReply(wire: ToolResponse__Output | null | undefined): ToolReply | undefined {
  const which = wire?.response;
  if (!wire || !which) return undefined;
  switch (which) {
    case 'echo': {
      const o = wire.echo;
      return { tool: which, output: { message: str(o?.message) } };
    }
    case 'fs_read': {
      const o = wire.fs_read;
      return { tool: which, output: { contents: str(o?.contents), size_bytes: num(o?.size_bytes), encoding: o?.encoding === 'base64' ? 'base64' : 'utf-8' } };
    }
    case 'fs_write': {
      const o = wire.fs_write;
      return { tool: which, output: { path: str(o?.path), bytes_written: num(o?.bytes_written) } };
    }
    case 'fs_list': {
      const o = wire.fs_list;
      return {
        tool: which,
        output: {
          files: (o?.files ?? []).map((fi) => ({ path: str(fi.path), name: str(fi.name), size_bytes: num(fi.size_bytes), is_directory: Boolean(fi.is_directory), modified_time_ms: num(fi.modified_time_ms) })),
          total_count: num(o?.total_count),
        },
      };
    }
    case 'run_python': {
      const o = wire.run_python;
      return { tool: which, output: { stdout: str(o?.stdout), stderr: str(o?.stderr), exit_code: num(o?.exit_code), duration_ms: num(o?.duration_ms), timed_out: Boolean(o?.timed_out) } };
    }
    case 'pkg_install': {
      const o = wire.pkg_install;
      return {
        tool: which,
        output: {
          installed: (o?.installed ?? []).map((p) => ({ name: str(p.name), version: str(p.version), location: str(p.location) })),
          failed: (o?.failed ?? []).map(str),
          output: str(o?.output),
          exit_code: num(o?.exit_code),
        },
      };
    }
    case 'artifact_get': {
      const o = wire.artifact_get;
      const data: Buffer = o && Buffer.isBuffer(o.data) ? o.data : Buffer.from(o?.data ?? []);
      return { tool: which, output: { data, artifact_id: str(o?.artifact_id), size_bytes: num(o?.size_bytes), content_type: str(o?.content_type) } };
    }
    case 'python_exec': {
      const o = wire.python_exec;
      return {
        tool: which,
        output: {
          stdout: str(o?.stdout),
          stderr: str(o?.stderr),
          result: str(o?.result),
          outputs: (o?.outputs ?? []).map((r) => ({ mime_type: str(r.mime_type), data: Buffer.isBuffer(r.data) ? r.data : Buffer.from(r.data ?? []) })),
          error_name: str(o?.error_name),
          error_value: str(o?.error_value),
          traceback: str(o?.traceback),
          duration_ms: num(o?.duration_ms),
          state_lost: Boolean(o?.state_lost),
          execution_count: num(o?.execution_count),
          state_lost_reason: str(o?.state_lost_reason),
        },
      };
    }
    case 'python_reset':
      return { tool: which, output: { reset: Boolean(wire.python_reset?.reset) } };
    case 'checkpoint': {
      const o = wire.checkpoint;
      return {
        tool: which,
        output: {
          manifest_sha256: str(o?.manifest_sha256),
          added_bytes: num(o?.added_bytes),
          file_count: num(o?.file_count),
          total_bytes: num(o?.total_bytes),
          installed_packages: (o?.installed_packages ?? []).map(str),
          modified_files: (o?.modified_files ?? []).map(str),
          modified_count: num(o?.modified_count),
          python_version: str(o?.python_version),
        },
      };
    }
    case 'restore': {
      const o = wire.restore;
      return { tool: which, output: { file_count: num(o?.file_count), total_bytes: num(o?.total_bytes) } };
    }
  }
  return undefined;
}

export function decodeConstraints(wire: ExecutionConstraints__Output | null | undefined): Partial<TaskConstraints> {
  if (!wire) return {};
  const maxOutput = num(wire.max_output_bytes);
  const maxMemory = num(wire.max_memory_bytes);
  if (maxOutput < 0) throw invalidArgument('constraints.max_output_bytes', 'must not be negative');
  if (maxMemory < 0) throw invalidArgument('constraints.max_memory_bytes', 'must not be negative');
  return {
    timeout_seconds: checkTimeout('constraints.timeout_seconds', wire.timeout_seconds),
    max_memory_bytes: maxMemory,
    max_output_bytes: maxOutput,
    allow_network: Boolean(wire.allow_network),
  };
}

/** The TaskRequest the coordinator sends a worker for an accepted task. */
export function encodeTaskSpec(spec: TaskSpec): TaskRequest {
  return {
    task_id: spec.taskId,
    session_id: spec.sessionId,
    typed_request: encodeToolRequest(spec.call),
    constraints: spec.constraints,
    sequence: String(spec.sequence),
  };
}

/** A task assignment without its TaskRequest is refused like one with every field empty. */
export function decodeTaskSpec(wire: TaskRequest__Output | null | undefined, internal = false): TaskSpec {
  const c = decodeConstraints(wire?.constraints);
  return {
    taskId: requireString('task_id', wire?.task_id),
    sessionId: requireString('session_id', wire?.session_id),
    call: decodeToolRequest(wire?.typed_request, 'typed_request', internal),
    constraints: { timeout_seconds: c.timeout_seconds ?? 0, max_memory_bytes: c.max_memory_bytes ?? 0, max_output_bytes: c.max_output_bytes ?? 0, allow_network: c.allow_network ?? false },
    sequence: num(wire?.sequence),
  };
}

const statusToWire: Record<TaskStatus, TaskResultStatus> = {
  SUCCESS: 'STATUS_SUCCESS',
  FAILURE: 'STATUS_FAILURE',
  TIMEOUT: 'STATUS_TIMEOUT',
  CANCELLED: 'STATUS_CANCELLED',
};

export const encodeTaskStatus = (s: TaskStatus | undefined): TaskResultStatus => (s ? statusToWire[s] : 'STATUS_UNSPECIFIED');

export function decodeTaskStatus(wire: unknown): TaskStatus | undefined {
  const s = str(wire).replace(/^STATUS_/, '');
  return s === 'SUCCESS' || s === 'FAILURE' || s === 'TIMEOUT' || s === 'CANCELLED' ? s : undefined;
}

export function encodeError(e: ErrorInfo): TaskError {
  return { code: e.code, message: e.message, details: e.details, retriable: e.retriable };
}

export function decodeError(wire: TaskError__Output): ErrorInfo {
  const code = str(wire.code);
  return { code: isErrorCode(code) ? code : 'INTERNAL', message: str(wire.message), details: str(wire.details), retriable: Boolean(wire.retriable) };
}

/** One TaskResponse on the wire for one update of a task. */
export function encodeTaskUpdate(taskId: string, update: TaskUpdate): TaskResponse {
  switch (update.type) {
    case 'progress':
      return { task_id: taskId, progress: { stage: update.progress.stage, message: update.progress.message, percent: update.progress.percent, elapsed_ms: update.progress.elapsedMs } };
    case 'log':
      return { task_id: taskId, log: { stream: update.log.stream, line: update.log.line, timestamp_ms: update.log.timestampMs } };
    case 'outcome':
      return { task_id: taskId, ...encodeOutcome(update.outcome) };
  }
}

export function encodeOutcome(outcome: TaskOutcome): Pick<TaskResponse, 'result' | 'error'> {
  if (outcome.type === 'error') return { error: encodeError(outcome.error) };
  const m = outcome.metadata;
  return {
    result: {
      status: encodeTaskStatus(outcome.status),
      typed_response: outcome.reply ? encodeToolReply(outcome.reply) : undefined,
      artifacts: outcome.artifacts,
      metadata: { worker_id: m.workerId, started_at_ms: m.startedAtMs, finished_at_ms: m.finishedAtMs, duration_ms: m.durationMs, queued_ms: m.queuedMs, restored_from_checkpoint: m.restoredFromCheckpoint ?? '' },
    },
  };
}

export function decodeTaskUpdate(wire: TaskResponse__Output): TaskUpdate {
  switch (wire.payload) {
    case 'progress': {
      const p = wire.progress;
      return { type: 'progress', progress: { stage: str(p?.stage), message: str(p?.message), percent: Number(p?.percent ?? 0), elapsedMs: num(p?.elapsed_ms) } };
    }
    case 'log': {
      const l = wire.log;
      const stream = l?.stream === 'stdout' || l?.stream === 'stderr' ? l.stream : 'system';
      return { type: 'log', log: { stream, line: str(l?.line), timestampMs: num(l?.timestamp_ms) } };
    }
    case 'result': {
      const r = wire.result;
      const m = r?.metadata;
      const reply = decodeToolReply(r?.typed_response);
      return {
        type: 'outcome',
        outcome: {
          type: 'result',
          status: decodeTaskStatus(r?.status) ?? 'FAILURE',
          ...(reply ? { reply } : {}),
          artifacts: (r?.artifacts ?? []).map(str),
          metadata: {
            workerId: str(m?.worker_id),
            startedAtMs: num(m?.started_at_ms),
            finishedAtMs: num(m?.finished_at_ms),
            durationMs: num(m?.duration_ms),
            queuedMs: num(m?.queued_ms),
            ...(str(m?.restored_from_checkpoint) ? { restoredFromCheckpoint: str(m?.restored_from_checkpoint) } : {}),
          },
        },
      };
    }
    case 'error':
      return { type: 'outcome', outcome: { type: 'error', error: decodeError(wire.error ?? noError) } };
    default:
      throw new CodegenError('INTERNAL', `task update without payload for task ${str(wire.task_id)}`);
  }
}

/** An error payload with nothing set reads as the defaults would (INTERNAL, empty message). */
const noError: TaskError__Output = { code: '', message: '', details: '', retriable: false };

export const encodeSessionState = (s: SessionState): WireSessionState => `SESSION_STATE_${s}`;

export function decodeSessionState(wire: unknown): SessionState | undefined {
  const s = str(wire).replace(/^SESSION_STATE_/, '');
  return (sessionStates as readonly string[]).includes(s) ? (s as SessionState) : undefined;
}

export function encodeSessionStatus(v: SessionView): GetSessionStatusResponse {
  return {
    session_id: v.sessionId,
    worker_id: v.workerId,
    state: encodeSessionState(v.state),
    info: {
      session_id: v.sessionId,
      workspace_id: v.workspaceId,
      created_at_ms: v.createdAtMs,
      last_activity_ms: v.lastActivityMs,
      state: encodeSessionState(v.state),
      usage: { memory_bytes: v.usage.memoryBytes, cpu_millicores: v.usage.cpuMillicores, disk_bytes: v.usage.diskBytes },
      limits: encodeLimits(v.limits),
      active_tasks: v.activeTasks,
      restarted_at_ms: v.restartedAtMs,
      survival_note: v.survivalNote,
      worker_unreachable_since_ms: v.unreachableSinceMs,
      user_id: v.userId,
      failure_reason: v.failureReason,
      tenant: v.tenant,
    },
    recent_tasks: v.recentTasks,
    last_checkpoint_id: '',
    metadata: v.metadata,
  };
}

/** SessionInfo.limits / a report's limits, on the wire. */
export function encodeLimits(l: SessionLimitsView) {
  return { max_memory_bytes: l.memoryBytes, max_cpu_millicores: l.cpuMillicores, max_disk_bytes: l.diskBytes, max_processes: l.maxProcesses, max_cpu_seconds_per_task: l.cpuSecondsPerTask };
}

export function decodeLimits(w: { max_memory_bytes?: unknown; max_cpu_millicores?: unknown; max_disk_bytes?: unknown; max_processes?: unknown; max_cpu_seconds_per_task?: unknown } | null | undefined): SessionLimitsView {
  const n = (v: unknown) => Math.max(0, num(v));
  return { memoryBytes: n(w?.max_memory_bytes), cpuMillicores: n(w?.max_cpu_millicores), diskBytes: n(w?.max_disk_bytes), maxProcesses: n(w?.max_processes), cpuSecondsPerTask: n(w?.max_cpu_seconds_per_task) };
}

/** CheckpointMetadata from the coordinator's view of a checkpoint. */
export function encodeCheckpointMetadata(c: CheckpointView): CheckpointMetadata {
  return {
    session_id: c.sessionId,
    workspace_id: c.workspaceId,
    created_at_ms: c.createdAtMs,
    env_vars: { ...c.envVars },
    installed_packages: [...c.installedPackages],
    modified_files: [...c.modifiedFiles],
    checksum_sha256: c.checksumSha256,
    not_saved: CHECKPOINT_NOT_SAVED,
  };
}

export function encodeCheckpointInfo(c: CheckpointView): CheckpointInfo {
  return { checkpoint_id: c.checkpointId, name: c.name, session_id: c.sessionId, size_bytes: c.sizeBytes, storage_url: c.storageUrl, metadata: encodeCheckpointMetadata(c) };
}

/** The client's view of a checkpoint from CheckpointInfo (tenant and counts are not on the wire). */
export function decodeCheckpointInfo(w: CheckpointInfo__Output): CheckpointView {
  const m = w.metadata;
  return {
    checkpointId: str(w.checkpoint_id),
    name: str(w.name),
    sessionId: str(w.session_id),
    workspaceId: str(m?.workspace_id),
    tenant: '',
    createdAtMs: num(m?.created_at_ms),
    sizeBytes: num(w.size_bytes),
    storageUrl: str(w.storage_url),
    checksumSha256: str(m?.checksum_sha256),
    envVars: { ...(m?.env_vars ?? {}) },
    installedPackages: (m?.installed_packages ?? []).map(str),
    modifiedFiles: (m?.modified_files ?? []).map(str),
    fileCount: 0,
    totalBytes: 0,
  };
}
