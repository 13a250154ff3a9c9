/**
 * Client identity and tenancy, tried as an attacker would, on a real system (coordinator and
 * worker processes, real gRPC, the real `codegen-mcp keys` command, the official MCP SDK client
 * over the coordinator's own /mcp).
 */
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, grpc, grpcError, python, runTask, startTask, TestSystem, unary, type Wire } from '../helpers/system.js';
import type { CoordinatorClients } from '../../src/wire/client.js';

const run = promisify(execFile);

let sys: TestSystem;
let admin: CoordinatorClients;
let acme: CoordinatorClients;
let globex: CoordinatorClients;
let acmeKey: string;
let globexKey: string;
const opened: CoordinatorClients[] = [];

/** `codegen-mcp keys ...` against this system's keys file (the coordinator's default: client-keys.json in its state folder). */
const keys = (...args: string[]) => run(process.execPath, [cliPath, 'keys', ...args], { env: { ...process.env, CODEGEN_STATE_DIR: sys.stateDir } });

function connect(token: string): CoordinatorClients {
  const c = sys.connect(token);
  opened.push(c);
  return c;
}

beforeAll(async () => {
  sys = new TestSystem({ label: 'tenants' });
  await sys.startCoordinator({ TENANT_MAX_SESSIONS: '2', TENANT_MAX_CONCURRENT_TASKS: '1', HTTP_HOST: '127.0.0.1' });
  const httpLine = await sys.coordinator!.waitForLine((l) => l.msg === 'coordinator MCP HTTP listening');
  sys.httpPort = Number(httpLine['port']);
  await sys.startWorker('tenant-worker', { MAX_SESSIONS: '10' });
  const lastLine = (stdout: string) => stdout.trimEnd().split('\n').at(-1)!;
  acmeKey = lastLine((await keys('add', 'acme')).stdout);
  globexKey = lastLine((await keys('add', 'globex')).stdout);
  admin = sys.clients;
  acme = connect(acmeKey);
  globex = connect(globexKey);
}, 120_000);

afterAll(async () => {
  for (const c of opened) c.close();
  await sys?.stop();
}, 120_000);

describe('client credentials', () => {
  it('made a client token at first start, in a 0600 file under the state folder, and said so without logging it', () => {
    const file = path.join(sys.stateDir, 'client-token');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(sys.stateDir, 'worker-token')).mode & 0o777).toBe(0o600);
    const token = readFileSync(file, 'utf8').trim();
    expect(token.length).toBeGreaterThanOrEqual(40);
    const said = sys.coordinator!.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('client token (default tenant, admin) made at first start'));
    expect(said?.['file']).toBe(file);
    expect(sys.coordinator!.raw.join('\n')).not.toContain(token);
  });

  it('refuses every client RPC without a credential, or with a wrong one, with UNAUTHENTICATED saying which; health stays open', async () => {
    const none = connect('');
    const wrong = connect('cgm_0123456789ab_not-a-real-secret-at-all-xx');
    const calls: Array<[string, (c: CoordinatorClients) => Promise<unknown>]> = [
      ['CreateSession', (c) => unary(c.sessions, 'CreateSession', {})],
      ['ListSessions', (c) => unary(c.sessions, 'ListSessions', {})],
      ['GetSessionStatus', (c) => unary(c.sessions, 'GetSessionStatus', { session_id: 'sess-x' })],
      ['DestroySession', (c) => unary(c.sessions, 'DestroySession', { session_id: '' })],
      ['CheckpointSession', (c) => unary(c.sessions, 'CheckpointSession', { session_id: 'sess-x' })],
      ['GetTaskStatus', (c) => unary(c.tasks, 'GetTaskStatus', { task_id: 't' })],
      ['CancelTask', (c) => unary(c.tasks, 'CancelTask', { task_id: 't' })],
      ['ExecuteTask', async (c) => {
        const r = await runTask(c, python('sess-x', 'print(1)'));
        if (r.status) throw r.status;
        return r;
      }],
    ];
    for (const [name, call] of calls) {
      const a = await grpcError(call(none));
      expect(grpc.status[a.code], name).toBe('UNAUTHENTICATED');
      expect(a.details, name).toMatch(/no credential was sent/);
      const b = await grpcError(call(wrong));
      expect(grpc.status[b.code], name).toBe('UNAUTHENTICATED');
      expect(b.details, name).toMatch(/API key 0123456789ab is not valid/);
    }
    expect(await sys.health()).toBe('SERVING');
    const ready = await fetch(`http://127.0.0.1:${sys.httpPort}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', reason: '1 worker(s) online' });
    // Nothing was made by the refused calls.
    expect((await unary(admin.sessions, 'ListSessions', {})).sessions).toEqual([]);
  });

  it('keys add prints the key alone on the last line and stores only its hash; keys ls lists it; keys rm revokes it at the next call', async () => {
    const added = await keys('add', 'temp-tenant');
    const key = added.stdout.trimEnd().split('\n').at(-1)!;
    expect(key).toMatch(/^cgm_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(added.stdout.trim()).toBe(key);
    const file = path.join(sys.stateDir, 'client-keys.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // The secret may itself contain "_": it is everything after the id.
    const id = key.split('_')[1]!;
    const secret = key.slice(`cgm_${id}_`.length);
    expect(secret.length).toBe(43);
    expect(readFileSync(file, 'utf8')).not.toContain(secret);
    expect((await keys('ls')).stdout).toMatch(new RegExp(`${id}\\ttemp-tenant\\ttenant\\t`));
    const c = connect(key);
    expect((await unary(c.sessions, 'ListSessions', {})).sessions).toEqual([]);
    await keys('rm', id);
    const err = await grpcError(unary(c.sessions, 'ListSessions', {}));
    expect(grpc.status[err.code]).toBe('UNAUTHENTICATED');
    expect(err.details).toContain(`API key ${id} is not valid`);
    await expect(keys('rm', id)).rejects.toMatchObject({ code: 1 });
    await expect(keys('add', '../evil')).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/tenant: must be/) });
  });
});

describe('tenancy', () => {
  it("answers another tenant's session exactly as one that does not exist, on every RPC, and touches nothing of it", async () => {
    const s = await unary(acme.sessions, 'CreateSession', { metadata: { owner: 'acme' } });
    const sid = s.session_id as string;
    const ghost = 'sess-00000000000000000000000000000000';
    const same = async (what: string, call: (id: string) => Promise<unknown>) => {
      const theirs = await grpcError(call(sid));
      const missing = await grpcError(call(ghost));
      expect(grpc.status[theirs.code], what).toBe('NOT_FOUND');
      expect(theirs.details.replaceAll(sid, 'ID'), what).toBe(missing.details.replaceAll(ghost, 'ID'));
    };
    await same('GetSessionStatus', (id) => unary(globex.sessions, 'GetSessionStatus', { session_id: id }));
    await same('GetSessionMetadata', (id) => unary(globex.sessions, 'GetSessionMetadata', { session_id: id }));
    await same('UpdateSessionMetadata', (id) => unary(globex.sessions, 'UpdateSessionMetadata', { session_id: id, metadata: { owner: 'globex' } }));
    await same('SetSessionMetadata', (id) => unary(globex.sessions, 'SetSessionMetadata', { session_id: id, metadata: {} }));
    await same('DestroySession', (id) => unary(globex.sessions, 'DestroySession', { session_id: id }));
    await same('ExecuteTask', async (id) => {
      const r = await runTask(globex, { session_id: id, typed_request: { fs_read: { path: 'secret.txt' } } });
      if (r.status) throw r.status;
      return r;
    });

    // The owner's session is untouched, and its task ids are as invisible as its session.
    await runTask(acme, { session_id: sid, typed_request: { fs_write: { path: 'secret.txt', content: Buffer.from('acme only') } } });
    const task = startTask(acme, python(sid, 'import time\nprint("started", flush=True)\ntime.sleep(30)'));
    await task.waitForLog((l) => l.includes('started'));
    const ghostTask = 'task-ghost';
    for (const [what, call] of [
      ['GetTaskStatus', (id: string) => unary(globex.tasks, 'GetTaskStatus', { task_id: id })],
      ['CancelTask', (id: string) => unary(globex.tasks, 'CancelTask', { task_id: id, reason: 'mine now' })],
    ] as const) {
      const theirs = await grpcError(call(task.run.taskId));
      const missing = await grpcError(call(ghostTask));
      expect(grpc.status[theirs.code], what).toBe('NOT_FOUND');
      expect(theirs.details.replaceAll(task.run.taskId, 'ID'), what).toBe(missing.details.replaceAll(ghostTask, 'ID'));
    }
    const status = await unary(acme.tasks, 'GetTaskStatus', { task_id: task.run.taskId });
    expect(status.state).toBe('running');
    await unary(acme.tasks, 'CancelTask', { task_id: task.run.taskId, reason: 'test over' });
    await task.done;

    const meta = await unary(acme.sessions, 'GetSessionMetadata', { session_id: sid });
    expect(meta.metadata).toEqual({ owner: 'acme' });
    expect((await unary(acme.sessions, 'GetSessionStatus', { session_id: sid })).info.tenant).toBe('acme');
    await unary(acme.sessions, 'DestroySession', { session_id: sid });
  }, 90_000);

  it("lists each tenant's own sessions only; the admin sees every tenant's", async () => {
    const a = await unary(acme.sessions, 'CreateSession', {});
    const g = await unary(globex.sessions, 'CreateSession', {});
    const ids = async (c: CoordinatorClients) => ((await unary(c.sessions, 'ListSessions', {})).sessions as Wire[]).map((s) => s.session_id as string);
    expect(await ids(acme)).toEqual([a.session_id]);
    expect(await ids(globex)).toEqual([g.session_id]);
    expect((await ids(admin)).sort()).toEqual([a.session_id, g.session_id].sort());
    // The admin may act on any tenant's session.
    expect((await unary(admin.sessions, 'GetSessionStatus', { session_id: a.session_id })).info.tenant).toBe('acme');
    await unary(admin.sessions, 'DestroySession', { session_id: a.session_id });
    await unary(globex.sessions, 'DestroySession', { session_id: g.session_id });
  }, 60_000);

  it('lists the fleet (ListWorkers) to the admin only: a tenant hears PERMISSION_DENIED naming the credential to use', async () => {
    const all = (await unary(admin.sessions, 'ListWorkers', {})) as Wire;
    expect(all['workers'].map((w: Wire) => w['worker_id'])).toContain('tenant-worker');
    const err = await grpcError(unary(acme.sessions, 'ListWorkers', {}));
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toMatch(/admin credential/);
  });

  it('refuses a session or a task beyond the tenant quota with RESOURCE_EXHAUSTED naming the quota, without touching other tenants', async () => {
    const made = await Promise.all([unary(acme.sessions, 'CreateSession', {}), unary(acme.sessions, 'CreateSession', {})]);
    const over = await grpcError(unary(acme.sessions, 'CreateSession', {}));
    expect(grpc.status[over.code]).toBe('RESOURCE_EXHAUSTED');
    expect(over.details).toMatch(/quota: tenant "acme" has 2 sessions, the most TENANT_MAX_SESSIONS=2 allows/);
    const other = await unary(globex.sessions, 'CreateSession', {});

    const long = startTask(acme, python(made[0]!.session_id, 'import time\nprint("started", flush=True)\ntime.sleep(30)'));
    await long.waitForLog((l) => l.includes('started'));
    const second = await runTask(acme, python(made[1]!.session_id, 'print(1)'));
    expect(grpc.status[second.status!.code]).toBe('RESOURCE_EXHAUSTED');
    expect(second.status!.details).toMatch(/TENANT_MAX_CONCURRENT_TASKS=1/);
    // Another tenant's task runs meanwhile.
    const theirs = await runTask(globex, python(other.session_id, 'print("globex", 1)'));
    expect(theirs.result?.status).toBe('STATUS_SUCCESS');
    await unary(acme.tasks, 'CancelTask', { task_id: long.run.taskId });
    await long.done;
    for (const s of [...made, other]) await unary(admin.sessions, 'DestroySession', { session_id: s.session_id });
  }, 90_000);
});

describe('workers', () => {
  it('refuses a registration without a worker token, or with a wrong one, and places nothing on it', async () => {
    const raw = connect('');
    const register = (md: grpc.Metadata) => unary(raw.workers, 'RegisterWorker', { worker_id: 'rogue', instance_id: 'inst-rogue', max_sessions: 100 }, { metadata: md });
    const none = await grpcError(register(new grpc.Metadata()));
    expect(grpc.status[none.code]).toBe('UNAUTHENTICATED');
    expect(none.details).toMatch(/worker token: none was sent/);
    const md = new grpc.Metadata();
    md.set('x-worker-token', 'guess');
    const wrong = await grpcError(register(md));
    expect(grpc.status[wrong.code]).toBe('UNAUTHENTICATED');
    expect(wrong.details).toMatch(/the one sent is wrong/);
    // A client key is not a worker credential either.
    const withKey = new grpc.Metadata();
    withKey.set('x-worker-token', acmeKey);
    expect(grpc.status[(await grpcError(register(withKey))).code]).toBe('UNAUTHENTICATED');
    const placed = await unary(admin.sessions, 'CreateSession', { worker_id: 'rogue' }).catch((e: grpc.ServiceError) => e);
    expect((placed as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
  });
});

describe('MCP over HTTP', () => {
  async function mcp(token: string) {
    const client = new Client({ name: `tenant-${token.slice(0, 8)}`, version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${sys.httpPort}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
    await client.connect(transport);
    return { client, close: () => client.close() };
  }
  const text = (r: Awaited<ReturnType<Client['callTool']>>) => (r.content as Array<{ text?: string }>).map((c) => c.text ?? '').join('\n');

  it("gives sessions made with session_create to the connection's tenant: another tenant can neither see, read nor destroy them", async () => {
    const a = await mcp(acmeKey);
    const g = await mcp(globexKey);
    try {
      const made = (await a.client.callTool({ name: 'session_create', arguments: {} })).structuredContent as { session_id: string };
      await a.client.callTool({ name: 'fs_write', arguments: { session_id: made.session_id, path: 'plan.txt', contents: 'acme plans' } });
      expect((await unary(admin.sessions, 'GetSessionStatus', { session_id: made.session_id })).info.tenant).toBe('acme');
      for (const [tool, args] of [
        ['fs_read', { path: 'plan.txt' }],
        ['session_status', {}],
        ['run_python', { code: 'print(open("plan.txt").read())' }],
        ['session_destroy', {}],
      ] as const) {
        const r = await g.client.callTool({ name: tool, arguments: { session_id: made.session_id, ...args } });
        expect(r.isError, tool).toBe(true);
        expect(text(r), tool).toMatch(/SESSION_NOT_FOUND/);
        expect(text(r), tool).not.toContain('acme plans');
      }
      const listed = (await g.client.callTool({ name: 'session_list', arguments: {} })).structuredContent as { sessions: Array<{ session_id: string }> };
      expect(listed.sessions.map((s) => s.session_id)).not.toContain(made.session_id);
      const read = await a.client.callTool({ name: 'fs_read', arguments: { session_id: made.session_id, path: 'plan.txt' } });
      expect(text(read)).toContain('acme plans');
      await a.client.callTool({ name: 'session_destroy', arguments: { session_id: made.session_id } });
    } finally {
      await a.close();
      await g.close();
    }
  }, 60_000);
});

describe('checkpoints', () => {
  it("keeps a tenant's checkpoints its own: another tenant can neither list, restore, delete nor take them, and hears NOT_FOUND as for none", async () => {
    const s = (await unary(acme.sessions, 'CreateSession', {})) as Wire;
    try {
      await runTask(acme, { session_id: s['session_id'], typed_request: { fs_write: { path: 'secret.txt', contents: 'acme only' } } });
      const c = (await unary(acme.sessions, 'CheckpointSession', { session_id: s['session_id'] }, { deadlineMs: 60_000 })) as Wire;
      const id = c['checkpoint_id'] as string;
      const theirs = ((await unary(globex.sessions, 'ListCheckpoints', {})) as Wire)['checkpoints'].map((x: Wire) => x.checkpoint_id);
      expect(theirs).not.toContain(id);
      const none = await grpcError(unary(globex.sessions, 'RestoreSession', { checkpoint_id: 'ckpt-000000000000000000000000', create_new_session: true }));
      for (const call of [
        () => unary(globex.sessions, 'RestoreSession', { checkpoint_id: id, create_new_session: true }),
        () => unary(globex.sessions, 'RestoreSession', { checkpoint_id: id }),
        () => unary(globex.sessions, 'DeleteCheckpoint', { checkpoint_id: id }),
      ]) {
        const e = await grpcError(call());
        expect(e.code).toBe(grpc.status.NOT_FOUND);
        expect(e.details.replace(id, 'ckpt-000000000000000000000000')).toBe(none.details);
      }
      expect((await grpcError(unary(globex.sessions, 'CheckpointSession', { session_id: s['session_id'] }))).code).toBe(grpc.status.NOT_FOUND);
      expect((await grpcError(unary(globex.sessions, 'ListCheckpoints', { session_id: s['session_id'] }))).code).toBe(grpc.status.NOT_FOUND);
      // Its owner and the admin see it; the owner restores it.
      expect(((await unary(acme.sessions, 'ListCheckpoints', {})) as Wire)['checkpoints'].map((x: Wire) => x.checkpoint_id)).toContain(id);
      expect(((await unary(admin.sessions, 'ListCheckpoints', {})) as Wire)['checkpoints'].map((x: Wire) => x.checkpoint_id)).toContain(id);
      const r = (await unary(acme.sessions, 'RestoreSession', { checkpoint_id: id }, { deadlineMs: 60_000 })) as Wire;
      expect(r['session_id']).toBe(s['session_id']);
      expect(((await unary(acme.sessions, 'DeleteCheckpoint', { checkpoint_id: id })) as Wire)['deleted']).toBe(true);
    } finally {
      await unary(acme.sessions, 'DestroySession', { session_id: s['session_id'], force: true }).catch(() => {});
    }
  }, 60_000);
});
