/**
 * MCP calls that outlive their wait limit, and streams that drop: against a real coordinator (in
 * this process) and a real worker (the built CLI), with the official SDK client and raw HTTP.
 * - a call answered {task_id} keeps streaming its task's log lines to the MCP session;
 * - a client that loses its SSE stream resumes it with Last-Event-ID and misses nothing;
 * - an unknown tool is a JSON-RPC error, not a tool that ran and failed.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { startMcpTestSystem, type McpTestSystem } from '../helpers/mcp-system.js';
import { eventually, uniqueToken } from '../helpers/processes.js';

let sys: McpTestSystem;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  sys = await startMcpTestSystem('mcp-stream');
}, 120_000);

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
});

afterAll(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
  await sys?.stop();
}, 60_000);

const frontDoor = (waitLimitMs: number): Promise<string> => sys.frontDoor(waitLimitMs);

async function sdkClient(target: string) {
  const client = new Client({ name: 'stream-it', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(target));
  await client.connect(transport);
  closers.push(async () => {
    await transport.terminateSession().catch(() => {});
    await client.close();
  });
  return client;
}

const sc = (r: unknown) => (r as { structuredContent: Record<string, any> }).structuredContent;

describe('a call that outlives the wait limit', () => {
  it('a 20 s task past a 5 s wait limit still delivers all 20 of its log lines, then says it ended; task_result has the direct call\'s shape', async () => {
    const target = await frontDoor(5_000);
    const client = await sdkClient(target);
    const logs: Array<{ logger?: string; data: any }> = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push({ logger: n.params.logger, data: n.params.data }));
    const mark = uniqueToken('twenty');
    const code = 'import sys, time\nfor i in range(20):\n    print("line", i, flush=True)\n    time.sleep(1)\n';
    const first = sc(await client.callTool({ name: 'run_python', arguments: { code, args: [mark] } }));
    expect(first).toMatchObject({ done: false, status: 'running' });
    const taskId = first['task_id'] as string;
    const lines = () => logs.filter((l) => l.data?.task_id === taskId && l.data?.stream === 'stdout').map((l) => l.data.line as string);
    // At the answer, 5 or so lines had come; the rest keep coming on the connection's stream.
    expect(lines().length).toBeLessThan(20);
    // Polled as a client would: each task_result waits up to the wait limit.
    let result: unknown;
    for (let polls = 0; polls < 10; polls++) {
      result = await client.callTool({ name: 'task_result', arguments: { task_id: taskId } });
      if (sc(result)['done']) break;
    }
    expect(sc(result)).toMatchObject({ done: true, status: 'succeeded', exit_code: 0 });
    expect(await eventually(() => logs.some((l) => l.data?.task_id === taskId && /ended \(succeeded\)/.test(String(l.data?.line))), 10_000, 50), 'the "task ended" notice').toBe(true);
    expect(lines()).toEqual(Array.from({ length: 20 }, (_, i) => `line ${i}`));
    // The same flat shape as a call that finished within its wait (task_result adds `tool`).
    const direct = sc(await client.callTool({ name: 'run_python', arguments: { code: 'print("quick")' } }));
    expect(Object.keys(sc(result)).filter((k) => k !== 'tool').sort()).toEqual(Object.keys(direct).sort());
    expect(sc(result)['stdout']).toContain('line 19');
  }, 90_000);
});

/** A minimal SSE reader: events as {id, data}, for as long as `until` says. */
async function readEvents(res: Response, until: (events: Array<{ id?: string; retry?: string; data: string }>) => boolean, ms: number) {
  const events: Array<{ id?: string; retry?: string; data: string }> = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  const end = Date.now() + ms;
  try {
    while (!until(events) && Date.now() < end) {
      const next = await Promise.race([reader.read(), new Promise<'late'>((r) => setTimeout(() => r('late'), Math.max(1, end - Date.now())))]);
      if (next === 'late' || next.done) break;
      buf += next.value;
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const e: { id?: string; retry?: string; data: string } = { data: '' };
        for (const line of block.split('\n')) {
          const i = line.indexOf(':');
          const [k, v] = i < 0 ? [line, ''] : [line.slice(0, i), line.slice(i + 1).replace(/^ /, '')];
          if (k === 'id') e.id = v;
          else if (k === 'retry') e.retry = v;
          else if (k === 'data') e.data += v;
        }
        events.push(e);
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return events;
}

const jsonOf = (data: string): any => {
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
};

describe('resumable streams', () => {
  const protocol = '2025-11-25';
  async function openSession(target: string): Promise<Record<string, string>> {
    const init = await fetch(target, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: protocol, capabilities: {}, clientInfo: { name: 'raw-resume', version: '1' } } }),
    });
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id')!;
    await init.text();
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': protocol };
    expect((await fetch(target, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).status).toBe(202);
    return headers;
  }

  it('a POST stream opens with a priming event (id, retry); dropped mid-call and resumed with Last-Event-ID, it misses nothing and ends with the result', async () => {
    const target = await frontDoor(50_000);
    const headers = await openSession(target);
    const ac = new AbortController();
    const code = 'import time\nfor i in range(10):\n    print("tick", i, flush=True)\n    time.sleep(0.3)\n';
    const call = await fetch(target, { method: 'POST', headers, signal: ac.signal, body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'run_python', arguments: { code } } }) });
    expect(call.headers.get('content-type')).toMatch(/text\/event-stream/);
    const before = await readEvents(call, (ev) => ev.filter((e) => jsonOf(e.data)?.params?.data?.line?.startsWith('tick')).length >= 3, 20_000);
    ac.abort();
    expect(before[0]).toMatchObject({ data: '' });
    expect(before[0]!.id).toBeTruthy();
    expect(before[0]!.retry).toBe('1000');
    const lastId = before.at(-1)!.id!;
    // The task runs on while no stream is open; its lines are kept.
    await new Promise((r) => setTimeout(r, 1_500));
    const resumed = await fetch(target, { method: 'GET', headers: { Accept: 'text/event-stream', 'mcp-session-id': headers['mcp-session-id']!, 'mcp-protocol-version': protocol, 'last-event-id': lastId } });
    expect(resumed.status).toBe(200);
    const after = await readEvents(resumed, (ev) => ev.some((e) => jsonOf(e.data)?.id === 7), 30_000);
    const ticks = [...before, ...after].map((e) => jsonOf(e.data)?.params?.data?.line).filter((l): l is string => typeof l === 'string' && l.startsWith('tick'));
    expect(ticks).toEqual(Array.from({ length: 10 }, (_, i) => `tick ${i}`));
    const answer = after.map((e) => jsonOf(e.data)).find((m) => m?.id === 7);
    expect(answer?.result?.structuredContent).toMatchObject({ exit_code: 0, status: 'succeeded' });
    // Every event the server sent had an id, and none came twice.
    const ids = [...before, ...after].map((e) => e.id);
    expect(ids.every(Boolean)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  }, 60_000);

  it("refuses a Last-Event-ID another MCP session's stream sent, and replays none of its events", async () => {
    const target = await frontDoor(50_000);
    const a = await openSession(target);
    const call = await fetch(target, { method: 'POST', headers: a, body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { message: 'secret-of-a' } } }) });
    const events = await readEvents(call, (ev) => ev.some((e) => jsonOf(e.data)?.id === 3), 10_000);
    const aId = events.at(0)!.id!;
    const b = await openSession(target);
    const stolen = await fetch(target, { method: 'GET', headers: { Accept: 'text/event-stream', 'mcp-session-id': b['mcp-session-id']!, 'mcp-protocol-version': protocol, 'last-event-id': aId } });
    expect(stolen.status).toBe(400);
    expect(await stolen.text()).not.toContain('secret-of-a');
  }, 30_000);
});

describe('unknown tools', () => {
  it('a call to a tool that does not exist is a JSON-RPC error naming it', async () => {
    const client = await sdkClient(await frontDoor(50_000));
    await expect(client.callTool({ name: 'no_such_tool', arguments: {} })).rejects.toThrow(/Unknown tool: "no_such_tool"/);
    // The connection is unharmed.
    expect(sc(await client.callTool({ name: 'echo', arguments: { message: 'still here' } }))).toMatchObject({ message: 'still here' });
  }, 30_000);
});
