/**
 * Resource notifications, subscriptions, completion and prompts over the in-memory coordinator
 * port (fast, deterministic); test/integration/mcp-resources.test.ts runs the same against the
 * real coordinator and worker over stdio and Streamable HTTP.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ResourceListChangedNotificationSchema, ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { silentLogger } from '../../src/log/logger.js';
import { compareLooks, lookOf, ResourceWatch } from '../../src/mcp/resource-watch.js';
import { parseFileUri } from '../../src/mcp/uris.js';
import { connectInProcess, defaultRunner, FakeCoordinatorPort, type InProcessMcp } from '../helpers/fake-coordinator-port.js';

const open: InProcessMcp[] = [];
const watches: ResourceWatch[] = [];
afterEach(async () => {
  for (const m of open.splice(0)) await m.close();
  for (const w of watches.splice(0)) w.close();
});

const sc = (r: unknown) => (r as { structuredContent: Record<string, any> }).structuredContent;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fake port whose run_python also understands `rm PATH`. */
function portWithRm(): FakeCoordinatorPort {
  const port = new FakeCoordinatorPort();
  port.runner = async (call, ctx) => {
    if (call.tool === 'run_python' && call.input.code?.startsWith('rm ')) {
      ctx.session.files.delete(call.input.code.slice(3).trim());
      return { status: 'SUCCESS', reply: { tool: 'run_python', output: { stdout: '', stderr: '', exit_code: 0, duration_ms: 1, timed_out: false } } };
    }
    return defaultRunner(call, ctx);
  };
  return port;
}

function sharedWatch(): ResourceWatch {
  const w = new ResourceWatch({ logger: silentLogger(), probeDelayMs: 10 });
  watches.push(w);
  return w;
}

/** A client that records the resource notifications it gets. */
async function connect(port: FakeCoordinatorPort, watch: ResourceWatch, extra: { maxResourceSubscriptions?: number } = {}) {
  const mcp = await connectInProcess(port, { resourceWatch: watch, resourceNotifyWindowMs: 20, ...extra });
  open.push(mcp);
  const seen = { listChanged: 0, updated: [] as string[] };
  mcp.client.setNotificationHandler(ResourceListChangedNotificationSchema, () => void (seen.listChanged += 1));
  mcp.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void seen.updated.push(n.params.uri));
  /** Lets the watch's look (10 ms after a change) and the notification window (20 ms) pass. */
  const settle = () => sleep(150);
  return { ...mcp, seen, settle };
}

describe('parsing session file URIs', () => {
  it('takes a URI apart and says what is wrong with a bad one', () => {
    expect(parseFileUri('session://sess-1/files/data/a%20b.csv')).toEqual({ ok: true, sessionId: 'sess-1', path: 'data/a b.csv' });
    expect(parseFileUri('test://watched-resource')).toMatchObject({ ok: false, problem: expect.stringMatching(/not a session file URI: expected session:\/\/\{session_id\}\/files\/\{path\}/) });
    expect(parseFileUri('session://sess-1/files/')).toMatchObject({ ok: false, problem: expect.stringMatching(/names no file/) });
    expect(parseFileUri('session:///files/a.txt')).toMatchObject({ ok: false, problem: expect.stringMatching(/names no session/) });
    expect(parseFileUri('session://sess-1/files/a/../../etc/passwd')).toMatchObject({ ok: false, problem: expect.stringMatching(/not a plain path inside the workspace/) });
    expect(parseFileUri('session://sess-1/files/dir/')).toMatchObject({ ok: false, problem: expect.stringMatching(/names a folder/) });
  });
});

describe('comparing looks at a workspace', () => {
  const file = (path: string, size: number, mtime = 1) => ({ path, name: path, size_bytes: size, is_directory: false, modified_time_ms: mtime });

  it('says the list changed when a file appears or goes, and not when one only grows', () => {
    const a = lookOf([file('a.txt', 1)], 1);
    const grown = lookOf([file('a.txt', 5)], 1);
    const more = lookOf([file('a.txt', 1), file('b.txt', 1)], 2);
    expect(compareLooks({ listed: a.listed, sigs: new Map() }, grown, true, [], []).listChanged).toBe(false);
    expect(compareLooks({ listed: a.listed, sigs: new Map() }, more, true, [], []).listChanged).toBe(true);
    expect(compareLooks({ listed: more.listed, sigs: new Map() }, a, true, [], []).listChanged).toBe(true);
  });

  it('reports a subscribed file whose size or mtime changed, that appeared or went, and what a tool wrote', () => {
    const after = lookOf([file('a.txt', 1, 2), file('c.txt', 1)], 2);
    const sigs = new Map<string, string | null>([
      ['a.txt', '1:1'],
      ['b.txt', '1:1'],
      ['c.txt', null],
      ['same.txt', null],
    ]);
    const { paths } = compareLooks({ listed: after.listed, sigs }, after, true, ['w.txt'], []);
    expect([...paths].sort()).toEqual(['a.txt', 'b.txt', 'c.txt', 'w.txt']);
  });

  it('counts everything as changed when there is no earlier look and something may have changed', () => {
    const after = lookOf([file('a.txt', 1)], 1);
    expect(compareLooks({ listed: undefined, sigs: new Map() }, after, true, [], ['a.txt'])).toEqual({ listChanged: true, paths: new Set(['a.txt']) });
    expect(compareLooks({ listed: undefined, sigs: new Map() }, after, false, [], ['a.txt'])).toEqual({ listChanged: false, paths: new Set() });
  });

  it('does not count a file missing from a listing that was cut short as gone', () => {
    const after = lookOf([file('a.txt', 1)], 20_000);
    const { paths } = compareLooks({ listed: after.listed, sigs: new Map([['far/away.txt', '1:1']]) }, after, true, [], []);
    expect(paths.size).toBe(0);
  });
});

describe('resources/list_changed', () => {
  it('is sent when a session is made and destroyed', async () => {
    const m = await connect(new FakeCoordinatorPort(), sharedWatch());
    const sid = sc(await m.client.callTool({ name: 'session_create', arguments: {} }))['session_id'];
    await m.settle();
    expect(m.seen.listChanged).toBe(1);
    await m.client.callTool({ name: 'session_destroy', arguments: { session_id: sid } });
    await m.settle();
    expect(m.seen.listChanged).toBe(2);
  });

  it('is sent, once listed, when a file appears or is removed, and not when one is only rewritten', async () => {
    const port = portWithRm();
    const m = await connect(port, sharedWatch());
    await m.client.callTool({ name: 'fs_write', arguments: { path: 'a.txt', contents: 'one' } });
    await m.settle();
    await m.client.listResources();
    const before = m.seen.listChanged;
    await m.client.callTool({ name: 'fs_write', arguments: { path: 'b.txt', contents: 'two' } });
    await m.settle();
    expect(m.seen.listChanged).toBe(before + 1);
    await m.client.callTool({ name: 'fs_write', arguments: { path: 'b.txt', contents: 'three' } });
    await m.settle();
    expect(m.seen.listChanged).toBe(before + 1);
    await m.client.callTool({ name: 'run_python', arguments: { code: 'rm b.txt' } });
    await m.settle();
    expect(m.seen.listChanged).toBe(before + 2);
    expect((await m.client.listResources()).resources.map((r) => r.name)).toEqual(['a.txt']);
  });

  it('coalesces a burst of changes into one notification', async () => {
    const m = await connect(new FakeCoordinatorPort(), sharedWatch());
    await m.client.callTool({ name: 'echo', arguments: { message: 'x' } });
    await m.settle();
    await m.client.listResources();
    const before = m.seen.listChanged;
    await Promise.all(['a', 'b', 'c', 'd'].map((n) => m.client.callTool({ name: 'fs_write', arguments: { path: `${n}.txt`, contents: n } })));
    await m.settle();
    expect(m.seen.listChanged).toBe(before + 1);
  });
});

describe('resources/subscribe', () => {
  it('sends resources/updated with the URI when fs_write or a run changes the file, and stops after unsubscribe', async () => {
    const port = portWithRm();
    const m = await connect(port, sharedWatch());
    const sid = sc(await m.client.callTool({ name: 'fs_write', arguments: { path: 'data/x.txt', contents: 'one', create_dirs: true } }))['session_id'];
    const uri = `session://${sid}/files/data/x.txt`;
    await m.client.subscribeResource({ uri });
    await m.settle();
    expect(m.seen.updated).toEqual([]);
    await m.client.callTool({ name: 'fs_write', arguments: { path: 'data/x.txt', contents: 'two' } });
    await m.settle();
    expect(m.seen.updated).toEqual([uri]);
    await m.client.callTool({ name: 'run_python', arguments: { code: 'write data/x.txt longer than before' } });
    await m.settle();
    expect(m.seen.updated).toEqual([uri, uri]);
    // Another file changing says nothing about this one.
    await m.client.callTool({ name: 'fs_write', arguments: { path: 'other.txt', contents: 'o' } });
    await m.settle();
    expect(m.seen.updated).toEqual([uri, uri]);
    await m.client.callTool({ name: 'run_python', arguments: { code: 'rm data/x.txt' } });
    await m.settle();
    expect(m.seen.updated).toEqual([uri, uri, uri]);
    await m.client.unsubscribeResource({ uri });
    await m.client.callTool({ name: 'fs_write', arguments: { path: 'data/x.txt', contents: 'back again' } });
    await m.settle();
    expect(m.seen.updated).toEqual([uri, uri, uri]);
  });

  it('tells one connection what another changed in a session both use', async () => {
    const port = new FakeCoordinatorPort();
    const watch = sharedWatch();
    const a = await connect(port, watch);
    const b = await connect(port, watch);
    const sid = sc(await a.client.callTool({ name: 'session_create', arguments: {} }))['session_id'];
    await a.client.callTool({ name: 'fs_write', arguments: { session_id: sid, path: 'shared.txt', contents: '1' } });
    const uri = `session://${sid}/files/shared.txt`;
    await a.client.subscribeResource({ uri });
    await b.client.callTool({ name: 'fs_write', arguments: { session_id: sid, path: 'shared.txt', contents: '22' } });
    await a.settle();
    expect(a.seen.updated).toEqual([uri]);
    expect(b.seen.updated).toEqual([]);
  });

  it('answers a malformed URI, an unknown session and another connection\'s default session with clear errors', async () => {
    const port = new FakeCoordinatorPort();
    const watch = sharedWatch();
    const m = await connect(port, watch);
    const other = await connect(port, watch);
    await expect(m.client.subscribeResource({ uri: 'test://watched-resource' })).rejects.toMatchObject({ code: -32602, message: expect.stringMatching(/is not a session file URI/) });
    await expect(m.client.subscribeResource({ uri: 'session://sess-x/files/../up.txt' })).rejects.toMatchObject({ code: -32602, message: expect.stringMatching(/not a plain path/) });
    await expect(m.client.unsubscribeResource({ uri: 'nonsense' })).rejects.toMatchObject({ code: -32602 });
    await expect(m.client.subscribeResource({ uri: 'session://sess-0000/files/a.txt' })).rejects.toMatchObject({ code: -32002, message: expect.stringMatching(/session sess-0000 not found/) });
    const theirs = sc(await other.client.callTool({ name: 'fs_write', arguments: { path: 's.txt', contents: 's' } }))['session_id'];
    await expect(m.client.subscribeResource({ uri: `session://${theirs}/files/s.txt` })).rejects.toMatchObject({ code: -32002 });
  });

  it('holds at most the configured number of subscriptions, and frees a slot on unsubscribe', async () => {
    const m = await connect(new FakeCoordinatorPort(), sharedWatch(), { maxResourceSubscriptions: 2 });
    const sid = sc(await m.client.callTool({ name: 'echo', arguments: { message: 'x' } }))['session_id'];
    await m.client.subscribeResource({ uri: `session://${sid}/files/a.txt` });
    await m.client.subscribeResource({ uri: `session://${sid}/files/b.txt` });
    await m.client.subscribeResource({ uri: `session://${sid}/files/b.txt` }); // the same one again takes no slot
    await expect(m.client.subscribeResource({ uri: `session://${sid}/files/c.txt` })).rejects.toMatchObject({ code: -32600, message: expect.stringMatching(/already holds 2 subscriptions/) });
    await m.client.unsubscribeResource({ uri: `session://${sid}/files/a.txt` });
    await m.client.subscribeResource({ uri: `session://${sid}/files/c.txt` });
  });

  it('tells subscribers when the session is destroyed, and forgets a closed connection', async () => {
    const port = new FakeCoordinatorPort();
    const watch = sharedWatch();
    const m = await connect(port, watch);
    const sid = sc(await m.client.callTool({ name: 'session_create', arguments: {} }))['session_id'];
    const uri = `session://${sid}/files/a.txt`;
    await m.client.subscribeResource({ uri });
    await m.client.callTool({ name: 'session_destroy', arguments: { session_id: sid } });
    await m.settle();
    expect(m.seen.updated).toEqual([uri]);
    await m.close();
    open.splice(open.indexOf(m), 1);
    expect(watch.trackedCount).toBe(0);
  });
});

describe('completion', () => {
  it("completes the template's session_id and path with the typed prefix", async () => {
    const m = await connect(new FakeCoordinatorPort(), sharedWatch());
    const sid = sc(await m.client.callTool({ name: 'session_create', arguments: {} }))['session_id'];
    for (const p of ['data/a.csv', 'data/b.csv', 'docs/readme.md', 'main.py']) await m.client.callTool({ name: 'fs_write', arguments: { session_id: sid, path: p, contents: 'x' } });
    const ref = { type: 'ref/resource' as const, uri: 'session://{session_id}/files/{+path}' };
    const ids = await m.client.complete({ ref, argument: { name: 'session_id', value: sid.slice(0, 8) } });
    expect(ids.completion.values).toContain(sid);
    expect((await m.client.complete({ ref, argument: { name: 'session_id', value: 'nope' } })).completion.values).toEqual([]);
    const paths = await m.client.complete({ ref, argument: { name: 'path', value: 'data/' }, context: { arguments: { session_id: sid } } });
    expect(paths.completion.values).toEqual(['data/a.csv', 'data/b.csv']);
    const d = await m.client.complete({ ref, argument: { name: 'path', value: 'd' }, context: { arguments: { session_id: sid } } });
    expect(d.completion.values).toEqual(['data/a.csv', 'data/b.csv', 'docs/readme.md']);
    expect((await m.client.complete({ ref, argument: { name: 'path', value: 'd' }, context: { arguments: { session_id: 'sess-unknown' } } })).completion.values).toEqual([]);
  });

  it('completes at most 100 values and says how many there were', async () => {
    const m = await connect(new FakeCoordinatorPort(), sharedWatch());
    const sid = sc(await m.client.callTool({ name: 'session_create', arguments: {} }))['session_id'];
    await Promise.all(Array.from({ length: 120 }, (_, i) => m.client.callTool({ name: 'fs_write', arguments: { session_id: sid, path: `f${String(i).padStart(3, '0')}.txt`, contents: 'x' } })));
    const r = await m.client.complete({ ref: { type: 'ref/resource', uri: 'session://{session_id}/files/{+path}' }, argument: { name: 'path', value: 'f' }, context: { arguments: { session_id: sid } } });
    expect(r.completion.values).toHaveLength(100);
    expect(r.completion).toMatchObject({ total: 120, hasMore: true });
  });
});

describe('prompts', () => {
  it('lists the prompts and gets them with messages that name real tools', async () => {
    const m = await connect(new FakeCoordinatorPort(), sharedWatch());
    const { prompts } = await m.client.listPrompts();
    expect(prompts.map((p) => p.name).sort()).toEqual(['analyse_data_file', 'setup_project']);
    const tools = new Set((await m.client.listTools()).tools.map((t) => t.name));
    const sid = sc(await m.client.callTool({ name: 'session_create', arguments: {} }))['session_id'];
    const analyse = await m.client.getPrompt({ name: 'analyse_data_file', arguments: { path: 'data/sales.csv', session_id: sid } });
    const text = (analyse.messages[0]!.content as { text: string }).text;
    expect(text).toContain('data/sales.csv');
    expect(text).toContain(sid);
    for (const t of ['fs_read', 'python_exec', 'pkg_install', 'artifact_get']) {
      expect(text).toContain(t);
      expect(tools.has(t)).toBe(true);
    }
    expect(analyse.messages[1]!.content).toMatchObject({ type: 'resource_link', uri: `session://${sid}/files/data/sales.csv`, mimeType: 'text/csv' });
    const setup = await m.client.getPrompt({ name: 'setup_project', arguments: { packages: 'pandas, requests==2.32.3' } });
    const steps = (setup.messages[0]!.content as { text: string }).text;
    expect(steps).toContain('["pandas","requests==2.32.3"]');
    for (const t of ['session_create', 'pkg_install', 'fs_write', 'run_python', 'session_checkpoint', 'session_restore']) {
      expect(steps).toContain(t);
      expect(tools.has(t)).toBe(true);
    }
    await expect(m.client.getPrompt({ name: 'setup_project', arguments: {} })).rejects.toMatchObject({ code: -32602 });
  });

  it("completes a prompt's session_id and path", async () => {
    const m = await connect(new FakeCoordinatorPort(), sharedWatch());
    const sid = sc(await m.client.callTool({ name: 'fs_write', arguments: { path: 'data/sales.csv', contents: 'a,b\n1,2\n', create_dirs: true } }))['session_id'];
    const ref = { type: 'ref/prompt' as const, name: 'analyse_data_file' };
    expect((await m.client.complete({ ref, argument: { name: 'session_id', value: 'sess-' } })).completion.values).toEqual([sid]);
    // Without session_id, the connection's default session.
    expect((await m.client.complete({ ref, argument: { name: 'path', value: 'data/s' } })).completion.values).toEqual(['data/sales.csv']);
  });
});
