import { CodegenError, invalidArgument } from '../../domain/errors.js';
import type { ClientAccess } from '../client-access.js';
import { encodeSessionState, encodeSessionStatus } from '../../wire/codecs.js';
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
  const notYet = <Req, Res>(what: string) =>
    unaryHandler<Req, Res>((_req, call) => {
      access.portFor(call.metadata); // credentials first, as on every call
      throw new CodegenError('UNIMPLEMENTED', `${what} is not implemented yet in this version (see the README)`);
    });
  return {
    CreateSession: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata);
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
      const port = access.portFor(call.metadata);
      const id = requireSessionId(req);
      if (req.save_checkpoint) throw new CodegenError('UNIMPLEMENTED', 'save_checkpoint: checkpoints are not implemented yet in this version; destroy without it');
      const r = await port.destroySession(id, { force: Boolean(req.force) });
      return { destroyed: r.destroyed, checkpoint_id: '', artifacts: r.artifacts };
    }),
    CheckpointSession: notYet('CheckpointSession'),
    RestoreSession: notYet('RestoreSession'),
    GetSessionStatus: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata);
      return encodeSessionStatus(await port.getSession(requireSessionId(req)));
    }),
    ListSessions: unaryHandler(async (_req, call) => {
      const views = await access.portFor(call.metadata).listSessions();
      // The bytes stand for the message: the service's serializer passes them through.
      return encodeListing ? (encodeListing(views) as unknown as ListSessionsResponse) : { sessions: views.map(encodeSessionStatus) };
    }),
    GetSessionMetadata: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata);
      const id = requireSessionId(req);
      return { session_id: id, metadata: await port.getMetadata(id) };
    }),
    UpdateSessionMetadata: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata);
      const id = requireSessionId(req);
      return { session_id: id, metadata: await port.putMetadata(id, stringMap('metadata', req.metadata), true) };
    }),
    SetSessionMetadata: unaryHandler(async (req, call) => {
      const port = access.portFor(call.metadata);
      const id = requireSessionId(req);
      return { session_id: id, metadata: await port.putMetadata(id, stringMap('metadata', req.metadata), false) };
    }),
  };
}
