/**
 * Checkpoint policies and the MCP checkpoint tools with real processes: CHECKPOINT_ON_IDLE
 * checkpoints an idle session that changed (once per change, not at every idle), an agent
 * over MCP HTTP checkpoints, lists, restores and deletes, and a full store (CHECKPOINT_STORE_MAX_BYTES)
 * answers RESOURCE_EXHAUSTED without hurting the session or the checkpoints it has.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { grpc, grpcError, python, replyOf, runTask, TestSystem, unary, until, type Wire } from '../helpers/system.js';

let sys: TestSystem;

beforeAll(async () => {
  sys = new TestSystem({ label: 'ckpt-policy' });
  await sys.startUp(1, { SESSION_IDLE_TIMEOUT_SECONDS: '1', CHECKPOINT_ON_IDLE: 'true', HTTP_HOST: '127.0.0.1', CHECKPOINT_STORE_MAX_BYTES: String(6 * 1024 * 1024) });
}, 120_000);

afterAll(async () => {
  await sys?.stop();
}, 120_000);

const checkpointsOf = async (sessionId: string) => ((await unary(sys.clients.sessions, 'ListCheckpoints', { session_id: sessionId })) as Wire)['checkpoints'] as Wire[];

describe('CHECKPOINT_ON_IDLE', () => {
  it('checkpoints a session that went idle after a change, once, and again after the next change', async () => {
    const s = (await unary(sys.clients.sessions, 'CreateSession', {})) as Wire;
    const sid = s['session_id'] as string;
    await runTask(sys.clients, { session_id: sid, typed_request: { fs_write: { path: 'one.txt', contents: '1' } } });
    const first = await until(() => checkpointsOf(sid), (l) => l.length >= 1, 20_000, 200, 'an idle checkpoint');
    expect(first[0]).toMatchObject({ name: 'idle' });
    expect(first[0]!['metadata']['modified_files']).toEqual(['one.txt']);
    // Idle again after its own checkpoint, with nothing changed: no second one.
    await new Promise((r) => setTimeout(r, 4_000));
    expect(await checkpointsOf(sid)).toHaveLength(1);
    await runTask(sys.clients, { session_id: sid, typed_request: { fs_write: { path: 'two.txt', contents: '2' } } });
    const second = await until(() => checkpointsOf(sid), (l) => l.length >= 2, 20_000, 200, 'a second idle checkpoint');
    expect(second[1]!['metadata']['modified_files']).toEqual(['two.txt']);
  }, 60_000);
});

describe('MCP checkpoint tools over HTTP', () => {
  it('an agent checkpoints, breaks its files, lists, restores in place, then deletes the checkpoint', async () => {
    const client = new Client({ name: 'ckpt-agent', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${sys.httpPort}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${sys.clientToken}` } } }));
    try {
      const call = async (name: string, args: Record<string, unknown>) => {
        const r = await client.callTool({ name, arguments: args });
        expect(r.isError, `${name}: ${JSON.stringify(r.content)}`).toBeFalsy();
        return r.structuredContent as Wire;
      };
      await call('fs_write', { path: 'app.py', contents: 'print("v1")' });
      const c = await call('session_checkpoint', { name: 'before refactor' });
      expect(c['checkpoint_id']).toMatch(/^ckpt-/);
      await call('fs_write', { path: 'app.py', contents: 'print("broken")' });
      const list = await call('checkpoint_list', { session_id: c['session_id'] });
      expect(list['checkpoints'].map((x: Wire) => x.name)).toContain('before refactor');
      const r = await call('session_restore', { checkpoint_id: c['checkpoint_id'] });
      expect(r).toMatchObject({ session_id: c['session_id'], restored_in_place: true });
      expect((await call('run_python', { file: 'app.py' }))['stdout']).toBe('v1\n');
      expect(await call('checkpoint_delete', { checkpoint_id: c['checkpoint_id'] })).toEqual({ checkpoint_id: c['checkpoint_id'], deleted: true });
      const gone = await client.callTool({ name: 'session_restore', arguments: { checkpoint_id: c['checkpoint_id'] } });
      expect(gone.isError).toBe(true);
      const tools = (await client.listTools()).tools;
      expect(tools.find((t) => t.name === 'session_checkpoint')?.description).toMatch(/before a risky step/);
    } finally {
      await client.close();
    }
  }, 60_000);
});

describe('a full store', () => {
  it('answers RESOURCE_EXHAUSTED naming the limit; the session keeps working and its previous checkpoint still restores', async () => {
    const s = (await unary(sys.clients.sessions, 'CreateSession', {})) as Wire;
    const sid = s['session_id'] as string;
    const write = (name: string) => runTask(sys.clients, python(sid, `import os\nopen('${name}', 'wb').write(os.urandom(4 << 20))\nprint('ok')`));
    expect(replyOf(await write('one.bin'), 'run_python')['stdout']).toBe('ok\n');
    const first = (await unary(sys.clients.sessions, 'CheckpointSession', { session_id: sid }, { deadlineMs: 60_000 })) as Wire;
    expect(replyOf(await write('two.bin'), 'run_python')['stdout']).toBe('ok\n');
    const full = await grpcError(unary(sys.clients.sessions, 'CheckpointSession', { session_id: sid }, { deadlineMs: 60_000 }));
    expect(full.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(full.details).toMatch(/checkpoint store is full.*CHECKPOINT_STORE_MAX_BYTES/);
    expect(readdirSync(path.join(sys.stateDir, 'checkpoints', 'tmp'))).toEqual([]);
    // The session works, and the first checkpoint brings back exactly its files.
    await unary(sys.clients.sessions, 'RestoreSession', { checkpoint_id: first['checkpoint_id'] }, { deadlineMs: 60_000 });
    const ls = replyOf(await runTask(sys.clients, python(sid, "import os\nprint(sorted(f for f in os.listdir('.') if f.endswith('.bin')))")), 'run_python');
    expect(ls['stdout']).toBe("['one.bin']\n");
    const d = (await unary(sys.clients.sessions, 'DestroySession', { session_id: sid, force: true })) as Wire;
    expect(d['destroyed']).toBe(true);
  }, 60_000);
});
