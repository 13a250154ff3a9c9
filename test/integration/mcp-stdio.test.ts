/**
 * `codegen-mcp mcp` (the built CLI) as an MCP client starts it: stdio, with an embedded
 * coordinator and worker. stdout must carry JSON-RPC only.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { mountsUnder, unmount } from '../../src/worker/disk-quota.js';

const root = path.resolve(import.meta.dirname, '../..');
const cli = path.join(root, 'dist/src/cli/main.js');
const token = uniqueToken('mcp-stdio');
let base: string;

beforeAll(() => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  base = mkdtempSync(path.join(tmpdir(), `${token}-`));
});
afterAll(async () => {
  // Sessions' filesystems (disk quotas) stay mounted after their worker stops.
  for (const m of mountsUnder(base)) await unmount(m);
  rmSync(base, { recursive: true, force: true });
});

describe('codegen-mcp mcp over stdio', () => {
  it('serves tools from an embedded coordinator and worker, and cleans up when the client leaves', async () => {
    const workspaces = path.join(base, 'ws');
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [cli, 'mcp'],
      env: { ...(process.env as Record<string, string>), BASE_WORKSPACE: workspaces, LOG_LEVEL: 'info', VENV_POOL_SIZE: '1' },
      stderr: 'pipe',
    });
    const protocolErrors: Error[] = [];
    let stderr = '';
    transport.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const client = new Client({ name: 'stdio-it', version: '1' });
    client.onerror = (e) => protocolErrors.push(e);
    await client.connect(transport);
    const pid = transport.pid!;
    try {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['run_python', 'fs_write', 'artifact_get', 'task_result']));
      await client.callTool({ name: 'fs_write', arguments: { path: 'a.py', contents: 'print(6 * 7)' } });
      const r = await client.callTool({ name: 'run_python', arguments: { file: 'a.py' } });
      expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
      expect(r.structuredContent).toMatchObject({ stdout: '42\n', exit_code: 0 });
      const sid = (r.structuredContent as { session_id: string }).session_id;
      expect(existsSync(path.join(workspaces, sid))).toBe(true);

      await client.close();
      expect(await eventually(() => !pidsWithToken(cli).includes(pid), 30_000)).toBe(true);
      expect(existsSync(path.join(workspaces, sid))).toBe(false);
      expect(protocolErrors).toEqual([]);
      expect(stderr).toMatch(/"msg"|INFO|info/);
    } finally {
      await client.close().catch(() => {});
    }
    expect(readdirSync(workspaces).filter((d) => d.startsWith('sess-'))).toEqual([]);
    expect(pidsWithToken(token)).toEqual([]);
  }, 120_000);

  it('answers the MCP inspector CLI over stdio', async () => {
    const run = promisify(execFile);
    // The README's inspector, with npx from a folder with no package.json (as in mcp-http.test.ts).
    const anywhere = path.join(base, 'anywhere');
    mkdirSync(anywhere, { recursive: true });
    const { stdout } = await run('npx', ['-y', '@modelcontextprotocol/inspector@2.12.0', '--cli', '-e', `BASE_WORKSPACE=${path.join(base, 'ws2')}`, process.execPath, cli, 'mcp', '--method', 'tools/list'], {
      cwd: anywhere,
      timeout: 180_000,
    });
    const names = (JSON.parse(stdout) as { tools: Array<{ name: string }> }).tools.map((t) => t.name);
    expect(names).toHaveLength(20);
    expect(names).toContain('session_create');
  }, 240_000);
});
