/**
 * Inputs an attacker would send, on a real system: permissions a task tries to widen, a package
 * index the client chooses, over-long paths. Each is refused with a code and a message that names
 * what was wrong, and the session stays usable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpc, python, replyOf, runTask, TestSystem, unary, type Wire } from '../helpers/system.js';

let sys: TestSystem;
let sessionId: string;

beforeAll(async () => {
  sys = new TestSystem({ label: 'inputs' });
  await sys.startCoordinator({ HTTP_ENABLED: 'false' });
  await sys.startWorker('inputs-worker');
  sessionId = (await unary(sys.clients.sessions, 'CreateSession', { config: { allow_network: false } })).session_id;
}, 120_000);

afterAll(async () => {
  await sys?.stop();
}, 120_000);

const status = async () => (await unary(sys.clients.sessions, 'GetSessionStatus', { session_id: sessionId })).state as string;
const write = (path: string) => runTask(sys.clients, { session_id: sessionId, typed_request: { fs_write: { path, contents: 'x' } } });

async function stillUsable(): Promise<void> {
  expect(await status()).toBe('SESSION_STATE_READY');
  const r = await runTask(sys.clients, python(sessionId, 'print("still here")'));
  expect(replyOf(r, 'run_python')['stdout']).toBe('still here\n');
}

describe('permissions a task asks for', () => {
  it('refuses a task whose constraints ask for network in a session without it (PERMISSION_DENIED), and runs nothing', async () => {
    const r = await runTask(sys.clients, { ...python(sessionId, 'print("must not run")'), constraints: { allow_network: true } });
    expect(r.result).toBeUndefined();
    expect(grpc.status[r.status!.code]).toBe('PERMISSION_DENIED');
    expect(r.status!.details).toMatch(/constraints\.allow_network: this session was created without network; a task can only narrow/);
    await stillUsable();
  }, 60_000);

  it('refuses a client-chosen http index for pkg_install without network, and a file:// index outside the workspace', async () => {
    const install = (index_url: string) => runTask(sys.clients, { session_id: sessionId, typed_request: { pkg_install: { packages: ['anything'], index_url } } });
    const http = await install('http://127.0.0.1:9/simple');
    expect(http.error?.code).toBe('PERMISSION_DENIED');
    expect(http.error?.message).toMatch(/index_url: this session has no network/);
    const outside = await install('file:///root');
    expect(outside.error?.code).toBe('PATH_VIOLATION');
    expect(outside.error?.message).toMatch(/index_url: a file:\/\/ index must be a folder inside the session workspace/);
    await stillUsable();
  }, 60_000);
});

describe('over-long paths', () => {
  it('answers INVALID_ARGUMENT naming the limit for a name over 255 bytes or a path over the limit, on every file tool, and the session stays READY', async () => {
    const longName = 'n'.repeat(300);
    const deep = Array.from({ length: 40 }, () => 'd'.repeat(100)).join('/');
    const tools: Array<[string, (p: string) => Wire]> = [
      ['fs_write', (p) => ({ fs_write: { path: p, contents: 'x' } })],
      ['fs_read', (p) => ({ fs_read: { path: p } })],
      ['fs_list', (p) => ({ fs_list: { path: p } })],
      ['run_python', (p) => ({ run_python: { file: p } })],
    ];
    for (const [tool, req] of tools) {
      const name = await runTask(sys.clients, { session_id: sessionId, typed_request: req(longName) });
      expect(name.error?.code, tool).toBe('INVALID_ARGUMENT');
      expect(name.error?.message, tool).toMatch(/is 300 bytes long; a file or folder name may have at most 255/);
      const path = await runTask(sys.clients, { session_id: sessionId, typed_request: req(deep) });
      expect(path.error?.code, tool).toBe('INVALID_ARGUMENT');
      expect(path.error?.message, tool).toMatch(/a path may have at most 3800/);
    }
    // A name the kernel refuses deeper down (ENAMETOOLONG from user-made folders) is a tool error too, never FAILED.
    const ok = await write('fine.txt');
    expect(ok.result?.status).toBe('STATUS_SUCCESS');
    await stillUsable();
  }, 90_000);
});

describe('limits on every session', () => {
  it("ends a task that passes the session's memory limit (SessionConfig.limits, below the worker's) LIMIT_EXCEEDED naming it, keeps the session usable, and reports usage", async () => {
    const limited = (await unary(sys.clients.sessions, 'CreateSession', { config: { limits: { max_memory_bytes: String(128 * 1024 * 1024) } } })).session_id as string;
    const hog = await runTask(sys.clients, python(limited, 'b = bytearray(400 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint("allocated")'));
    expect(hog.error?.code, JSON.stringify(hog.result ?? hog.status?.details)).toBe('LIMIT_EXCEEDED');
    expect(hog.error?.message).toMatch(/memory limit of 128 MiB per session exceeded/);
    const after = await runTask(sys.clients, python(limited, 'x = bytearray(16 * 1024 * 1024)\nprint("fine", len(x))'));
    expect(replyOf(after, 'run_python')['stdout']).toBe(`fine ${16 * 1024 * 1024}\n`);
    const info = (await unary(sys.clients.sessions, 'GetSessionStatus', { session_id: limited })).info as Wire;
    expect(info.state).toBe('SESSION_STATE_READY');
    expect(Number(info.usage.memory_bytes)).toBeGreaterThan(0);
    expect(Number(info.usage.memory_bytes)).toBeLessThanOrEqual(128 * 1024 * 1024);
    // The limits in force: what the session asked (below the worker's), the worker's own for the rest.
    expect(Number(info.limits.max_memory_bytes)).toBe(128 * 1024 * 1024);
    expect(info.limits.max_processes).toBe(256);
    expect(Number(info.limits.max_cpu_seconds_per_task)).toBe(600);
    expect(sys.allLines().some((l) => typeof l.msg === 'string' && l.msg.startsWith('what the sandbox allows and enforces'))).toBe(true);
    await unary(sys.clients.sessions, 'DestroySession', { session_id: limited });
  }, 90_000);
});

