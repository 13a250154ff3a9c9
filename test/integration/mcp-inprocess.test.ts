/**
 * The MCP front door in-process over the real coordinator and a real worker (in this process),
 * with the SDK client over InMemoryTransport.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallToolResultSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { coordinatorConfig } from '../../src/config/coordinator.js';
import { workerConfig } from '../../src/config/worker.js';
import { startCoordinator, type RunningCoordinator } from '../../src/coordinator/main.js';
import { silentLogger } from '../../src/log/logger.js';
import { createMcpServer, type McpOptions } from '../../src/mcp/server.js';
import { startWorker, type RunningWorker } from '../../src/worker/main.js';
import { buildWheel } from '../helpers/wheels.js';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { mountsUnder, unmount } from '../../src/worker/disk-quota.js';

const token = uniqueToken('mcp-inproc');
let base: string;
let coordinator: RunningCoordinator;
let worker: RunningWorker;

beforeAll(async () => {
  base = mkdtempSync(path.join(tmpdir(), `${token}-`));
  const wheels = path.join(base, 'wheels');
  buildWheel(wheels, 'mcpwheel', '1.2.3');
  process.env['PIP_FIND_LINKS'] = wheels;
  process.env['PIP_NO_INDEX'] = '1';
  coordinator = await startCoordinator(coordinatorConfig({ GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_ENABLED: 'false', LOG_LEVEL: 'silent', RECOVERY_GRACE_SECONDS: '0', CODEGEN_STATE_DIR: path.join(base, 'state') }), silentLogger());
  worker = await startWorker(
    workerConfig({ COORDINATOR_ADDR: `127.0.0.1:${coordinator.grpcPort}`, WORKER_ID: 'inproc-worker', BASE_WORKSPACE: path.join(base, 'ws'), VENV_POOL_SIZE: '2', LOG_LEVEL: 'silent', CODEGEN_STATE_DIR: path.join(base, 'state') }),
    silentLogger(),
  );
  const online = await eventually(async () => (await coordinator.coordinator.listWorkers()).some((w) => w.state === "online"), 30_000);
  if (!online) throw new Error('the worker did not come online');
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await coordinator?.stop();
  // Sessions' filesystems (disk quotas) stay mounted after their worker stops.
  for (const m of mountsUnder(base)) await unmount(m);
  rmSync(base, { recursive: true, force: true });
}, 60_000);

async function connect(options: Partial<McpOptions> = {}) {
  const { server, close } = createMcpServer({
    coordinator: coordinator.coordinator,
    logger: silentLogger(),
    waitLimitMs: 30_000,
    legacyToolNames: false,
    defaultSessionGraceMs: 0,
    ...options,
    connectionId: `inproc-${Math.random()}`,
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: 'inproc', version: '1' });
  await server.connect(b);
  await client.connect(a);
  return {
    client,
    close: async () => {
      await client.close();
      await close();
    },
  };
}

const sc = (r: unknown) => (r as { structuredContent: Record<string, any> }).structuredContent;
const text = (r: unknown) => JSON.stringify((r as { content: unknown }).content);

describe('MCP tools on the real coordinator (in-process)', () => {
  it('writes a file, runs it, reads back what it wrote and lists the workspace', async () => {
    const m = await connect();
    try {
      const c = m.client;
      await c.callTool({ name: 'fs_write', arguments: { path: 'pkg/job.py', contents: 'import sys\nopen("out.txt","w").write("from job " + sys.argv[1])\nprint("ran", sys.argv[1])\n', create_dirs: true } });
      const run = await c.callTool({ name: 'run_python', arguments: { file: 'pkg/job.py', args: ['42'] } });
      expect(run.isError).toBeFalsy();
      expect(sc(run)).toMatchObject({ stdout: 'ran 42\n', exit_code: 0, status: 'succeeded' });
      expect(sc(await c.callTool({ name: 'fs_read', arguments: { path: 'out.txt' } }))).toMatchObject({ contents: 'from job 42', encoding: 'utf-8' });
      const list = sc(await c.callTool({ name: 'fs_list', arguments: { recursive: true } }));
      const paths = list['files'].map((f: { path: string }) => f.path);
      expect(paths).toEqual(expect.arrayContaining(['out.txt', 'pkg/job.py']));
    } finally {
      await m.close();
    }
  });

  it('reports a Python exception as an error result with the traceback', async () => {
    const m = await connect();
    try {
      const r = await m.client.callTool({ name: 'run_python', arguments: { code: 'print("before")\nraise ValueError("bad input")' } });
      expect(r.isError).toBe(true);
      expect(sc(r)).toMatchObject({ exit_code: 1, stdout: 'before\n' });
      expect(sc(r)['stderr']).toMatch(/ValueError: bad input/);
      const missing = await m.client.callTool({ name: 'fs_read', arguments: { path: 'nope.txt' } });
      expect(missing.isError).toBe(true);
      expect(text(missing)).toMatch(/NOT_FOUND/);
      const escape = await m.client.callTool({ name: 'fs_read', arguments: { path: '../../etc/passwd' } });
      expect(escape.isError).toBe(true);
    } finally {
      await m.close();
    }
  });

  it('installs a wheel built by the test and imports it', async () => {
    const m = await connect();
    try {
      const r = await m.client.callTool({ name: 'pkg_install', arguments: { packages: 'mcpwheel' } });
      expect(r.isError, text(r)).toBeFalsy();
      expect(sc(r)['installed']).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'mcpwheel', version: '1.2.3' })]));
      const run = await m.client.callTool({ name: 'run_python', arguments: { code: 'import mcpwheel; print(mcpwheel.VERSION)' } });
      expect(sc(run)['stdout']).toBe('1.2.3\n');
      const bad = await m.client.callTool({ name: 'pkg_install', arguments: { packages: ['no-such-package-xyz'] } });
      expect(bad.isError).toBe(true);
    } finally {
      await m.close();
    }
  }, 120_000);

  it('streams output lines as log messages', async () => {
    const m = await connect();
    try {
      const lines: string[] = [];
      m.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
        const d = n.params.data as { line?: string };
        if (d.line) lines.push(d.line);
      });
      await m.client.callTool({ name: 'run_python', arguments: { code: 'import sys\nprint("l1", flush=True)\nprint("l2", file=sys.stderr, flush=True)' } });
      await eventually(() => lines.length >= 2, 2000);
      expect(lines).toEqual(expect.arrayContaining(['l1', 'l2']));
    } finally {
      await m.close();
    }
  });

  it('answers {task_id, status} past the wait limit, and task_result gets the result', async () => {
    const m = await connect({ waitLimitMs: 500 });
    try {
      const pending = sc(await m.client.callTool({ name: 'run_python', arguments: { code: 'import time\ntime.sleep(2)\nprint("slept")' } }));
      expect(pending).toMatchObject({ done: false });
      expect(['queued', 'running']).toContain(pending['status']);
      let r = sc(await m.client.callTool({ name: 'task_result', arguments: { task_id: pending['task_id'] } }));
      for (let i = 0; i < 20 && !r['done']; i++) r = sc(await m.client.callTool({ name: 'task_result', arguments: { task_id: pending['task_id'] } }));
      expect(r).toMatchObject({ done: true, status: 'succeeded', tool: 'run_python', stdout: 'slept\n', exit_code: 0 });
      expect(r['result']).toBeUndefined();
    } finally {
      await m.close();
    }
  });

  it('kills the Python process when the client cancels the request', async () => {
    const m = await connect();
    try {
      const mark = uniqueToken('cancel');
      const ac = new AbortController();
      const call = m.client.callTool({ name: 'run_python', arguments: { code: 'import time\nwhile True: time.sleep(0.1)', args: [mark] } }, CallToolResultSchema, { signal: ac.signal });
      expect(await eventually(() => pidsWithToken(mark).length > 0, 15_000)).toBe(true);
      ac.abort();
      await expect(call).rejects.toThrow();
      expect(await eventually(() => pidsWithToken(mark).length === 0, 10_000)).toBe(true);
      const after = await m.client.callTool({ name: 'echo', arguments: { message: 'still usable' } });
      expect(sc(after)['message']).toBe('still usable');
    } finally {
      await m.close();
    }
  });

  it('destroys the default session when the connection closes', async () => {
    const m = await connect();
    const sid = sc(await m.client.callTool({ name: 'echo', arguments: { message: 'x' } }))['session_id'];
    expect((await coordinator.coordinator.listSessions()).map((s) => s.sessionId)).toContain(sid);
    await m.close();
    expect(await eventually(async () => !(await coordinator.coordinator.listSessions()).some((s) => s.sessionId === sid), 10_000)).toBe(true);
  });

  it('leaves no process behind', async () => {
    expect(await eventually(() => pidsWithToken(token).filter((p) => p !== process.pid).length === 0, 10_000)).toBe(true);
  });
});
