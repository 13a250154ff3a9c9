/**
 * Wire ↔ domain for the worker protocol (worker_lifecycle.proto): session descriptions and
 * reports, the coordinator's commands and the worker's messages. Decoders validate what a peer
 * sent and throw CodegenError('INVALID_ARGUMENT') naming the field; nothing here trusts a peer.
 */
import { checkEnvVars } from '../domain/env.js';
import { invalidArgument, type ErrorInfo } from '../domain/errors.js';
import { isSafeId } from '../domain/ids.js';
import type { LiveActor } from '../live/registry.js';
import type { SessionConfig, SessionDescription, SessionLimitsRequest, SessionReport } from '../domain/sessions.js';
import type { TaskUpdate } from '../domain/tasks.js';
import type { WorkerCommandMessage } from '../../machines/coordinator/worker-connection.machine.js';
import type { CommandReply, WorkerCommand } from '../../machines/worker/worker.machine.js';
import { decodeError, decodeLimits, decodeSessionState, decodeTaskSpec, decodeTaskUpdate, encodeError, encodeLimits, encodeSessionState, encodeTaskSpec, encodeTaskUpdate, num } from './codecs.js';
import type { CoordinatorMessage, CoordinatorMessage__Output, SessionConfig__Output, WorkerMessage, WorkerMessage__Output } from './messages.js';
import type { SessionDescription as WireDescription, SessionDescription__Output as WireDescription__Output } from './generated/codegen/v1/SessionDescription.js';

const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));

function sessionIdFrom(field: string, v: unknown): string {
  const id = str(v);
  if (!isSafeId(id)) throw invalidArgument(field, `${JSON.stringify(id)} is not a valid session id`);
  return id;
}

function stringMap(field: string, v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (v === null || v === undefined) return out;
  if (typeof v !== 'object') throw invalidArgument(field, 'must be a map of strings');
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw invalidArgument(`${field}.${k}`, 'must be a string');
    out[k] = val;
  }
  return out;
}

export function decodeSessionConfig(wire: SessionConfig__Output | null | undefined, field = 'config'): SessionConfig {
  return {
    env_vars: checkEnvVars(stringMap(`${field}.env_vars`, wire?.env_vars), `${field}.env_vars`),
    allow_network: Boolean(wire?.allow_network),
    language: str(wire?.language) || 'python',
    ...limitsOf(wire?.limits, `${field}.limits`),
  };
}

/** SessionConfig.limits: non-negative whole numbers; none asked for (all 0): absent. */
export function limitsOf(wire: { max_memory_bytes?: unknown; max_cpu_millicores?: unknown } | null | undefined, field: string): { limits?: SessionLimitsRequest } {
  if (!wire) return {};
  const n = (name: string, v: unknown): number => {
    const x = num(v);
    if (!Number.isSafeInteger(x) || x < 0) throw invalidArgument(`${field}.${name}`, 'must be a non-negative whole number (0: the worker\'s limit)');
    return x;
  };
  const limits = { max_memory_bytes: n('max_memory_bytes', wire.max_memory_bytes), max_cpu_millicores: n('max_cpu_millicores', wire.max_cpu_millicores) };
  return limits.max_memory_bytes || limits.max_cpu_millicores ? { limits } : {};
}

const encodeConfig = (c: SessionConfig) => ({ env_vars: c.env_vars, allow_network: c.allow_network, language: c.language, ...(c.limits ? { limits: c.limits } : {}) });

export function encodeDescription(d: SessionDescription): WireDescription {
  return {
    session_id: d.sessionId,
    workspace_id: d.workspaceId,
    user_id: d.userId,
    tenant: d.tenant,
    config: encodeConfig(d.config),
    metadata: d.metadata,
    metadata_version: d.metadataVersion,
    created_at_ms: d.createdAtMs,
    last_activity_ms: d.lastActivityMs,
    restarted_at_ms: d.restartedAtMs,
    survival_note: d.survivalNote,
    idle_timeout_ms: d.idleTimeoutMs,
  };
}

/** A session as a worker reports it (state, workspace, failure reason with the description). */
export function encodeReport(r: SessionReport): WireDescription {
  return {
    ...encodeDescription(r.description),
    state: encodeSessionState(r.state),
    workspace_path: r.workspacePath,
    failure_reason: r.failureReason,
    incarnation: r.incarnation,
    ...(r.usage ? { usage: { memory_bytes: r.usage.memoryBytes, cpu_millicores: r.usage.cpuMillicores, disk_bytes: r.usage.diskBytes } } : {}),
    ...(r.limits ? { limits: encodeLimits(r.limits) } : {}),
    ...(r.removing ? { removing: true } : {}),
    ...(r.removedArtifacts?.length ? { removed_artifacts: r.removedArtifacts } : {}),
  };
}

export function decodeDescription(wire: WireDescription__Output | null | undefined, field: string): SessionDescription {
  if (!wire) throw invalidArgument(field, 'is required');
  const nonNegative = (name: string, v: unknown): number => {
    const n = num(v);
    if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument(`${field}.${name}`, 'must be a non-negative whole number');
    return n;
  };
  return {
    sessionId: sessionIdFrom(`${field}.session_id`, wire.session_id),
    workspaceId: str(wire.workspace_id),
    userId: str(wire.user_id),
    tenant: str(wire.tenant),
    config: decodeSessionConfig(wire.config, `${field}.config`),
    metadata: stringMap(`${field}.metadata`, wire.metadata),
    metadataVersion: nonNegative('metadata_version', wire.metadata_version),
    createdAtMs: nonNegative('created_at_ms', wire.created_at_ms),
    lastActivityMs: nonNegative('last_activity_ms', wire.last_activity_ms),
    restartedAtMs: nonNegative('restarted_at_ms', wire.restarted_at_ms),
    survivalNote: str(wire.survival_note),
    idleTimeoutMs: nonNegative('idle_timeout_ms', wire.idle_timeout_ms),
  };
}

export function decodeReport(wire: WireDescription__Output | null | undefined, field: string, gone = false): SessionReport {
  const description = decodeDescription(wire, field);
  const state = decodeSessionState(wire?.state);
  if (!state) throw invalidArgument(`${field}.state`, `${JSON.stringify(str(wire?.state))} is not a session state`);
  const u = wire?.usage;
  const usage = u ? { memoryBytes: Math.max(0, num(u.memory_bytes)), cpuMillicores: Math.max(0, num(u.cpu_millicores)), diskBytes: Math.max(0, num(u.disk_bytes)) } : undefined;
  const limits = wire?.limits ? decodeLimits(wire.limits) : undefined;
  return { description, state, workspacePath: str(wire?.workspace_path), failureReason: str(wire?.failure_reason), gone, incarnation: str(wire?.incarnation), ...(usage ? { usage } : {}), ...(limits ? { limits } : {}), ...(wire?.removing ? { removing: true } : {}), ...(wire?.removed_artifacts?.length ? { removedArtifacts: wire.removed_artifacts.map(String) } : {}) };
}

// ---- coordinator → worker -------------------------------------------------------------------

export function encodeCommand(requestId: string, c: WorkerCommandMessage): CoordinatorMessage {
  switch (c.kind) {
    case 'create_session': {
      const d = c.description;
      return {
        request_id: requestId,
        create_session: {
          session_id: d.sessionId,
          config: encodeConfig(d.config),
          workspace_id: d.workspaceId,
          user_id: d.userId,
          tenant: d.tenant,
          metadata: d.metadata,
          idle_timeout_ms: d.idleTimeoutMs,
          created_at_ms: d.createdAtMs,
          ...(d.restoreFrom ? { restore: { checkpoint_id: d.restoreFrom.checkpointId, manifest_sha256: d.restoreFrom.manifestSha256, note: d.restoreFrom.note } } : {}),
        },
      };
    }
    case 'destroy_session':
      return { request_id: requestId, destroy_session: { session_id: c.sessionId, force: true } };
    case 'assign_task':
      return { request_id: requestId, assign_task: { task: encodeTaskSpec(c.spec) } };
    case 'cancel_task':
      return { request_id: requestId, cancel_task: { task_id: c.taskId, session_id: c.sessionId, reason: c.reason } };
    case 'put_metadata':
      return { request_id: requestId, put_metadata: { session_id: c.sessionId, metadata: c.metadata, merge: c.merge } };
  }
}

/** A command as the worker's machines take it; `atMs` is when it arrived. */
export function decodeCommand(msg: CoordinatorMessage__Output, atMs: number): WorkerCommand {
  const requestId = str(msg.request_id);
  switch (msg.command) {
    case 'create_session': {
      const c = msg.create_session;
      const createdAtMs = num(c?.created_at_ms) || atMs;
      return {
        type: 'command.create',
        requestId,
        atMs,
        description: {
          sessionId: sessionIdFrom('create_session.session_id', c?.session_id),
          workspaceId: str(c?.workspace_id),
          userId: str(c?.user_id),
          tenant: str(c?.tenant),
          config: decodeSessionConfig(c?.config, 'create_session.config'),
          metadata: stringMap('create_session.metadata', c?.metadata),
          metadataVersion: 0,
          createdAtMs,
          lastActivityMs: createdAtMs,
          restartedAtMs: 0,
          survivalNote: '',
          idleTimeoutMs: Math.max(0, num(c?.idle_timeout_ms)),
          ...(c?.restore?.checkpoint_id
            ? { restoreFrom: { checkpointId: sessionIdFrom('create_session.restore.checkpoint_id', c.restore.checkpoint_id), manifestSha256: str(c.restore.manifest_sha256), note: str(c.restore.note) } }
            : {}),
        },
      };
    }
    case 'destroy_session':
      return { type: 'command.destroy', requestId, atMs, sessionId: sessionIdFrom('destroy_session.session_id', msg.destroy_session?.session_id) };
    case 'assign_task':
      return { type: 'command.task', requestId, atMs, spec: decodeTaskSpec(msg.assign_task?.task, true) };
    case 'cancel_task':
      return {
        type: 'command.cancel',
        requestId,
        atMs,
        sessionId: sessionIdFrom('cancel_task.session_id', msg.cancel_task?.session_id),
        taskId: str(msg.cancel_task?.task_id),
        reason: str(msg.cancel_task?.reason),
      };
    case 'put_metadata':
      return {
        type: 'command.put_metadata',
        requestId,
        atMs,
        sessionId: sessionIdFrom('put_metadata.session_id', msg.put_metadata?.session_id),
        metadata: stringMap('put_metadata.metadata', msg.put_metadata?.metadata),
        merge: Boolean(msg.put_metadata?.merge),
      };
    default:
      throw invalidArgument('command', `unknown command ${JSON.stringify(str(msg.command))}`);
  }
}

// ---- worker → coordinator -------------------------------------------------------------------

export const encodeReply = (r: CommandReply): WorkerMessage => ({
  request_id: r.requestId,
  reply: { ok: r.ok, error: r.error ? encodeError(r.error) : null, session_id: r.sessionId, workspace_path: '', artifacts: [] },
});

export const encodeReportMessage = (r: SessionReport): WorkerMessage => ({
  session_report: { session_id: r.description.sessionId, state: encodeSessionState(r.state), reason: r.failureReason, session: encodeReport(r), gone: r.gone },
});

export const encodeTaskUpdateMessage = (sessionId: string, taskId: string, update: TaskUpdate): WorkerMessage => ({
  task_update: { session_id: sessionId, response: encodeTaskUpdate(taskId, update) },
});

/** What a worker can tell the coordinator on its task stream, decoded. */
export type WorkerFact =
  | { kind: 'reply'; requestId: string; sessionId: string; ok: boolean; error?: ErrorInfo }
  | { kind: 'task_update'; sessionId: string; taskId: string; update: TaskUpdate }
  | { kind: 'report'; report: SessionReport };

export function decodeWorkerMessage(msg: WorkerMessage__Output): WorkerFact {
  switch (msg.body) {
    case 'reply': {
      const r = msg.reply;
      const error = r?.error && r.error.code ? decodeError(r.error) : undefined;
      return { kind: 'reply', requestId: str(msg.request_id), sessionId: sessionIdFrom('reply.session_id', r?.session_id), ok: Boolean(r?.ok), ...(error ? { error } : {}) };
    }
    case 'task_update': {
      const response = msg.task_update?.response;
      if (!response) throw invalidArgument('task_update.response', 'is required');
      const taskId = str(response.task_id);
      if (!taskId) throw invalidArgument('task_update.response.task_id', 'is required');
      return { kind: 'task_update', sessionId: str(msg.task_update?.session_id), taskId, update: decodeTaskUpdate(response) };
    }
    case 'session_report': {
      const r = msg.session_report;
      return { kind: 'report', report: decodeReport(r?.session, 'session_report.session', Boolean(r?.gone)) };
    }
    default:
      throw invalidArgument('body', `unexpected message ${JSON.stringify(str(msg.body))} on the task stream`);
  }
}

/** A worker's live-view records (src/live/registry.ts) on the task stream. */
export interface InspectionBatchFact {
  reset: boolean;
  actors: LiveActor[];
  removed: string[];
  definitions: Record<string, Record<string, unknown>>;
}

export function encodeInspectionBatch(batch: InspectionBatchFact): WorkerMessage {
  return {
    inspection: {
      reset: batch.reset,
      actors: batch.actors.map((a) => ({ key: a.key, id: a.id, machine: a.machine, parent: a.parent, value_json: JSON.stringify(a.value ?? null), status: a.status, events: a.events.map((e) => ({ type: e.type, at_ms: e.atMs })), updated_at_ms: a.updatedAtMs })),
      removed: batch.removed,
      definitions: Object.fromEntries(Object.entries(batch.definitions).map(([k, v]) => [k, JSON.stringify(v)])),
    },
  };
}

const LIVE_MAX_ACTORS = 5_000;
const LIVE_MAX_DEFINITION = 512 * 1024;
const cut = (s: unknown, n = 256): string => String(s ?? '').slice(0, n);
const parsed = (text: string, max: number): unknown => {
  if (text.length > max) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
};

/** Bounded and checked: a worker cannot grow the coordinator's view without end, nor break it with bad JSON. */
export function decodeInspectionBatch(b: NonNullable<WorkerMessage__Output['inspection']>): InspectionBatchFact {
  const definitions: Record<string, Record<string, unknown>> = {};
  for (const [k, v] of Object.entries(b.definitions ?? {}).slice(0, 64)) {
    const d = parsed(String(v), LIVE_MAX_DEFINITION);
    if (d && typeof d === 'object' && !Array.isArray(d)) definitions[cut(k, 128)] = d as Record<string, unknown>;
  }
  return {
    reset: Boolean(b.reset),
    actors: (b.actors ?? []).slice(0, LIVE_MAX_ACTORS).map((a) => ({
      key: cut(a.key),
      process: '',
      id: cut(a.id),
      machine: cut(a.machine, 128),
      parent: cut(a.parent),
      value: parsed(String(a.value_json ?? 'null'), 16 * 1024),
      status: cut(a.status, 16),
      events: (a.events ?? []).slice(-50).map((e) => ({ type: cut(e.type, 128), atMs: Number(e.at_ms ?? 0) })),
      updatedAtMs: Number(a.updated_at_ms ?? 0),
    })),
    removed: (b.removed ?? []).slice(0, LIVE_MAX_ACTORS * 4).map((k) => cut(k)),
    definitions,
  };
}
