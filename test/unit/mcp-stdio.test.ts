import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log/logger.js';
import { runMcpStdio } from '../../src/mcp/stdio.js';
import { FakeCoordinatorPort } from '../helpers/fake-coordinator-port.js';

describe('MCP over stdio', () => {
  it('speaks JSON-RPC lines only, and cleans up the default session when stdin ends', async () => {
    const port = new FakeCoordinatorPort();
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const lines: any[] = [];
    let buf = '';
    stdout.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + 1);
      }
    });
    const done = runMcpStdio({ coordinator: port, logger: silentLogger(), waitLimitMs: 5000, legacyToolNames: false, defaultSessionGraceMs: 0, stdin, stdout });
    const send = (m: unknown) => stdin.write(`${JSON.stringify(m)}\n`);
    const reply = async (id: number) => {
      const end = Date.now() + 3000;
      for (;;) {
        const r = lines.find((l) => l.id === id);
        if (r) return r;
        if (Date.now() > end) throw new Error(`no reply to ${id}`);
        await new Promise((res) => setTimeout(res, 5));
      }
    };
    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    expect((await reply(1)).result.serverInfo.name).toBe('codegen-mcp');
    expect((await reply(1)).result.capabilities).toMatchObject({ tools: {}, resources: {}, logging: {} });
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'run_python', arguments: { code: 'print via stdio' } } });
    const r = await reply(2);
    expect(r.result.structuredContent).toMatchObject({ stdout: 'via stdio\n' });
    const sid = r.result.structuredContent.session_id;
    expect(port.sessions.has(sid)).toBe(true);
    stdin.end();
    await done;
    expect(port.sessions.has(sid)).toBe(false);
    expect(lines.every((l) => l.jsonrpc === '2.0')).toBe(true);
  });
});
