import { afterEach, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ClientAuthenticator, type Principal } from '../../src/auth/authenticator.js';
import { addKey } from '../../src/auth/keys-file.js';
import { silentLogger } from '../../src/log/logger.js';
import { startMcpHttp, type McpHttpOptions } from '../../src/mcp/http.js';
import { FakeCoordinatorPort } from '../helpers/fake-coordinator-port.js';

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

async function start(extra: Partial<McpHttpOptions> = {}, port = new FakeCoordinatorPort()) {
  const http = await startMcpHttp({ coordinator: port, logger: silentLogger(), waitLimitMs: 5000, legacyToolNames: false, defaultSessionGraceMs: 0, host: '127.0.0.1', port: 0, ...extra });
  stops.push(http.close);
  return { port, http, url: `http://127.0.0.1:${http.port}/mcp` };
}

async function connect(url: string, headers: Record<string, string> = {}) {
  const client = new Client({ name: 'http-unit', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  await client.connect(transport);
  stops.push(() => client.close());
  return { client, transport };
}

const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};
const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

/** fetch cannot set Host: a raw node:http POST that can. */
function rawPost(url: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const req = request(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'Content-Length': String(Buffer.byteLength(text)), ...headers } }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

describe('MCP over Streamable HTTP', () => {
  it('serves the tools to an SDK client', async () => {
    const { url } = await start();
    const { client } = await connect(url);
    const { tools } = await client.listTools();
    expect(tools.length).toBe(20);
    const r = await client.callTool({ name: 'run_python', arguments: { code: 'print over http' } });
    expect(r.structuredContent).toMatchObject({ stdout: 'over http\n', exit_code: 0 });
  });

  it('answers /healthz', async () => {
    const { http } = await start();
    const r = await fetch(`http://127.0.0.1:${http.port}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ status: 'ok' });
  });

  it('refuses a foreign Origin and a foreign Host with 403', async () => {
    const { url, http } = await start();
    const o = await post(url, initialize, { Origin: 'http://evil.example' });
    expect(o.status).toBe(403);
    expect(await o.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 } });
    const h = await rawPost(url, initialize, { Host: 'evil.example' });
    expect(h.status).toBe(403);
    expect(JSON.parse(h.body)).toMatchObject({ error: { message: expect.stringMatching(/Host/) } });
    const wrongPort = await rawPost(url, initialize, { Host: 'localhost:1' });
    expect(wrongPort.status).toBe(403);
    const ok = await post(url, initialize, { Origin: `http://localhost:${http.port}` });
    expect(ok.status).toBe(200);
  });

  it('accepts configured hosts and origins', async () => {
    const { url } = await start({ allowedHosts: ['mcp.internal'], allowedOrigins: ['https://app.example'] });
    expect((await rawPost(url, initialize, { Host: 'mcp.internal:1234', Origin: 'https://app.example' })).status).toBe(200);
    expect((await rawPost(url, initialize, { Host: 'mcp.internal', Origin: 'http://localhost' })).status).toBe(403);
    expect((await post(url, initialize)).status).toBe(403);
  });

  it('answers 400 to a request without a session id that is not initialize', async () => {
    const { url } = await start();
    const r = await post(url, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: { message: expect.stringMatching(/Mcp-Session-Id/) } });
    const g = await fetch(url, { headers: { Accept: 'text/event-stream' } });
    expect(g.status).toBe(400);
    const unknown = await post(url, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }, { 'Mcp-Session-Id': 'nope' });
    expect(unknown.status).toBe(404);
  });

  /** Two tenants: CLIENT_TOKEN s3cret (default, admin) and a key file with one key for "acme". */
  function authed(extra: Partial<McpHttpOptions> = {}) {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcp-http-keys-'));
    const keysFile = path.join(dir, 'keys.json');
    const acme = addKey(keysFile, 'acme', false).key;
    const auth = new ClientAuthenticator({ token: 's3cret', keysFile });
    const tenants: string[] = [];
    const port = new FakeCoordinatorPort();
    const access = { authenticate: (h: string | undefined) => auth.authenticate(h), portFor: (p: Principal) => (tenants.push(p.tenant), port) };
    return { acme, tenants, started: start({ access, ...extra }, port), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }

  it('answers 401 without the right bearer token, and serves with it', async () => {
    const t = authed();
    const { url } = await t.started;
    t.cleanup();
    expect((await post(url, initialize)).status).toBe(401);
    const wrong = await post(url, initialize, { Authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toMatch(/Bearer/);
    expect((await post(url, initialize, { Authorization: 'Bearer s3cret' })).status).toBe(200);
    const { client } = await connect(url, { Authorization: 'Bearer s3cret' });
    expect((await client.callTool({ name: 'echo', arguments: { message: 'x' } })).isError).toBeFalsy();
  });

  it("opens each MCP session on its tenant's port, and answers another tenant's session id as unknown (404)", async () => {
    const t = authed();
    const { url } = await t.started;
    const { client, transport } = await connect(url, { Authorization: `Bearer ${t.acme}` });
    expect((await client.callTool({ name: 'echo', arguments: { message: 'mine' } })).isError).toBeFalsy();
    expect(t.tenants).toEqual(['acme']);
    const list = { jsonrpc: '2.0', id: 3, method: 'tools/list', params: {} };
    const session = { 'Mcp-Session-Id': transport.sessionId!, 'Mcp-Protocol-Version': '2025-06-18' };
    const stolen = await post(url, list, { ...session, Authorization: 'Bearer s3cret' });
    expect(stolen.status).toBe(404);
    const own = await post(url, list, { ...session, Authorization: `Bearer ${t.acme}` });
    expect(own.status).toBe(200);
    t.cleanup();
  });

  it("refuses a tenant's MCP session beyond MCP_MAX_SESSIONS_PER_TENANT with 429, while another tenant still gets one", async () => {
    const t = authed({ maxSessionsPerTenant: 1 });
    const { url } = await t.started;
    const first = await connect(url, { Authorization: `Bearer ${t.acme}` });
    const second = await post(url, initialize, { Authorization: `Bearer ${t.acme}` });
    expect(second.status).toBe(429);
    expect(((await second.json()) as { error: { message: string } }).error.message).toMatch(/tenant "acme" has 1 MCP sessions open, the most MCP_MAX_SESSIONS_PER_TENANT=1 allows/);
    expect((await post(url, initialize, { Authorization: 'Bearer s3cret' })).status).toBe(200);
    await first.transport.terminateSession();
    expect((await post(url, initialize, { Authorization: `Bearer ${t.acme}` })).status).toBe(200);
    t.cleanup();
  });

  it('answers /readyz without credentials: 200 when ready, 503 with the reason when not', async () => {
    let state = { ready: false, reason: 'no worker is online' };
    const t = authed({ readiness: async () => state });
    const { url } = await t.started;
    t.cleanup();
    const readyz = url.replace(/\/mcp$/, '/readyz');
    const down = await fetch(readyz);
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({ status: 'not ready', reason: 'no worker is online' });
    state = { ready: true, reason: '1 worker(s) online' };
    expect((await fetch(readyz)).status).toBe(200);
  });

  it('refuses an initialize beyond MCP_MAX_SESSIONS with 503 naming the cap, and takes one again after a session closes', async () => {
    const { url } = await start({ maxSessions: 2 });
    const a = await connect(url);
    await connect(url);
    const third = await post(url, initialize);
    expect(third.status).toBe(503);
    expect(((await third.json()) as { error: { message: string } }).error.message).toMatch(/MCP_MAX_SESSIONS=2/);
    await a.transport.terminateSession();
    expect((await post(url, initialize)).status).toBe(200);
  });

  it('takes a 2 MiB fs_write and refuses an over-limit body with a JSON-RPC error', async () => {
    const { url, port } = await start({ maxBodyBytes: 3 * 1024 * 1024 });
    const { client, transport } = await connect(url);
    const big = 'x'.repeat(2 * 1024 * 1024);
    const w = await client.callTool({ name: 'fs_write', arguments: { path: 'big.txt', contents: big } });
    expect(w.structuredContent).toMatchObject({ bytes_written: big.length });
    expect([...port.sessions.values()][0]!.files.get('big.txt')!.length).toBe(big.length);

    const huge = { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'fs_write', arguments: { path: 'h', contents: 'y'.repeat(4 * 1024 * 1024) } } };
    const r = await post(url, huge, { 'Mcp-Session-Id': transport.sessionId!, 'Mcp-Protocol-Version': '2025-06-18' });
    expect(r.status).toBe(413);
    expect(r.headers.get('content-type')).toMatch(/application\/json/);
    expect(await r.json()).toMatchObject({ jsonrpc: '2.0', error: { message: expect.stringMatching(/3 MiB/) } });
  });

  it('accepts bodies of at least 16 MiB by default', async () => {
    const { url } = await start();
    const { client } = await connect(url);
    const big = 'z'.repeat(17 * 1024 * 1024);
    const w = await client.callTool({ name: 'fs_write', arguments: { path: 'big.txt', contents: big } });
    expect(w.structuredContent).toMatchObject({ bytes_written: big.length });
  });

  it('answers a body that is not JSON with a parse error', async () => {
    const { url } = await start();
    const r = await post(url, '{not json');
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: { code: -32700 } });
  });

  it('destroys the default session when the client ends the MCP session', async () => {
    const { url, port } = await start();
    const { client, transport } = await connect(url);
    const r = await client.callTool({ name: 'echo', arguments: { message: 'x' } });
    const sid = (r.structuredContent as { session_id: string }).session_id;
    expect(port.sessions.has(sid)).toBe(true);
    await transport.terminateSession();
    const end = Date.now() + 2000;
    while (port.sessions.has(sid) && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
    expect(port.sessions.has(sid)).toBe(false);
  });

  it('keeps MCP sessions apart', async () => {
    const { url } = await start();
    const a = await connect(url);
    const b = await connect(url);
    const sa = (await a.client.callTool({ name: 'echo', arguments: { message: 'a' } })).structuredContent as { session_id: string };
    const sb = (await b.client.callTool({ name: 'echo', arguments: { message: 'b' } })).structuredContent as { session_id: string };
    expect(sa.session_id).not.toBe(sb.session_id);
    expect(a.transport.sessionId).not.toBe(b.transport.sessionId);
  });

  it('closes idle MCP sessions', async () => {
    const { url } = await start({ sessionIdleMs: 300 });
    const raw = await post(url, initialize);
    const id = raw.headers.get('mcp-session-id')!;
    await raw.text();
    await new Promise((r) => setTimeout(r, 1600));
    const r = await post(url, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }, { 'Mcp-Session-Id': id, 'Mcp-Protocol-Version': '2025-06-18' });
    expect(r.status).toBe(404);
  });
});
