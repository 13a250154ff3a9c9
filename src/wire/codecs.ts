/**
 * Wire ↔ domain. Decoders take the generated `__Output` types (what @grpc/proto-loader gives
 * with the contract's options: snake_case, int64 as strings, enums as names, oneofs as a
 * virtual field); encoders give the permissive input types. Decoders still read every field
 * defensively (a peer may send anything), validate, and throw CodegenError('INVALID_ARGUMENT')
 * naming the field.
 */
import { checkEnvVars } from '../domain/env.js';
import { CodegenError, invalidArgument, isErrorCode, type ErrorInfo } from '../domain/errors.js';
import type { SessionState, SessionView } from '../domain/sessions.js';
import type { TaskConstraints, TaskOutcome, TaskSpec, TaskStatus, TaskUpdate } from '../domain/tasks.js';
import { toolNames, type ToolCall, type ToolName, type ToolReply } from '../domain/tools.js';
import type {
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

/** Loose input (a wire sub-message, or an MCP tool's arguments): every field is read as unknown and checked. */
type LooseInput = Readonly<Record<string, unknown>>;

/** An int64 (a string on the wire) or absent, as a number. */
export const num = (v: unknown): number => (v === undefined || v === null || v === '' ? 0 : Number(v));
const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
const strMap = (v: unknown): Record<string, string> => {
  const out: Record<string, string> = {};
  if (v && typeof v === 'object') for (const [k, val] of Object.entries(v)) out[k] = str(val);
  return out;
};

export const MAX_TIMEOUT_SECONDS = 3600;

function requireString(field: string, value: unknown): string {
  const s = str(value);
  if (s.length === 0) throw invalidArgument(field, 'is required');
  if (s.includes('\0')) throw invalidArgument(field, 'must not contain NUL bytes');
  return s;
}

function checkTimeout(field: string, v: unknown): number {
  const t = num(v);
  if (!Number.isInteger(t) || t < 0 || t > MAX_TIMEOUT_SECONDS) throw invalidArgument(field, `must be a whole number of seconds from 0 to ${MAX_TIMEOUT_SECONDS}`);
  return t;
}

function checkEncoding(field: string, v: unknown): 'utf-8' | 'base64' {
  const e = str(v).toLowerCase();
  if (e === '' || e === 'utf-8' || e === 'utf8') return 'utf-8';
  if (e === 'base64') return 'base64';
  throw invalidArgument(field, `must be "utf-8" or "base64", not ${JSON.stringify(str(v))}`);
}

/** A domain ToolCall from loose input (the wire's sub-message, or an MCP tool's arguments). */
export function toolCallFrom(tool: ToolName, args: object, prefix = `typed_request.${tool}`): ToolCall {
  // `object` in the signature: the generated message interfaces have no index signature to pass as a Record.
  const input = args as LooseInput;
  const f = (name: string) => `${prefix}.${name}`;
  switch (tool) {
    case 'echo':
      return { tool, input: { message: str(input['message']) } };
    case 'fs_read':
      return { tool, input: { path: requireString(f('path'), input['path']) } };
    case 'fs_write':
      return {
        tool,
        input: {
          path: requireString(f('path'), input['path']),
          contents: str(input['contents']),
          create_dirs: Boolean(input['create_dirs']),
          encoding: checkEncoding(f('encoding'), input['encoding']),
        },
      };
    case 'fs_list':
      return { tool, input: { path: str(input['path']), recursive: Boolean(input['recursive']), pattern: str(input['pattern']) } };
    case 'run_python': {
      const code = input['code'];
      const file = input['file'];
      // Both set on the wire decode with `source` naming the last one: count both, so the request is refused, not half-run.
      const hasCode = typeof code === 'string' && code.length > 0;
      const hasFile = typeof file === 'string' && file.length > 0;
      if (hasCode === hasFile) throw invalidArgument(`${f('code')} / ${f('file')}`, 'set exactly one: code to run, or a file in the workspace');
      const args = Array.isArray(input['args']) ? input['args'].map(str) : [];
      args.forEach((a, i) => { if (a.includes('\0')) throw invalidArgument(`${f('args')}[${i}]`, 'must not contain NUL bytes'); });
      return {
        tool,
        input: {
          ...(hasCode ? { code: code as string } : { file: file as string }),
          args,
          env_vars: checkEnvVars(strMap(input['env_vars']), f('env_vars')),
          timeout_seconds: checkTimeout(f('timeout_seconds'), input['timeout_seconds']),
        },
      };
    }
    case 'pkg_install': {
      const raw = input['packages'];
      const packages = (Array.isArray(raw) ? raw.map(str) : str(raw).split(/\s+/)).map((p) => p.trim()).filter((p) => p.length > 0);
      if (packages.length === 0) throw invalidArgument(f('packages'), 'name at least one package');
      packages.forEach((p, i) => {
        if (p.startsWith('-')) throw invalidArgument(`${f('packages')}[${i}]`, `${JSON.stringify(p)} looks like a pip option; use the upgrade, no_deps and index_url fields instead`);
        if (/[\s\0]/.test(p)) throw invalidArgument(`${f('packages')}[${i}]`, 'must not contain whitespace');
      });
      const indexUrl = str(input['index_url']);
      if (indexUrl !== '' && !/^https?:\/\//.test(indexUrl) && !indexUrl.startsWith('file:')) throw invalidArgument(f('index_url'), 'must be an http(s) or file: URL');
      return { tool, input: { packages, upgrade: Boolean(input['upgrade']), index_url: indexUrl, no_deps: Boolean(input['no_deps']) } };
    }
    case 'artifact_get':
      return { tool, input: { artifact_id: requireString(f('artifact_id'), input['artifact_id']) } };
  }
}

const isToolName = (v: string): v is ToolName => (toolNames as readonly string[]).includes(v);

export function decodeToolRequest(wire: ToolRequest__Output | null | undefined, field = 'typed_request'): ToolCall {
  const which = wire?.request;
  if (!wire || !which || !isToolName(which)) {
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
export function decodeTaskSpec(wire: TaskRequest__Output | null | undefined): TaskSpec {
  const c = decodeConstraints(wire?.constraints);
  return {
    taskId: requireString('task_id', wire?.task_id),
    sessionId: requireString('session_id', wire?.session_id),
    call: decodeToolRequest(wire?.typed_request),
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
      metadata: { worker_id: m.workerId, started_at_ms: m.startedAtMs, finished_at_ms: m.finishedAtMs, duration_ms: m.durationMs, queued_ms: m.queuedMs },
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
          metadata: { workerId: str(m?.worker_id), startedAtMs: num(m?.started_at_ms), finishedAtMs: num(m?.finished_at_ms), durationMs: num(m?.duration_ms), queuedMs: num(m?.queued_ms) },
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
  const states: SessionState[] = ['INITIALIZING', 'READY', 'BUSY', 'IDLE', 'DRAINING', 'CHECKPOINTING', 'FAILED', 'TERMINATED'];
  return (states as string[]).includes(s) ? (s as SessionState) : undefined;
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
      usage: { memory_bytes: 0, cpu_millicores: 0, disk_bytes: 0 },
      active_tasks: v.activeTasks,
    },
    recent_tasks: v.recentTasks,
    last_checkpoint_id: '',
  };
}
