import { CodegenError, invalidArgument } from '../../domain/errors.js';
import type { ClientAccess } from '../client-access.js';
import { encodeCheckpointInfo, encodeCheckpointMetadata, encodeSessionState, encodeSessionStatus } from '../../wire/codecs.js';
import type { SessionView } from '../../domain/sessions.js';
import type { ListSessionsResponse } from '../../wire/generated/codegen/v1/ListSessionsResponse.js';
import type { SessionManagementHandlers } from '../../wire/messages.js';
import { unaryHandler } from '../../wire/status.js';
import { limitsOf } from '../../wire/worker-codecs.js';

const requireSessionId = (req: { session_id: string }): string => {
  const id = typeof req.session_id === 'string' ? req.session_id : '';
  if (!id) throw invalidArgument('session_id', 'is required');
  return id;
};

const requireCheckpointId = (req: { checkpoint_id: string }): string => {
  const id = typeof req.checkpoint_id === 'string' ? req.checkpoint_id : '';
  if (!id) throw invalidArgument('checkpoint_id', 'is required');
  return id;
};

const stringMap = (field: string, v: unknown): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries((v ?? {}) as Record<string, unknown>)) {
    if (typeof val !== 'string') throw invalidArgument(`${field}.${k}`, 'must be a string');
    out[k] = val;
  }
  return out;
};

/** SessionManagement: decode, call the port, encode (`encodeListing`: ListSessions as pre-encoded bytes, see session-listing.ts). */
export function sessionManagementHandlers(access: ClientAccess, encodeListing?: (views: readonly SessionView[]) => Buffer): SessionManagementHandlers {
  return {
    CreateSession: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata, call.getPeer());
      const cfg = req.config;
      const view = await port.createSession({
        workerId: String(req.worker_id ?? ''),
        workspaceId: String(req.workspace_id ?? ''),
        userId: String(req.user_id ?? ''),
        config: { env_vars: stringMap('config.env_vars', cfg?.env_vars), allow_network: Boolean(cfg?.allow_network), language: String(cfg?.language ?? ''), ...limitsOf(cfg?.limits, 'config.limits') },
        metadata: stringMap('metadata', req.metadata),
      });
      return {
        session_id: view.sessionId,
        worker_id: view.workerId,
        workspace_path: view.workspacePath,
        state: encodeSessionState(view.state),
        created_at_ms: view.createdAtMs,
        metadata: view.metadata,
      };
    }),
    DestroySession: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata, call.getPeer());
      const id = requireSessionId(req);
      const r = await port.destroySession(id, { force: Boolean(req.force), saveCheckpoint: Boolean(req.save_checkpoint) });
      return { destroyed: r.destroyed, checkpoint_id: r.checkpointId, artifacts: r.artifacts };
    }),
    CheckpointSession: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata, call.getPeer());
      const c = await port.checkpointSession(requireSessionId(req), { name: String(req.checkpoint_name ?? '') });
      return { checkpoint_id: c.checkpointId, size_bytes: c.sizeBytes, storage_url: c.storageUrl, metadata: encodeCheckpointMetadata(c) };
    }),
    RestoreSession: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata, call.getPeer());
      const r = await port.restoreCheckpoint(requireCheckpointId(req), { workerId: String(req.worker_id ?? ''), createNew: Boolean(req.create_new_session) });
      return { session_id: r.session.sessionId, worker_id: r.session.workerId, state: encodeSessionState(r.session.state), checkpoint_metadata: encodeCheckpointMetadata(r.checkpoint) };
    }),
    ListCheckpoints: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata, call.getPeer());
      return { checkpoints: (await port.listCheckpoints(String(req.session_id ?? ''))).map(encodeCheckpointInfo) };
    }),
    DeleteCheckpoint: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata, call.getPeer());
      return { deleted: await port.deleteCheckpoint(requireCheckpointId(req)) };
    }),
    GetSessionStatus: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata, call.getPeer());
      const id = requireSessionId(req);
      const view = await port.getSession(id);
      // The status stands without its checkpoints when the store cannot be read.
      const last = (await Promise.resolve().then(() => port.listCheckpoints(id)).catch(() => [])).at(-1);
      return { ...encodeSessionStatus(view), last_checkpoint_id: last?.checkpointId ?? '' };
    }),
    ListSessions: unaryHandler(async (_req, call) => {
      const views = await access.portFor(call.metadata, call.getPeer()).listSessions();
      // The bytes stand for the message: the service's serializer passes them through.
      return encodeListing ? (encodeListing(views) as unknown as ListSessionsResponse) : { sessions: views.map(encodeSessionStatus) };
    }),
    GetSessionMetadata: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata, call.getPeer());
      const id = requireSessionId(req);
      return { session_id: id, metadata: await port.getMetadata(id) };
    }),
    UpdateSessionMetadata: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata, call.getPeer());
      const id = requireSessionId(req);
      return { session_id: id, metadata: await port.putMetadata(id, stringMap('metadata', req.metadata), true) };
    }),
    SetSessionMetadata: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata, call.getPeer());
      const id = requireSessionId(req);
      return { session_id: id, metadata: await port.putMetadata(id, stringMap('metadata', req.metadata), false) };
    }),
    ListWorkers: unaryHandler(async (_req, call) => {
      const workers = await access.portFor(call.metadata, call.getPeer()).listWorkers();
      return { workers: workers.map((w) => ({ worker_id: w.workerId, state: w.state, max_sessions: w.maxSessions, sessions: w.sessions })) };
    }),
  };
}
