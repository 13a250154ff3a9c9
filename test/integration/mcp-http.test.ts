/**
 * MCP over Streamable HTTP against a running coordinator (in this process, HTTP on an ephemeral
 * port) with two workers (the built CLI, as child processes): the SDK client, raw HTTP checks,
 * the MCP inspector CLI, the conformance suite, and `codegen-mcp mcp` with COORDINATOR_ADDR.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { coordinatorConfig } from '../../src/config/coordinator.js';
import { startCoordinator, type RunningCoordinator } from '../../src/coordinator/main.js';
import { silentLogger } from '../../src/log/logger.js';
import { startMcpHttp } from '../../src/mcp/http.js';
import { buildWheel } from '../helpers/wheels.js';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { mountsUnder, unmount } from '../../src/worker/disk-quota.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const cli = path.join(root, 'dist/src/cli/main.js');
const token = uniqueToken('mcp-http');
/** The coordinator's client token (the default tenant's); every request to its /mcp carries it. */
const clientToken = `${token}-client`;
const bearer = { Authorization: `Bearer ${clientToken}` };

let base: string;
let coordinator: RunningCoordinator;
let url: string;
const workers: ChildProcess[] = [];
const closers: Array<() => Promise<void>> = [];

function startWorkerProcess(id: string, wheels: string): ChildProcess {
  const child = spawn(process.execPath, [cli, 'worker'], {
    env: {
      ...process.env,
      COORDINATOR_ADDR: `127.0.0.1:${coordinator.grpcPort}`,
      WORKER_ID: id,
      BASE_WORKSPACE: path.join(base, id),
      VENV_POOL_SIZE: '2',
      MAX_SESSIONS: '20',
      LOG_LEVEL: 'warn',
      CODEGEN_STATE_DIR: path.join(base, 'state'),
      PIP_FIND_LINKS: wheels,
      PIP_NO_INDEX: '1',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  workers.push(child);
  return child;
}

beforeAll(async () => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  base = mkdtempSync(path.join(tmpdir(), `${token}-`));
  const wheels = path.join(base, 'wheels');
  buildWheel(wheels, 'httpwheel', '0.4.2');
  coordinator = await startCoordinator(
    coordinatorConfig({ GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_HOST: '127.0.0.1', HTTP_PORT: '0', LOG_LEVEL: 'silent', RECOVERY_GRACE_SECONDS: '0', CODEGEN_STATE_DIR: path.join(base, 'state'), CLIENT_TOKEN: clientToken }),
    silentLogger(),
  );
  url = `http://127.0.0.1:${coordinator.httpPort}/mcp`;
  startWorkerProcess('http-w1', wheels);
  startWorkerProcess('http-w2', wheels);
  const online = await eventually(async () => (await coordinator.coordinator.listWorkers()).filter((w) => w.state === "online").length === 2, 60_000, 100);
  if (!online) throw new Error('two workers did not come online');
}, 120_000);

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
});

afterAll(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.exitCode !== null || w.signalCode !== null) return resolve();
          w.once('exit', () => resolve());
          w.kill('SIGTERM');
          setTimeout(() => w.kill('SIGKILL'), 20_000).unref();
        }),
    ),
  );
  await coordinator?.stop();
  expect(await eventually(() => pidsWithToken(token).length === 0, 10_000)).toBe(true);
  // Sessions' filesystems (disk quotas) stay mounted after their worker stops.
  for (const m of mountsUnder(base)) await unmount(m);
  rmSync(base, { recursive: true, force: true });
}, 60_000);

async function connect(target = url, headers: Record<string, string> = bearer) {
  const client = new Client({ name: 'http-it', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
  await client.connect(transport);
  const close = async () => {
    await transport.terminateSession().catch(() => {});
    await client.close();
  };
  closers.push(close);
  return { client, transport, close };
}

const sc = (r: unknown) => (r as { structuredContent: Record<string, any> }).structuredContent;
const text = (r: unknown) => JSON.stringify((r as { content: unknown }).content);

describe('MCP over Streamable HTTP with two workers', () => {
  it('writes a file, runs it, reads it back and lists it', async () => {
    const { client } = await connect();
    const w = await client.callTool({ name: 'fs_write', arguments: { path: 'calc.py', contents: 'import json\njson.dump({"sum": sum(range(10))}, open("result.json", "w"))\nprint("done")\n' } });
    expect(w.isError, text(w)).toBeFalsy();
    const r = await client.callTool({ name: 'run_python', arguments: { file: 'calc.py' } });
    expect(sc(r)).toMatchObject({ stdout: 'done\n', exit_code: 0, status: 'succeeded' });
    const read = sc(await client.callTool({ name: 'fs_read', arguments: { path: 'result.json' } }));
    expect(JSON.parse(read['contents'])).toEqual({ sum: 45 });
    const list = sc(await client.callTool({ name: 'fs_list', arguments: { pattern: '*.json' } }));
    expect(list['files'].map((f: { name: string }) => f.name)).toEqual(['result.json']);
  });

  it('python_exec keeps state between calls and answers a PNG as image content; an exception is isError with the traceback; python_reset forgets', async () => {
    const { client } = await connect();
    const first = await client.callTool({ name: 'python_exec', arguments: { code: 'x = 41\nprint("set")' } });
    expect(first.isError, text(first)).toBeFalsy();
    expect(sc(first)).toMatchObject({ stdout: 'set\n', state_lost: false, status: 'succeeded' });
    const png = '89504e470d0a1a0a0000000d49484452';
    const second = await client.callTool({ name: 'python_exec', arguments: { code: `class P:\n    def _repr_png_(self):\n        return bytes.fromhex("${png}")\ndisplay(P())\nx + 1` } });
    expect(sc(second)).toMatchObject({ result: '42', outputs: [{ mime_type: 'image/png', size_bytes: png.length / 2 }] });
    const image = (second.content as Array<{ type: string; data?: string; mimeType?: string }>).find((c) => c.type === 'image');
    expect(image).toMatchObject({ mimeType: 'image/png' });
    expect(Buffer.from(image!.data!, 'base64').toString('hex')).toBe(png);
    const failed = await client.callTool({ name: 'python_exec', arguments: { code: 'undefined_name' } });
    expect(failed.isError).toBe(true);
    expect(sc(failed)).toMatchObject({ error_name: 'NameError', status: 'failed' });
    expect(sc(failed)['traceback']).toContain("name 'undefined_name' is not defined");
    expect(text(failed)).toContain('raised NameError');
    expect(sc(await client.callTool({ name: 'python_reset', arguments: {} }))).toMatchObject({ reset: true });
    expect(sc(await client.callTool({ name: 'python_exec', arguments: { code: '"x" in globals()' } }))).toMatchObject({ result: 'False', state_lost: false });
  });

  it('installs a wheel the test built, from the workers\' PIP_FIND_LINKS', async () => {
    const { client } = await connect();
    const r = await client.callTool({ name: 'pkg_install', arguments: { packages: ['httpwheel==0.4.2'] } });
    expect(r.isError, text(r)).toBeFalsy();
    expect(sc(r)['installed']).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'httpwheel', version: '0.4.2' })]));
    const imp = await client.callTool({ name: 'run_python', arguments: { code: 'import httpwheel; print(httpwheel.value)' } });
    expect(sc(imp)['stdout']).toBe('httpwheel-0.4.2\n');
  }, 120_000);

  it('zips files into artifacts/ and returns the bytes with artifact_get', async () => {
    const { client } = await connect();
    const code = [
      'import os, zipfile',
      'os.makedirs("artifacts", exist_ok=True)',
      'with zipfile.ZipFile("artifacts/bundle.zip", "w") as z:',
      '    z.writestr("a.txt", "alpha")',
      '    z.writestr("b.bin", bytes(range(256)))',
      'print(os.path.getsize("artifacts/bundle.zip"))',
    ].join('\n');
    const made = sc(await client.callTool({ name: 'run_python', arguments: { code } }));
    const size = Number(made['stdout']);
    const r = await client.callTool({ name: 'artifact_get', arguments: { artifact_id: 'bundle.zip' } });
    expect(r.isError, text(r)).toBeFalsy();
    expect(sc(r)).toMatchObject({ artifact_id: 'bundle.zip', size_bytes: size });
    const item = (r.content as Array<any>).find((c) => c.type === 'resource');
    expect(item.resource.mimeType).toBe('application/zip');
    const bytes = Buffer.from(item.resource.blob, 'base64');
    expect(bytes.length).toBe(size);
    expect(bytes.subarray(0, 4)).toEqual(Buffer.from([0x50, 0x4b, 3, 4]));
    const viaRead = sc(await client.callTool({ name: 'fs_read', arguments: { path: 'artifacts/bundle.zip' } }));
    expect(viaRead['encoding']).toBe('base64');
    expect(Buffer.from(viaRead['contents'], 'base64')).toEqual(bytes);
    const missing = await client.callTool({ name: 'artifact_get', arguments: { artifact_id: 'nope.zip' } });
    expect(missing.isError).toBe(true);
  });

  it('sends progress at least every 15 s and output as log messages during a long run', async () => {
    const { client } = await connect();
    const progressAt: number[] = [];
    const logs: Array<{ at: number; line: string }> = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      logs.push({ at: Date.now(), line: (n.params.data as { line: string }).line });
    });
    const started = Date.now();
    const r = await client.callTool(
      { name: 'run_python', arguments: { code: 'import time\nprint("starting", flush=True)\ntime.sleep(12)\nprint("finished", flush=True)' } },
      CallToolResultSchema,
      { onprogress: () => progressAt.push(Date.now()), timeout: 60_000 },
    );
    const ended = Date.now();
    expect(r.isError).toBeFalsy();
    expect(progressAt.length).toBeGreaterThanOrEqual(3);
    const marks = [started, ...progressAt, ended];
    const gaps = marks.slice(1).map((t, i) => t - marks[i]!);
    expect(Math.max(...gaps)).toBeLessThan(15_000);
    const first = logs.find((l) => l.line === 'starting');
    expect(first).toBeDefined();
    expect(ended - first!.at).toBeGreaterThan(10_000);
  }, 60_000);

  it('kills the Python process when the client cancels, and keeps the session usable', async () => {
    const { client } = await connect();
    const mark = uniqueToken('http-cancel');
    const ac = new AbortController();
    const call = client.callTool({ name: 'run_python', arguments: { code: 'import time\nwhile True: time.sleep(0.1)', args: [mark] } }, CallToolResultSchema, { signal: ac.signal });
    expect(await eventually(() => pidsWithToken(mark).length > 0, 20_000)).toBe(true);
    ac.abort();
    await expect(call).rejects.toThrow();
    expect(await eventually(() => pidsWithToken(mark).length === 0, 10_000)).toBe(true);
    expect(sc(await client.callTool({ name: 'echo', arguments: { message: 'alive' } }))['message']).toBe('alive');
  }, 60_000);

  it('serves three clients in parallel with no cross-talk', async () => {
    const clients = await Promise.all([1, 2, 3].map(() => connect()));
    const results = await Promise.all(
      clients.map(async ({ client }, i) => {
        const secret = `client-${i}-${Math.random()}`;
        await client.callTool({ name: 'fs_write', arguments: { path: 'mine.txt', contents: secret } });
        const r = sc(await client.callTool({ name: 'run_python', arguments: { code: 'import time\ntime.sleep(0.5)\nprint(open("mine.txt").read())' } }));
        const files = sc(await client.callTool({ name: 'fs_list', arguments: {} }))['files']
          .map((f: { path: string }) => f.path)
          .filter((p: string) => !p.startsWith('.') && p !== 'artifacts');
        const status = sc(await client.callTool({ name: 'session_status', arguments: {} }));
        const listed = sc(await client.callTool({ name: 'session_list', arguments: {} }))['sessions'].filter((s: { is_default: boolean }) => s.is_default);
        return { secret, stdout: r['stdout'], session: r['session_id'], files, worker: status['worker_id'], listedDefaults: listed.map((s: { session_id: string }) => s.session_id) };
      }),
    );
    for (const res of results) {
      expect(res.stdout).toBe(`${res.secret}\n`);
      expect(res.files).toEqual(['mine.txt']);
      expect(res.listedDefaults).toEqual([res.session]);
    }
    expect(new Set(results.map((r) => r.session)).size).toBe(3);
    expect(new Set(results.map((r) => r.worker)).size).toBe(2);
    // Another connection's default session cannot be used by id.
    const stolen = await clients[0]!.client.callTool({ name: 'fs_read', arguments: { path: 'mine.txt', session_id: results[1]!.session } });
    expect(stolen.isError).toBe(true);
    expect(text(stolen)).toMatch(/SESSION_NOT_FOUND/);
    await Promise.all(clients.map((c) => c.close()));
  }, 60_000);

  it('answers {task_id, status} past the wait limit, and task_cancel kills the process', async () => {
    const http = await startMcpHttp({ coordinator: coordinator.coordinator, logger: silentLogger(), host: '127.0.0.1', port: 0, waitLimitMs: 1000, legacyToolNames: true });
    closers.push(http.close);
    const { client } = await connect(`http://127.0.0.1:${http.port}/mcp`);
    const mark = uniqueToken('http-task-cancel');
    const pending = sc(await client.callTool({ name: 'run.python', arguments: { code: 'import time\nwhile True: time.sleep(0.1)', args: [mark] } }));
    expect(pending).toMatchObject({ done: false, status: 'running' });
    const status = sc(await client.callTool({ name: 'task_status', arguments: { task_id: pending['task_id'] } }));
    expect(status).toMatchObject({ tool: 'run_python', status: 'running', done: false });
    const cancelled = sc(await client.callTool({ name: 'task_cancel', arguments: { task_id: pending['task_id'] } }));
    expect(cancelled).toMatchObject({ cancelled: true });
    expect(await eventually(() => pidsWithToken(mark).length === 0, 10_000)).toBe(true);
    const result = await client.callTool({ name: 'task_result', arguments: { task_id: pending['task_id'] } });
    expect(sc(result)).toMatchObject({ done: true, status: 'cancelled' });
  }, 60_000);
});

const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } };
const post = (target: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(target, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

describe('raw HTTP checks', () => {
  it('refuses a foreign Origin with 403', async () => {
    const r = await post(url, initialize, { Origin: 'https://attacker.example' });
    expect(r.status).toBe(403);
    expect(await r.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 } });
  });

  it('answers 400 to a non-initialize request without a session id', async () => {
    const r = await post(url, { jsonrpc: '2.0', id: 5, method: 'tools/list', params: {} }, bearer);
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ jsonrpc: '2.0', error: { message: expect.stringMatching(/Mcp-Session-Id/) } });
  });

  it("answers 401 to a missing or wrong credential on the coordinator's /mcp, saying which", async () => {
    const none = await post(url, initialize);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/Bearer/);
    expect(((await none.json()) as { error: { message: string } }).error.message).toMatch(/no credential was sent/);
    const wrong = await post(url, initialize, { Authorization: 'Bearer wrong-token' });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { message: string } }).error.message).toMatch(/not valid/);
    const { client } = await connect(url, bearer);
    expect(sc(await client.callTool({ name: 'echo', arguments: { message: 'authorised' } }))['message']).toBe('authorised');
  });

  it('takes a 2 MiB fs_write, and refuses an over-limit body with a JSON-RPC error', async () => {
    const { client, transport } = await connect();
    const contents = 'q'.repeat(2 * 1024 * 1024);
    const w = await client.callTool({ name: 'fs_write', arguments: { path: 'two-mib.txt', contents } });
    expect(w.isError, text(w).slice(0, 300)).toBeFalsy();
    expect(sc(w)['bytes_written']).toBe(contents.length);
    const size = sc(await client.callTool({ name: 'run_python', arguments: { code: 'import os; print(os.path.getsize("two-mib.txt"))' } }))['stdout'];
    expect(Number(size)).toBe(contents.length);

    const huge = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'fs_write', arguments: { path: 'huge.txt', contents: 'h'.repeat(33 * 1024 * 1024) } } };
    const r = await post(url, huge, { ...bearer, 'Mcp-Session-Id': transport.sessionId!, 'Mcp-Protocol-Version': '2025-06-18' });
    expect(r.status).toBe(413);
    expect(r.headers.get('content-type')).toMatch(/application\/json/);
    expect(await r.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000, message: expect.stringMatching(/32 MiB/) } });
  }, 60_000);

  it('answers /healthz', async () => {
    const r = await fetch(`http://127.0.0.1:${coordinator.httpPort}/healthz`);
    expect(r.status).toBe(200);
  });
});

describe('third-party clients', () => {
  const inspector = (args: string[]) =>
    run(process.execPath, [path.join(root, 'node_modules/@modelcontextprotocol/inspector-cli/build/cli.js'), '--cli', url, '--transport', 'http', '--header', `Authorization: Bearer ${clientToken}`, ...args], {
      // The inspector finds its own package.json relative to the working directory's parent.
      cwd: path.join(root, 'test'),
      timeout: 60_000,
    });

  it('the MCP inspector CLI lists the tools and calls them', async () => {
    const list = JSON.parse((await inspector(['--method', 'tools/list'])).stdout) as { tools: Array<{ name: string; outputSchema?: unknown }> };
    expect(list.tools.map((t) => t.name)).toEqual(expect.arrayContaining(['session_create', 'run_python', 'pkg_install', 'task_result']));
    expect(list.tools.every((t) => t.outputSchema)).toBe(true);
    const ok = JSON.parse((await inspector(['--method', 'tools/call', '--tool-name', 'echo', '--tool-arg', 'message=from-inspector'])).stdout);
    expect(ok.structuredContent).toMatchObject({ message: 'from-inspector' });
    // A tool error exits 0: the JSON says isError.
    const bad = JSON.parse((await inspector(['--method', 'tools/call', '--tool-name', 'run_python', '--tool-arg', 'code=raise SystemExit(3)'])).stdout);
    expect(bad.isError).toBe(true);
    expect(bad.structuredContent).toMatchObject({ exit_code: 3 });
    const templates = JSON.parse((await inspector(['--method', 'resources/templates/list'])).stdout);
    expect(templates.resourceTemplates[0].uriTemplate).toBe('session://{session_id}/files/{+path}');
  }, 120_000);

  // Not here, for they call the reference server's own fixtures, which this server does not have
  // and should not fake: resources-subscribe and resources-unsubscribe (test://watched-resource,
  // not a session file URI: refused with -32602), completion-complete (the prompt
  // test_prompt_with_arguments), prompts-get-* (test_simple_prompt, ...), resources-read-*.
  it.each(['server-initialize', 'ping', 'tools-list', 'logging-set-level', 'server-sse-multiple-streams', 'dns-rebinding-protection', 'resources-list', 'prompts-list'])(
    'passes the conformance scenario %s',
    async (scenario) => {
      // The suite sends no credentials: it runs against a front door without them, on the same actors.
      const open = await startMcpHttp({ coordinator: coordinator.coordinator, logger: silentLogger(), host: '127.0.0.1', port: 0, waitLimitMs: 50_000, legacyToolNames: false });
      closers.push(open.close);
      const bin = path.join(root, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
      const { stdout } = await run(process.execPath, [bin, 'server', '--url', `http://127.0.0.1:${open.port}/mcp`, '--scenario', scenario], { cwd: root, timeout: 90_000 });
      const m = /Passed: (\d+)\/(\d+), (\d+) failed/.exec(stdout);
      expect(m, stdout).not.toBeNull();
      expect(m![3], stdout).toBe('0');
      expect(m![1]).toBe(m![2]);
    },
    120_000,
  );
});

describe('codegen-mcp mcp with COORDINATOR_ADDR', () => {
  it('serves the tools over stdio from the remote coordinator, with the credential from CLIENT_TOKEN_FILE', async () => {
    writeFileSync(path.join(base, 'client-token-copy'), `${clientToken}\n`, { mode: 0o600 });
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [cli, 'mcp'],
      // No CLIENT_TOKEN: the command reads the token file the coordinator made in the shared state folder.
      env: { ...(process.env as Record<string, string>), COORDINATOR_ADDR: `127.0.0.1:${coordinator.grpcPort}`, LOG_LEVEL: 'warn', CODEGEN_STATE_DIR: path.join(base, 'state'), CLIENT_TOKEN_FILE: path.join(base, 'client-token-copy') },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'remote-stdio', version: '1' });
    const errors: Error[] = [];
    client.onerror = (e) => errors.push(e);
    await client.connect(transport);
    try {
      const r = await client.callTool({ name: 'run_python', arguments: { code: 'print("remote", 2 + 2)' } });
      expect(r.isError, text(r)).toBeFalsy();
      expect(sc(r)).toMatchObject({ stdout: 'remote 4\n' });
      const sid = sc(r)['session_id'];
      expect((await coordinator.coordinator.listSessions()).map((s) => s.sessionId)).toContain(sid);
      const miss = await client.callTool({ name: 'session_status', arguments: { session_id: 'sess-unknown' } });
      expect(miss.isError).toBe(true);
      expect(text(miss)).toMatch(/SESSION_NOT_FOUND/);
      await client.close();
      expect(await eventually(async () => !(await coordinator.coordinator.listSessions()).some((s) => s.sessionId === sid), 15_000)).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await client.close().catch(() => {});
    }
  }, 60_000);
});
