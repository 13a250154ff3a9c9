import { afterEach, describe, expect, it } from 'vitest';
import { CONNECTION_KEY, DEFAULT_KEY } from '../../src/mcp/default-session.js';
import { connectInProcess, FakeCoordinatorPort, type InProcessMcp } from '../helpers/fake-coordinator-port.js';

const open: InProcessMcp[] = [];
async function connect(port: FakeCoordinatorPort, opts: Parameters<typeof connectInProcess>[1] = {}): Promise<InProcessMcp> {
  const m = await connectInProcess(port, opts);
  open.push(m);
  return m;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((m) => m.close()));
});

const sc = (r: unknown) => (r as { structuredContent: Record<string, any> }).structuredContent;

describe("a connection's default session", () => {
  it('is created on first use and reused afterwards', async () => {
    const port = new FakeCoordinatorPort();
    const m = await connect(port);
    expect(port.callsOf('createSession')).toHaveLength(0);
    const a = sc(await m.client.callTool({ name: 'echo', arguments: { message: 'a' } }));
    const b = sc(await m.client.callTool({ name: 'fs_write', arguments: { path: 'x', contents: 'y' } }));
    expect(a['session_id']).toBe(b['session_id']);
    expect(port.callsOf('createSession')).toHaveLength(1);
    const status = sc(await m.client.callTool({ name: 'session_status', arguments: {} }));
    expect(status).toMatchObject({ session_id: a['session_id'], is_default: true, state: 'READY' });
  });

  it('is created once when the first calls arrive together', async () => {
    const port = new FakeCoordinatorPort();
    const m = await connect(port);
    const results = await Promise.all([1, 2, 3, 4].map((i) => m.client.callTool({ name: 'echo', arguments: { message: String(i) } })));
    expect(new Set(results.map((r) => sc(r)['session_id'])).size).toBe(1);
    expect(port.callsOf('createSession')).toHaveLength(1);
  });

  it('differs between connections, and one connection never sees the other one', async () => {
    const port = new FakeCoordinatorPort();
    const a = await connect(port);
    const b = await connect(port);
    const sa = sc(await a.client.callTool({ name: 'echo', arguments: { message: 'a' } }))['session_id'];
    const sb = sc(await b.client.callTool({ name: 'echo', arguments: { message: 'b' } }))['session_id'];
    expect(sa).not.toBe(sb);

    const listB = sc(await b.client.callTool({ name: 'session_list', arguments: {} }));
    expect(listB['sessions'].map((s: { session_id: string }) => s.session_id)).toEqual([sb]);

    const steal = await b.client.callTool({ name: 'fs_read', arguments: { path: 'x', session_id: sa } });
    expect(steal.isError).toBe(true);
    expect((steal.content as Array<{ text: string }>)[0]!.text).toMatch(/SESSION_NOT_FOUND/);
    expect(port.callsOf('submitTask').filter((c) => (c.args[0] as { sessionId: string }).sessionId === sa)).toHaveLength(1);

    const destroy = await b.client.callTool({ name: 'session_destroy', arguments: { session_id: sa } });
    expect(destroy.isError).toBe(true);
    expect(port.sessions.has(sa)).toBe(true);
  });

  it('is labelled in its metadata without showing the connection id', async () => {
    const port = new FakeCoordinatorPort();
    const m = await connect(port, { connectionId: 'secret-connection-id' });
    const sid = sc(await m.client.callTool({ name: 'echo', arguments: { message: 'a' } }))['session_id'];
    const md = port.sessions.get(sid)!.view.metadata;
    expect(md[DEFAULT_KEY]).toBe('true');
    expect(md[CONNECTION_KEY]).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.stringify(md)).not.toContain('secret-connection-id');
  });

  it('is destroyed when the connection closes, after the grace', async () => {
    const port = new FakeCoordinatorPort();
    const m = await connectInProcess(port, { defaultSessionGraceMs: 150 });
    const sid = sc(await m.client.callTool({ name: 'echo', arguments: { message: 'a' } }))['session_id'];
    const explicit = sc(await m.client.callTool({ name: 'session_create', arguments: {} }))['session_id'];
    const started = Date.now();
    await m.close();
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(port.sessions.has(sid)).toBe(false);
    expect(port.sessions.has(explicit)).toBe(true);
    expect(port.callsOf('destroySession').map((c) => c.args[0])).toEqual([sid]);
  });

  it('is not created by a connection that never used it', async () => {
    const port = new FakeCoordinatorPort();
    const m = await connectInProcess(port);
    await m.client.listTools();
    await m.close();
    expect(port.callsOf('createSession')).toHaveLength(0);
    expect(port.callsOf('destroySession')).toHaveLength(0);
  });

  it('is made anew after session_destroy without a session_id', async () => {
    const port = new FakeCoordinatorPort();
    const m = await connect(port);
    const first = sc(await m.client.callTool({ name: 'echo', arguments: { message: 'a' } }))['session_id'];
    const d = sc(await m.client.callTool({ name: 'session_destroy', arguments: {} }));
    expect(d).toMatchObject({ session_id: first, destroyed: true });
    const second = sc(await m.client.callTool({ name: 'echo', arguments: { message: 'b' } }))['session_id'];
    expect(second).not.toBe(first);
  });

  it('is replaced once when it was destroyed from elsewhere', async () => {
    const port = new FakeCoordinatorPort();
    const m = await connect(port);
    const first = sc(await m.client.callTool({ name: 'echo', arguments: { message: 'a' } }))['session_id'];
    await port.destroySession(first);
    const res = await m.client.callTool({ name: 'echo', arguments: { message: 'b' } });
    expect(res.isError).toBeFalsy();
    expect(sc(res)['session_id']).not.toBe(first);
  });

  it('leaves explicit sessions to their own session_id', async () => {
    const port = new FakeCoordinatorPort();
    const m = await connect(port);
    const created = sc(await m.client.callTool({ name: 'session_create', arguments: { metadata: { owner: 'me', 'mcp.default_session': 'true' }, env: { A: 'b' }, allow_network: true } }));
    expect(created).toMatchObject({ worker_id: 'worker-1', state: 'READY' });
    expect(created['metadata']).toMatchObject({ owner: 'me' });
    expect(created['metadata'][DEFAULT_KEY]).toBeUndefined();
    const cfg = port.callsOf('createSession')[0]!.args[0] as { config: unknown };
    expect(cfg.config).toEqual({ env_vars: { A: 'b' }, allow_network: true });
    const r = sc(await m.client.callTool({ name: 'echo', arguments: { message: 'x', session_id: created['session_id'] } }));
    expect(r['session_id']).toBe(created['session_id']);
    expect(port.callsOf('createSession')).toHaveLength(1);
  });
});
