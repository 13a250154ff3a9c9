/**
 * Resources that move, on real parts: a coordinator with its MCP Streamable HTTP front door and a
 * worker (in this process), two tenants' keys, and the official SDK client over HTTP; then
 * `codegen-mcp mcp` (the built CLI, an embedded coordinator and worker) over stdio.
 * list_changed, subscribe/updated/unsubscribe, errors, tenants, completion and prompts.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResourceListChangedNotificationSchema, ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { coordinatorConfig } from '../../src/config/coordinator.js';
import { workerConfig } from '../../src/config/worker.js';
import { startCoordinator, type RunningCoordinator } from '../../src/coordinator/main.js';
import { silentLogger } from '../../src/log/logger.js';
import { startWorker, type RunningWorker } from '../../src/worker/main.js';
import { mountsUnder, unmount } from '../../src/worker/disk-quota.js';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const cli = path.join(root, 'dist/src/cli/main.js');
const token = uniqueToken('mcp-res');
const clientToken = `${token}-client`;
const TEMPLATE = 'session://{session_id}/files/{+path}';

let base: string;
let coordinator: RunningCoordinator;
let worker: RunningWorker;
let url: string;
let acmeKey: string;
let globexKey: string;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  base = mkdtempSync(path.join(tmpdir(), `${token}-`));
  const stateDir = path.join(base, 'state');
  coordinator = await startCoordinator(
    coordinatorConfig({ GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_HOST: '127.0.0.1', HTTP_PORT: '0', LOG_LEVEL: 'silent', RECOVERY_GRACE_SECONDS: '0', CODEGEN_STATE_DIR: stateDir, CLIENT_TOKEN: clientToken }),
    silentLogger(),
  );
  url = `http://127.0.0.1:${coordinator.httpPort}/mcp`;
  worker = await startWorker(
    workerConfig({ COORDINATOR_ADDR: `127.0.0.1:${coordinator.grpcPort}`, WORKER_ID: 'res-worker', BASE_WORKSPACE: path.join(base, 'ws'), VENV_POOL_SIZE: '2', LOG_LEVEL: 'silent', CODEGEN_STATE_DIR: stateDir }),
    silentLogger(),
  );
  if (!(await eventually(async () => (await coordinator.coordinator.listWorkers()).some((w) => w.state === 'online'), 30_000))) throw new Error('the worker did not come online');
  // Two tenants' keys, made with the real command; the coordinator reads its keys file on each request.
  const keys = async (tenant: string) => (await run(process.execPath, [cli, 'keys', 'add', tenant], { env: { ...process.env, CODEGEN_STATE_DIR: stateDir } })).stdout.trimEnd().split('\n').at(-1)!;
  acmeKey = await keys('acme');
  globexKey = await keys('globex');
}, 120_000);

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
});

afterAll(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
  await worker?.stop();
  await coordinator?.stop();
  for (const m of mountsUnder(base)) await unmount(m);
  rmSync(base, { recursive: true, force: true });
}, 60_000);

const sc = (r: unknown) => (r as { structuredContent: Record<string, any> }).structuredContent;
const text = (r: unknown) => JSON.stringify((r as { content: unknown }).content);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a client heard: list_changed count and updated URIs, in order. */
interface Heard {
  listChanged: number;
  updated: string[];
}

function listen(client: Client): Heard {
  const heard: Heard = { listChanged: 0, updated: [] };
  client.setNotificationHandler(ResourceListChangedNotificationSchema, () => void (heard.listChanged += 1));
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void heard.updated.push(n.params.uri));
  return heard;
}

/** An SDK client over Streamable HTTP with this credential, its standalone SSE stream open. */
async function http(key: string) {
  const client = new Client({ name: 'resources-it', version: '1' });
  const heard = listen(client);
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${key}` } } });
  await client.connect(transport);
  closers.push(async () => {
    await transport.terminateSession().catch(() => {});
    await client.close();
  });
  // Notifications no request asked for travel on the GET stream the client opens after initialize.
  await client.ping();
  await sleep(300);
  return { client, heard };
}

const call = async (client: Client, name: string, args: Record<string, unknown>) => {
  const r = await client.callTool({ name, arguments: args });
  expect(r.isError, text(r)).toBeFalsy();
  return sc(r);
};

/** Waits until `check` holds (notifications arrive after the watch's look and a 500 ms window). */
const heardSoon = (check: () => boolean) => eventually(check, 10_000, 50);
/** Nothing more arrives: long enough for a look and a window to pass. */
const quietFor = () => sleep(1_500);

describe('resources/list_changed over Streamable HTTP', () => {
  it('arrives after a session is created, and after a file is written and removed, but not for a rewrite', async () => {
    const { client, heard } = await http(acmeKey);
    expect((await client.listResources()).resources).toEqual([]);
    const sid = (await call(client, 'session_create', {}))['session_id'] as string;
    expect(await heardSoon(() => heard.listChanged === 1)).toBe(true);

    await call(client, 'fs_write', { session_id: sid, path: 'data/a.csv', contents: 'x,y\n1,2\n', create_dirs: true });
    expect(await heardSoon(() => heard.listChanged === 2)).toBe(true);
    expect((await client.listResources()).resources.map((r) => r.uri)).toEqual([`session://${sid}/files/data/a.csv`]);

    // The same file again: its contents changed, the list did not.
    await call(client, 'fs_write', { session_id: sid, path: 'data/a.csv', contents: 'x,y\n3,4\n5,6\n' });
    await quietFor();
    expect(heard.listChanged).toBe(2);

    // A run that removes it.
    await call(client, 'run_python', { session_id: sid, code: 'import os\nos.remove("data/a.csv")' });
    expect(await heardSoon(() => heard.listChanged === 3)).toBe(true);
    expect((await client.listResources()).resources).toEqual([]);

    await call(client, 'session_destroy', { session_id: sid });
    expect(await heardSoon(() => heard.listChanged === 4)).toBe(true);
  }, 60_000);
});

describe('resources/subscribe over Streamable HTTP', () => {
  it('sends resources/updated with the URI for fs_write, run_python and python_exec changes, and stops after unsubscribe', async () => {
    const { client, heard } = await http(acmeKey);
    const sid = (await call(client, 'fs_write', { path: 'notes.txt', contents: 'one' }))['session_id'] as string;
    const uri = `session://${sid}/files/notes.txt`;
    await client.subscribeResource({ uri });
    await quietFor();
    expect(heard.updated).toEqual([]);

    await call(client, 'fs_write', { path: 'notes.txt', contents: 'two' });
    expect(await heardSoon(() => heard.updated.length === 1)).toBe(true);
    expect(heard.updated).toEqual([uri]);

    await call(client, 'run_python', { code: 'open("notes.txt", "a").write(" and three")' });
    expect(await heardSoon(() => heard.updated.length === 2)).toBe(true);

    // A run that leaves the file alone says nothing about it.
    await call(client, 'run_python', { code: 'open("elsewhere.txt", "w").write("x")' });
    await quietFor();
    expect(heard.updated).toHaveLength(2);

    await call(client, 'python_exec', { code: 'import pathlib\npathlib.Path("notes.txt").write_text("rewritten by the interpreter")' });
    expect(await heardSoon(() => heard.updated.length === 3)).toBe(true);
    expect(heard.updated).toEqual([uri, uri, uri]);
    expect((await client.readResource({ uri })).contents[0]).toMatchObject({ text: 'rewritten by the interpreter' });

    await client.unsubscribeResource({ uri });
    await call(client, 'fs_write', { path: 'notes.txt', contents: 'after unsubscribe' });
    await call(client, 'run_python', { code: 'open("notes.txt", "a").write("!")' });
    await quietFor();
    expect(heard.updated).toHaveLength(3);
  }, 60_000);

  it('answers a malformed URI and an unknown session with errors that say what is wrong', async () => {
    const { client } = await http(acmeKey);
    await expect(client.subscribeResource({ uri: 'file:///etc/passwd' })).rejects.toMatchObject({ code: -32602, message: expect.stringMatching(/is not a session file URI: expected session:\/\/\{session_id\}\/files\/\{path\}/) });
    await expect(client.subscribeResource({ uri: 'session://sess-x/files/' })).rejects.toMatchObject({ code: -32602, message: expect.stringMatching(/names no file/) });
    await expect(client.subscribeResource({ uri: 'session://sess-x/files/a/../../b' })).rejects.toMatchObject({ code: -32602, message: expect.stringMatching(/not a plain path inside the workspace/) });
    await expect(client.subscribeResource({ uri: 'session://sess-0123456789abcdef0123456789abcdef/files/a.txt' })).rejects.toMatchObject({ code: -32002, message: expect.stringMatching(/not found/) });
  });

  it("keeps tenants apart: another tenant's session is unknown to subscribe and completion, and its changes are never heard", async () => {
    const acme = await http(acmeKey);
    const acme2 = await http(acmeKey);
    const globex = await http(globexKey);
    const sid = (await call(acme.client, 'session_create', {}))['session_id'] as string;
    await call(acme.client, 'fs_write', { session_id: sid, path: 'secret.txt', contents: 's1' });
    const uri = `session://${sid}/files/secret.txt`;

    // Another connection of the same tenant may watch it, and hears what the first one does.
    await acme2.client.subscribeResource({ uri });
    // The other tenant is told exactly what a session that does not exist gets.
    const unknown = 'sess-00000000000000000000000000000000';
    const theirs = await globex.client.subscribeResource({ uri }).catch((e: { code: number; message: string }) => e);
    const none = await globex.client.subscribeResource({ uri: `session://${unknown}/files/secret.txt` }).catch((e: { code: number; message: string }) => e);
    expect(theirs).toMatchObject({ code: -32002 });
    expect((theirs as { message: string }).message.replaceAll(sid, 'ID')).toBe((none as { message: string }).message.replaceAll(unknown, 'ID'));
    const ref = { type: 'ref/resource' as const, uri: TEMPLATE };
    expect((await globex.client.complete({ ref, argument: { name: 'session_id', value: 'sess-' } })).completion.values).not.toContain(sid);
    expect((await globex.client.complete({ ref, argument: { name: 'path', value: '' }, context: { arguments: { session_id: sid } } })).completion.values).toEqual([]);
    expect((await acme.client.complete({ ref, argument: { name: 'session_id', value: 'sess-' } })).completion.values).toContain(sid);

    // globex watches its own session; acme's writes reach acme2 and never globex.
    await call(globex.client, 'fs_write', { path: 'mine.txt', contents: 'g' });
    await globex.client.listResources();
    await quietFor();
    const globexBefore = { ...globex.heard, updated: [...globex.heard.updated] };
    await call(acme.client, 'fs_write', { session_id: sid, path: 'secret.txt', contents: 's2 longer' });
    await call(acme.client, 'fs_write', { session_id: sid, path: 'another.txt', contents: 'a' });
    expect(await heardSoon(() => acme2.heard.updated.length === 1)).toBe(true);
    expect(acme2.heard.updated).toEqual([uri]);
    await quietFor();
    expect(globex.heard).toEqual(globexBefore);
  }, 60_000);
});

describe('completion/complete over Streamable HTTP', () => {
  it("completes the template's session_id with the caller's sessions and path with the session's files, by prefix", async () => {
    const { client } = await http(acmeKey);
    const sid = (await call(client, 'session_create', {}))['session_id'] as string;
    for (const p of ['data/2024/jan.csv', 'data/2024/feb.csv', 'data/readme.md', 'docs/guide.md', 'main.py']) {
      await call(client, 'fs_write', { session_id: sid, path: p, contents: 'x', create_dirs: true });
    }
    const ref = { type: 'ref/resource' as const, uri: TEMPLATE };
    expect((await client.complete({ ref, argument: { name: 'session_id', value: sid.slice(0, 10) } })).completion.values).toContain(sid);
    expect((await client.complete({ ref, argument: { name: 'session_id', value: 'zzz' } })).completion.values).toEqual([]);
    const complete = async (value: string) => (await client.complete({ ref, argument: { name: 'path', value }, context: { arguments: { session_id: sid } } })).completion.values;
    expect(await complete('data/2024/')).toEqual(['data/2024/feb.csv', 'data/2024/jan.csv']);
    expect(await complete('d')).toEqual(['data/2024/feb.csv', 'data/2024/jan.csv', 'data/readme.md', 'docs/guide.md']);
    expect(await complete('')).toEqual(['data/2024/feb.csv', 'data/2024/jan.csv', 'data/readme.md', 'docs/guide.md', 'main.py']);
    expect(await complete('.venv/')).toEqual([]);
    expect(await complete('nothing/')).toEqual([]);
  }, 60_000);
});

describe('prompts over Streamable HTTP', () => {
  it('lists the prompts and gets them with messages that name real tools', async () => {
    const { client } = await http(acmeKey);
    const { prompts } = await client.listPrompts();
    expect(prompts.map((p) => p.name).sort()).toEqual(['analyse_data_file', 'setup_project']);
    expect(prompts.every((p) => p.description)).toBe(true);
    const tools = new Set((await client.listTools()).tools.map((t) => t.name));
    const r = await client.getPrompt({ name: 'analyse_data_file', arguments: { path: 'sales.csv', question: 'Which month sold most?' } });
    const body = (r.messages[0]!.content as { text: string }).text;
    expect(body).toContain('sales.csv');
    expect(body).toContain('Which month sold most?');
    const named = ['fs_list', 'fs_read', 'python_exec', 'pkg_install', 'artifact_get'];
    for (const t of named) expect(body).toContain(t);
    expect(named.filter((t) => !tools.has(t))).toEqual([]);
    const setup = await client.getPrompt({ name: 'setup_project', arguments: { packages: 'httpwheel' } });
    expect((setup.messages[0]!.content as { text: string }).text).toMatch(/session_create[\s\S]*pkg_install[\s\S]*run_python[\s\S]*session_checkpoint/);
  });
});

describe('codegen-mcp mcp over stdio', () => {
  it('sends list_changed and resources/updated, completes paths and serves prompts', async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [cli, 'mcp'],
      env: { ...(process.env as Record<string, string>), BASE_WORKSPACE: path.join(base, 'stdio-ws'), LOG_LEVEL: 'warn', VENV_POOL_SIZE: '1', CODEGEN_STATE_DIR: path.join(base, 'stdio-state') },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'resources-stdio', version: '1' });
    const heard = listen(client);
    const errors: Error[] = [];
    client.onerror = (e) => errors.push(e);
    await client.connect(transport);
    try {
      expect(client.getServerCapabilities()).toMatchObject({ resources: { subscribe: true, listChanged: true }, prompts: {}, completions: {} });
      const sid = (await call(client, 'fs_write', { path: 'result.txt', contents: 'before' }))['session_id'] as string;
      expect(await heardSoon(() => heard.listChanged >= 1)).toBe(true);
      await client.listResources();
      const uri = `session://${sid}/files/result.txt`;
      await client.subscribeResource({ uri });
      const listed = heard.listChanged;
      await call(client, 'run_python', { code: 'open("result.txt", "w").write("after the run")\nopen("new.txt", "w").write("n")' });
      expect(await heardSoon(() => heard.updated.length === 1 && heard.listChanged === listed + 1)).toBe(true);
      expect(heard.updated).toEqual([uri]);
      const values = (await client.complete({ ref: { type: 'ref/resource', uri: TEMPLATE }, argument: { name: 'path', value: 'n' }, context: { arguments: { session_id: sid } } })).completion.values;
      expect(values).toEqual(['new.txt']);
      const p = await client.getPrompt({ name: 'analyse_data_file', arguments: { path: 'result.txt', session_id: sid } });
      expect(p.messages[1]!.content).toMatchObject({ type: 'resource_link', uri });
      await client.unsubscribeResource({ uri });
      await call(client, 'fs_write', { path: 'result.txt', contents: 'again' });
      await quietFor();
      expect(heard.updated).toEqual([uri]);
      expect(errors).toEqual([]);
    } finally {
      await client.close();
    }
    expect(await eventually(() => pidsWithToken(path.join(base, 'stdio-ws')).length === 0, 30_000)).toBe(true);
  }, 120_000);
});

describe('cleanup', () => {
  it('leaves no process behind', async () => {
    expect(await eventually(() => pidsWithToken(token).filter((p) => p !== process.pid).length === 0, 10_000)).toBe(true);
  });
});
