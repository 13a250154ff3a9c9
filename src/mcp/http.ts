/**
 * MCP over Streamable HTTP at /mcp (POST, GET, DELETE): one MCP server and transport per MCP
 * session (the Mcp-Session-Id header). Every request passes the Host/Origin/token checks first;
 * bodies are read here, up to maxBodyBytes, and refused beyond with a JSON-RPC error.
 * GET /healthz answers 200 for container health checks.
 */
import { isAddressInUse, PortInUseError } from '../runtime/port-in-use.js';
import { componentLogger } from '../log/logger.js';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { Principal } from '../auth/authenticator.js';
import type { CoordinatorPort } from '../runtime/port.js';
import { HttpSecurity } from './http-security.js';
import { BoundedEventStore, defaultEventBudgetBytes, defaultEventStoreLimits, EventBudget, type EventStoreLimits } from './event-store.js';
import type { McpConnection } from './connection.js';
import { createMcpServer, type McpOptions } from './server.js';

export interface McpHttpOptions extends McpOptions {
  /** Address to bind. Default 127.0.0.1. */
  host: string;
  /** Port to bind; 0 picks a free one. Default 8080. */
  port: number;
  /**
   * Who may call: every /mcp request must carry a bearer credential it accepts, and an MCP
   * session uses the port of the tenant that opened it. Absent: open, on `coordinator` (tests).
   */
  access?: { authenticate(authorization: string | undefined): Principal; portFor(principal: Principal, peer?: string): CoordinatorPort };
  /** Serve HTTPS with these PEM files. */
  tls?: { cert: string; key: string } | undefined;
  /** MCP sessions held at once; an initialize beyond it answers 503. Default 1000. */
  maxSessions?: number;
  /** MCP sessions one tenant may hold at once, so one tenant cannot take them all; beyond it 429. Default 100. */
  maxSessionsPerTenant?: number;
  /** GET /metrics (Prometheus text), behind the same checks as /mcp: Host, Origin and the bearer credential. */
  metrics?: { contentType: string; text(): Promise<string> };
  /** The live view's routes (src/live/http.ts), behind the same checks, a credential also taken from its cookie. */
  live?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** GET /readyz: whether the system can take work now (absent: always). */
  readiness?: () => Promise<{ ready: boolean; reason: string }>;
  /** Host header values accepted ("name" or "name:port"). Default: localhost, 127.0.0.1, [::1] with the port. */
  allowedHosts?: string[];
  /** Origin header values accepted (requests without Origin pass). Default: the allowed hosts over http/https. */
  allowedOrigins?: string[];
  /** Largest request body accepted. Default 32 MiB. */
  maxBodyBytes?: number;
  /** MCP sessions with no open request for this long are closed (0: never). Default 30 minutes. */
  sessionIdleMs?: number;
  /** What each MCP session keeps of the events it sent, for clients that resume a stream with Last-Event-ID. */
  eventStore?: EventStoreLimits;
  /** What all MCP sessions keep of their events together, at most. Default 256 MiB. */
  eventBudgetBytes?: number;
  /** The SSE `retry` a client waits before reconnecting a dropped stream. Default 1000 ms. */
  sseRetryMs?: number;
}

export const defaultMcpHttpOptions = {
  host: '127.0.0.1',
  port: 8080,
  maxBodyBytes: 32 * 1024 * 1024,
  sessionIdleMs: 30 * 60 * 1000,
  maxSessions: 1000,
  maxSessionsPerTenant: 100,
  sseRetryMs: 1_000,
} as const;

export const MCP_PATH = '/mcp';
export const HEALTH_PATH = '/healthz';
export const READY_PATH = '/readyz';
export const METRICS_PATH = '/metrics';
export const LIVE_PATH = '/live';
/** The live view's credential, set by /live?token=… (HttpOnly: the page's script never sees it). */
export const LIVE_COOKIE = 'codegen_live';

const cookieOf = (header: string | undefined, name: string): string | undefined => {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) {
      try {
        return decodeURIComponent(part.slice(i + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
};

const sendHtml = (res: ServerResponse, status: number, title: string, text: string) => {
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
  const body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body style="font-family:sans-serif;margin:3em"><h1>${esc(title)}</h1><p>${esc(text)}</p></body></html>`;
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': String(Buffer.byteLength(body)), 'Cache-Control': 'no-store' });
  res.end(body);
};

const ADMIN_ONLY = 'covers every tenant; use an admin credential (CLIENT_TOKEN, or a key made with `codegen-mcp keys add TENANT --admin`)';

interface HttpSession {
  transport: StreamableHTTPServerTransport;
  connection: McpConnection;
  /** The tenant that opened it: later requests must come from the same one. */
  tenant: string | undefined;
  close(): Promise<void>;
}

/** The client's address, for the audit log. */
const peerOf = (req: IncomingMessage): string => (req.socket.remoteAddress ? `${req.socket.remoteAddress}:${req.socket.remotePort ?? ''}` : '');

const rpcError = (code: number, message: string) => ({ jsonrpc: '2.0' as const, error: { code, message }, id: null });

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

type BodyRead = { tooLarge: true } | { tooLarge: false; text: string };

/** Reads the body up to `limit` bytes; past it, stops keeping data (the rest is drained and dropped). */
function readBody(req: IncomingMessage, limit: number): Promise<BodyRead> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve({ tooLarge: true });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > limit) {
        tooLarge = true;
        chunks.length = 0;
        resolve({ tooLarge: true });
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!tooLarge) resolve({ tooLarge: false, text: Buffer.concat(chunks).toString('utf8') });
    });
    req.on('error', reject);
  });
}

const mib = (bytes: number): string => `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MiB`;

/** Starts the MCP HTTP server; resolves once it listens. */
export async function startMcpHttp(opts: McpHttpOptions): Promise<{ port: number; close(): Promise<void> }> {
  const host = opts.host || defaultMcpHttpOptions.host;
  const maxBody = opts.maxBodyBytes ?? defaultMcpHttpOptions.maxBodyBytes;
  const idleMs = opts.sessionIdleMs ?? defaultMcpHttpOptions.sessionIdleMs;
  const maxSessions = opts.maxSessions ?? defaultMcpHttpOptions.maxSessions;
  const perTenant = opts.maxSessionsPerTenant ?? defaultMcpHttpOptions.maxSessionsPerTenant;
  /** Open and opening MCP sessions per tenant ('' without credentials). */
  const held = new Map<string, number>();
  const hold = (tenant: string, delta: number) => {
    const n = (held.get(tenant) ?? 0) + delta;
    if (n > 0) held.set(tenant, n);
    else held.delete(tenant);
  };
  /** Sessions being opened count against the cap too, so a burst of initialize calls cannot pass it. */
  let opening = 0;
  const logger = componentLogger(opts.logger, 'mcp-http');
  const sessions = new Map<string, HttpSession>();
  const eventBudget = new EventBudget(opts.eventBudgetBytes ?? defaultEventBudgetBytes);
  let security: HttpSecurity | undefined;
  let closing = false;

  // The connection's actor counts open requests and says when it has been idle too long.
  function track(session: HttpSession, res: ServerResponse): void {
    const actor = session.connection.sessions.actor;
    actor.send({ type: 'request.started' });
    res.once('close', () => actor.send({ type: 'request.ended' }));
  }

  async function newSession(principal: Principal | undefined, peer: string): Promise<HttpSession> {
    const connectionId = `http-${randomUUID()}`;
    const coordinator = principal && opts.access ? opts.access.portFor(principal, peer) : opts.coordinator;
    const mcp = createMcpServer({ ...opts, coordinator, connectionId, idleMs });
    const events = new BoundedEventStore(opts.eventStore ?? defaultEventStoreLimits, Date.now, eventBudget);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      // Streams are resumable: each opens with a priming event (an id and `retry`), and every
      // event is kept a while, so a client that lost its stream reconnects with Last-Event-ID.
      eventStore: events,
      retryInterval: opts.sseRetryMs ?? defaultMcpHttpOptions.sseRetryMs,
      onsessioninitialized: (id) => {
        sessions.set(id, session);
        logger.info({ mcpSession: id, connection: connectionId, tenant: principal?.tenant, credential: principal?.credential }, 'MCP session opened');
      },
    });
    hold(principal?.tenant ?? '', 1);
    let released = false;
    const release = () => {
      if (!released) hold(principal?.tenant ?? '', -1);
      released = true;
    };
    const session: HttpSession = {
      transport,
      connection: mcp.connection,
      tenant: principal?.tenant,
      close: async () => {
        release();
        events.close();
        await mcp.close();
      },
    };
    mcp.connection.sessions.actor.on('connection.idle', () => {
      logger.info({ mcpSession: transport.sessionId, connection: connectionId }, 'closing idle MCP session');
      void transport.close();
    });
    mcp.server.server.onclose = () => {
      const id = transport.sessionId;
      if (id && sessions.get(id) === session) {
        sessions.delete(id);
        logger.info({ mcpSession: id, connection: connectionId }, 'MCP session closed');
      }
      void session.close();
    };
    await mcp.server.connect(transport);
    return session;
  }

  async function handleMcp(req: IncomingMessage, res: ServerResponse, principal: Principal | undefined): Promise<void> {
    const raw = req.headers['mcp-session-id'];
    const sessionId = Array.isArray(raw) ? raw[0] : raw;
    const found = sessionId ? sessions.get(sessionId) : undefined;
    // Another tenant's MCP session is answered as one that does not exist.
    const existing = found && found.tenant === principal?.tenant ? found : undefined;
    if (sessionId && !existing) {
      sendJson(res, 404, rpcError(-32001, 'Session not found: it expired or was closed; start a new MCP session with initialize'));
      return;
    }

    if (req.method === 'GET' || req.method === 'DELETE') {
      if (!existing) {
        sendJson(res, 400, rpcError(-32000, 'Bad Request: Mcp-Session-Id header is required'));
        return;
      }
      track(existing, res);
      await existing.transport.handleRequest(req, res);
      return;
    }
    if (req.method !== 'POST') {
      sendJson(res, 405, rpcError(-32000, 'Method Not Allowed: use POST, GET or DELETE'), { Allow: 'GET, POST, DELETE' });
      return;
    }

    const body = await readBody(req, maxBody);
    if (body.tooLarge) {
      sendJson(
        res,
        413,
        rpcError(-32000, `Payload Too Large: the request body is over the ${mib(maxBody)} limit. Send large files in several smaller fs_write calls.`),
        { Connection: 'close' },
      );
      req.resume();
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.text);
    } catch {
      sendJson(res, 400, rpcError(-32700, 'Parse error: the body is not valid JSON'));
      return;
    }

    let session = existing;
    if (!session) {
      const initializing = Array.isArray(parsed) ? parsed.some((m) => isInitializeRequest(m)) : isInitializeRequest(parsed);
      if (!initializing) {
        sendJson(res, 400, rpcError(-32000, 'Bad Request: Mcp-Session-Id header is required (send initialize first to get one)'));
        return;
      }
      if (closing) {
        sendJson(res, 503, rpcError(-32000, 'Service Unavailable: the server is shutting down'));
        return;
      }
      const tenant = principal?.tenant ?? '';
      if (principal && (held.get(tenant) ?? 0) >= perTenant) {
        logger.warn({ tenant, held: held.get(tenant), perTenant }, 'MCP session refused: MCP_MAX_SESSIONS_PER_TENANT reached');
        sendJson(res, 429, rpcError(-32000, `Too Many Requests: tenant ${JSON.stringify(tenant)} has ${held.get(tenant)} MCP sessions open, the most MCP_MAX_SESSIONS_PER_TENANT=${perTenant} allows; close one (DELETE /mcp) or retry once idle ones are reaped`), { 'Retry-After': '30' });
        return;
      }
      if (sessions.size + opening >= maxSessions) {
        logger.warn({ sessions: sessions.size, maxSessions }, 'MCP session refused: MCP_MAX_SESSIONS reached');
        sendJson(res, 503, rpcError(-32000, `Service Unavailable: ${sessions.size} MCP sessions are open, the most MCP_MAX_SESSIONS=${maxSessions} allows; close one (DELETE /mcp) or retry once idle ones are reaped`), { 'Retry-After': '30' });
        return;
      }
      opening++;
      try {
        session = await newSession(principal, peerOf(req));
        track(session, res);
        await session.transport.handleRequest(req, res, parsed);
      } finally {
        opening--;
      }
      if (!session.transport.sessionId) await session.close(); // initialize was refused
      return;
    }
    track(session, res);
    await session.transport.handleRequest(req, res, parsed);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === HEALTH_PATH && (req.method === 'GET' || req.method === 'HEAD')) {
      sendJson(res, 200, { status: 'ok', mcp_sessions: sessions.size });
      return;
    }
    // Open like /healthz: for load balancers and orchestrators, it says only whether work can be taken.
    if (path === READY_PATH && (req.method === 'GET' || req.method === 'HEAD')) {
      const r = opts.readiness ? await opts.readiness() : { ready: true, reason: 'ready' };
      sendJson(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', reason: r.reason });
      return;
    }
    if (opts.live && (path === LIVE_PATH || path.startsWith(`${LIVE_PATH}/`))) {
      handleLive(req, res, path);
      return;
    }
    if (path !== MCP_PATH && !(path === METRICS_PATH && opts.metrics)) {
      sendJson(res, 404, rpcError(-32000, `Not Found: the MCP endpoint is ${MCP_PATH}${opts.metrics ? `, metrics are at ${METRICS_PATH}` : ''}`));
      return;
    }
    const verdict = security!.check(req.headers);
    if (!verdict.ok) {
      sendJson(res, verdict.status, rpcError(-32000, verdict.message), verdict.headers);
      req.resume();
      return;
    }
    if (path === METRICS_PATH && opts.metrics) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        sendJson(res, 405, rpcError(-32000, 'Method Not Allowed: use GET'), { Allow: 'GET' });
        return;
      }
      // The whole fleet's figures: an operator's view, not a tenant's.
      if (verdict.principal && !verdict.principal.admin) {
        sendJson(res, 403, rpcError(-32000, `Forbidden: /metrics ${ADMIN_ONLY}`));
        return;
      }
      const text = await opts.metrics.text();
      res.writeHead(200, { 'Content-Type': opts.metrics.contentType, 'Content-Length': String(Buffer.byteLength(text)), 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : text);
      return;
    }
    await handleMcp(req, res, verdict.principal);
  }

  /** A browser opens /live?token=… once: the token moves to an HttpOnly cookie and out of the address bar. */
  function handleLive(req: IncomingMessage, res: ServerResponse, path: string): void {
    const page = path === LIVE_PATH;
    const refuse = (status: number, message: string, headers: Record<string, string> = {}) => {
      if (page) {
        res.setHeader('WWW-Authenticate', headers['WWW-Authenticate'] ?? 'Bearer realm="codegen-mcp"');
        sendHtml(res, status, status === 401 ? 'Sign in to the live view' : 'Forbidden', `${message}. Open /live?token=YOUR_CLIENT_TOKEN once; the browser then keeps it in an HttpOnly cookie.`);
      } else sendJson(res, status, { error: message }, headers);
      req.resume();
    };
    const token = page ? new URL(req.url ?? '/', 'http://live.invalid').searchParams.get('token') : null;
    const cookie = cookieOf(req.headers.cookie, LIVE_COOKIE);
    const presented = token ?? (req.headers.authorization ? undefined : cookie);
    const verdict = security!.check(presented !== undefined && presented !== null ? { ...req.headers, authorization: `Bearer ${presented}` } : req.headers);
    if (!verdict.ok) return refuse(verdict.status, verdict.message, verdict.headers);
    if (verdict.principal && !verdict.principal.admin) return refuse(403, `Forbidden: the live view ${ADMIN_ONLY}`);
    if (token) {
      const secure = opts.tls ? '; Secure' : '';
      res.writeHead(303, { Location: LIVE_PATH, 'Set-Cookie': `${LIVE_COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=${LIVE_PATH}; Max-Age=43200${secure}`, 'Cache-Control': 'no-store', 'Referrer-Policy': 'no-referrer' });
      res.end();
      return;
    }
    if (!opts.live!(req, res)) sendJson(res, 404, { error: `Not Found: ${path}` });
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err, url: req.url, method: req.method }, 'MCP HTTP request failed');
      sendJson(res, 500, rpcError(-32603, 'Internal server error'));
    });
  };
  const server: Server = opts.tls ? createHttpsServer({ cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) }, onRequest) : createServer(onRequest);
  // Long tool calls stream for minutes: no request timeout; idle keep-alive sockets still close.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;

  await new Promise<void>((resolve, reject) => {
    const refused = (err: Error) => reject(isAddressInUse(err) ? new PortInUseError('HTTP_PORT', host, opts.port) : err);
    server.once('error', refused);
    server.listen(opts.port, host, () => {
      server.off('error', refused);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  security = new HttpSecurity({
    host,
    port,
    ...(opts.allowedHosts ? { allowedHosts: opts.allowedHosts } : {}),
    ...(opts.allowedOrigins ? { allowedOrigins: opts.allowedOrigins } : {}),
    ...(opts.access ? { authenticate: opts.access.authenticate } : {}),
  });
  logger.info({ host, port, path: MCP_PATH, auth: Boolean(opts.access), tls: Boolean(opts.tls), maxSessions, sessionIdleMs: idleMs }, 'MCP Streamable HTTP listening');


  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      closing = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      const all = [...sessions.values()];
      sessions.clear();
      await Promise.all(all.map(async (s) => {
        await s.transport.close().catch(() => undefined);
        await s.close();
      }));
      server.closeAllConnections();
      await stopped;
    })());

  return { port, close };
}
