/**
 * Bad input against a real system (`codegen-mcp up`, two workers of MAX_SESSIONS=2): every
 * malformed request gets INVALID_ARGUMENT naming the field, unknown ids NOT_FOUND, and no
 * input crashes a process or hangs a call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpc, grpcError, python, replyOf, runTask, startTask, TestSystem, unary, type SystemProcess, type Wire } from '../helpers/system.js';

let sys: TestSystem;
let up: SystemProcess;

beforeAll(async () => {
  sys = new TestSystem({ label: 'bad-input' });
  up = await sys.startUp(2, { MAX_SESSIONS: '2' });
}, 120_000);

afterAll(async () => {
  await sys?.stop();
}, 120_000);

const S = () => sys.clients.sessions;
const T = () => sys.clients.tasks;
const W = () => sys.clients.workers;

/** A unary call that must fail with `code` and a message containing each of `mentions`. */
async function refused(client: grpc.Client & Record<string, any>, method: string, req: Wire, code: grpc.status, ...mentions: string[]): Promise<string> {
  const err = await grpcError(unary(client, method, req, { deadlineMs: 15_000 }));
  expect(grpc.status[err.code], `${method} ${JSON.stringify(req)}: ${err.details}`).toBe(grpc.status[code]);
  for (const m of mentions) expect(err.details, `${method} ${JSON.stringify(req)}`).toContain(m);
  return err.details;
}

/** An ExecuteTask that must end with gRPC status `code` naming `field`, with no task run. */
async function taskRefused(req: Wire, code: grpc.status, ...mentions: string[]): Promise<void> {
  const r = await runTask(sys.clients, req, 15_000);
  expect(r.result, `${JSON.stringify(req)} must not run`).toBeUndefined();
  expect(r.status, `${JSON.stringify(req)}: ${JSON.stringify(r.error)}`).toBeDefined();
  expect(grpc.status[r.status!.code], `${JSON.stringify(req)}: ${r.status!.details}`).toBe(grpc.status[code]);
  for (const m of mentions) expect(r.status!.details, JSON.stringify(req)).toContain(m);
}

describe('bad input', () => {
  let sessionId = '';

  beforeAll(async () => {
    sessionId = (await unary(S(), 'CreateSession', {})).session_id;
  });

  it('refuses malformed CreateSession requests naming the field', async () => {
    await refused(S(), 'CreateSession', { config: { env_vars: { '1BAD': 'x' } } }, grpc.status.INVALID_ARGUMENT, 'config.env_vars.1BAD');
    await refused(S(), 'CreateSession', { config: { env_vars: { 'A=B': 'x' } } }, grpc.status.INVALID_ARGUMENT, 'config.env_vars');
    await refused(S(), 'CreateSession', { config: { language: 'ruby' } }, grpc.status.INVALID_ARGUMENT, 'config.language');
    await refused(S(), 'CreateSession', { workspace_id: '../escape' }, grpc.status.INVALID_ARGUMENT, 'workspace_id');
    await refused(S(), 'CreateSession', { worker_id: 'no-such-worker' }, grpc.status.NOT_FOUND, 'worker_id');
  });

  it('refuses malformed ExecuteTask requests naming the field, running nothing', async () => {
    const rp = (input: Wire, extra: Wire = {}) => ({ session_id: sessionId, typed_request: { run_python: input }, ...extra });
    await taskRefused({ typed_request: { echo: { message: 'x' } } }, grpc.status.INVALID_ARGUMENT, 'session_id');
    await taskRefused({ session_id: sessionId }, grpc.status.INVALID_ARGUMENT, 'typed_request');
    await taskRefused({ session_id: sessionId, typed_request: {} }, grpc.status.INVALID_ARGUMENT, 'typed_request');
    // The session's own operations are the coordinator's to send, never a client's task.
    await taskRefused({ session_id: sessionId, typed_request: { checkpoint: { checkpoint_id: 'ckpt-x' } } }, grpc.status.INVALID_ARGUMENT, 'typed_request');
    await taskRefused({ session_id: sessionId, typed_request: { restore: { checkpoint_id: 'ckpt-x', manifest_sha256: 'a'.repeat(64) } } }, grpc.status.INVALID_ARGUMENT, 'typed_request');
    await taskRefused(rp({ code: 'print(1)', file: 'main.py' }), grpc.status.INVALID_ARGUMENT, 'run_python.code', 'run_python.file');
    await taskRefused(rp({}), grpc.status.INVALID_ARGUMENT, 'run_python.code', 'run_python.file');
    await taskRefused(rp({ code: 'print(1)', timeout_seconds: -1 }), grpc.status.INVALID_ARGUMENT, 'run_python.timeout_seconds');
    await taskRefused(rp({ code: 'print(1)', timeout_seconds: 2_000_000_000 }), grpc.status.INVALID_ARGUMENT, 'run_python.timeout_seconds');
    await taskRefused(rp({ code: 'print(1)' }, { constraints: { timeout_seconds: -5 } }), grpc.status.INVALID_ARGUMENT, 'constraints.timeout_seconds');
    await taskRefused(rp({ code: 'print(1)', env_vars: { '1X': 'a' } }), grpc.status.INVALID_ARGUMENT, 'run_python.env_vars.1X');
    await taskRefused(rp({ code: 'print(1)', env_vars: { 'A-B': 'a' } }), grpc.status.INVALID_ARGUMENT, 'run_python.env_vars.A-B');
    await taskRefused(rp({ code: 'print(1)', args: ['a\0b'] }), grpc.status.INVALID_ARGUMENT, 'run_python.args[0]');
    const pkg = (packages: string[]) => ({ session_id: sessionId, typed_request: { pkg_install: { packages } } });
    await taskRefused(pkg(['--index-url=http://evil.example/simple']), grpc.status.INVALID_ARGUMENT, 'pkg_install.packages[0]');
    await taskRefused(pkg(['ok-name', '-rrequirements.txt']), grpc.status.INVALID_ARGUMENT, 'pkg_install.packages[1]');
    await taskRefused(pkg([]), grpc.status.INVALID_ARGUMENT, 'pkg_install.packages');
    await taskRefused({ session_id: sessionId, typed_request: { pkg_install: { packages: ['x'], index_url: 'ftp://nope' } } }, grpc.status.INVALID_ARGUMENT, 'pkg_install.index_url');
    await taskRefused({ session_id: sessionId, typed_request: { fs_write: { path: 'a.txt', contents: 'x', encoding: 'rot13' } } }, grpc.status.INVALID_ARGUMENT, 'fs_write.encoding');
    await taskRefused({ session_id: sessionId, typed_request: { fs_read: { path: '' } } }, grpc.status.INVALID_ARGUMENT, 'fs_read.path');
    await taskRefused({ session_id: sessionId, typed_request: { fs_read: { path: 'a\0b' } } }, grpc.status.INVALID_ARGUMENT, 'fs_read.path');
    await taskRefused({ session_id: sessionId, typed_request: { artifact_get: { artifact_id: '' } } }, grpc.status.INVALID_ARGUMENT, 'artifact_get.artifact_id');
    await taskRefused({ session_id: sessionId, task_id: 'not a valid id!', typed_request: { echo: { message: 'x' } } }, grpc.status.INVALID_ARGUMENT, 'task_id');

    // None of it reached the session: it has no tasks, and still works.
    const status = await unary(S(), 'GetSessionStatus', { session_id: sessionId });
    expect(status.recent_tasks).toEqual([]);
    expect(replyOf(await runTask(sys.clients, { session_id: sessionId, typed_request: { echo: { message: 'still here' } } }), 'echo')['message']).toBe('still here');
  });

  it('answers NOT_FOUND for unknown session and task ids, INVALID_ARGUMENT for missing ones', async () => {
    const ghost = 'sess-does-not-exist';
    await refused(S(), 'GetSessionStatus', { session_id: ghost }, grpc.status.NOT_FOUND, ghost);
    await refused(S(), 'GetSessionStatus', {}, grpc.status.INVALID_ARGUMENT, 'session_id');
    await refused(S(), 'DestroySession', { session_id: ghost }, grpc.status.NOT_FOUND);
    await refused(S(), 'DestroySession', {}, grpc.status.INVALID_ARGUMENT, 'session_id');
    await refused(S(), 'GetSessionMetadata', { session_id: ghost }, grpc.status.NOT_FOUND);
    await refused(S(), 'UpdateSessionMetadata', { session_id: ghost, metadata: { a: 'b' } }, grpc.status.NOT_FOUND);
    await refused(S(), 'SetSessionMetadata', { session_id: ghost, metadata: { a: 'b' } }, grpc.status.NOT_FOUND);
    await taskRefused({ session_id: ghost, typed_request: { echo: { message: 'x' } } }, grpc.status.NOT_FOUND, ghost);
    await refused(T(), 'GetTaskStatus', { task_id: 'task-does-not-exist' }, grpc.status.NOT_FOUND, 'task-does-not-exist');
    await refused(T(), 'GetTaskStatus', { task_id: 'task-does-not-exist', session_id: sessionId }, grpc.status.NOT_FOUND);
    await refused(T(), 'GetTaskStatus', {}, grpc.status.INVALID_ARGUMENT, 'task_id');
    await refused(T(), 'CancelTask', { task_id: 'task-does-not-exist' }, grpc.status.NOT_FOUND, 'task-does-not-exist');
    await refused(T(), 'CancelTask', {}, grpc.status.INVALID_ARGUMENT, 'task_id');
  });

  it('refuses a task_id already used by a task of another session', async () => {
    const taskId = `shared-${Math.random().toString(36).slice(2, 10)}`;
    const first = await runTask(sys.clients, { session_id: sessionId, task_id: taskId, typed_request: { echo: { message: 'first' } } });
    expect(replyOf(first, 'echo')['message']).toBe('first');
    const other = await unary(S(), 'CreateSession', {});
    await taskRefused({ session_id: other.session_id, task_id: taskId, typed_request: { echo: { message: 'second' } } }, grpc.status.INVALID_ARGUMENT, 'task_id');
    await unary(S(), 'DestroySession', { session_id: other.session_id });
  });

  it('refuses metadata past 4096 bytes of keys and values (it travels in every report), keeping what was there', async () => {
    const big = 'x'.repeat(4_000);
    await refused(S(), 'CreateSession', { metadata: { big: big + 'x'.repeat(200) } }, grpc.status.INVALID_ARGUMENT, 'metadata', '4096');
    const s = await unary(S(), 'CreateSession', { metadata: { a: 'b' } });
    // Merging counts what is there already.
    await unary(S(), 'UpdateSessionMetadata', { session_id: s.session_id, metadata: { big } });
    await refused(S(), 'UpdateSessionMetadata', { session_id: s.session_id, metadata: { more: 'x'.repeat(200) } }, grpc.status.INVALID_ARGUMENT, 'metadata');
    expect((await unary(S(), 'GetSessionMetadata', { session_id: s.session_id })).metadata).toEqual({ a: 'b', big });
    // Replacing counts only the new.
    expect((await unary(S(), 'SetSessionMetadata', { session_id: s.session_id, metadata: { more: 'x'.repeat(200) } })).metadata).toEqual({ more: 'x'.repeat(200) });
    await unary(S(), 'DestroySession', { session_id: s.session_id });
  });

  it('refuses bad checkpoint calls naming the field, without touching the session', async () => {
    await refused(S(), 'CheckpointSession', { session_id: '' }, grpc.status.INVALID_ARGUMENT, 'session_id');
    await refused(S(), 'CheckpointSession', { session_id: sessionId, checkpoint_name: 'n'.repeat(200) }, grpc.status.INVALID_ARGUMENT, 'checkpoint_name');
    await refused(S(), 'CheckpointSession', { session_id: sessionId, checkpoint_name: 'a/../b' }, grpc.status.INVALID_ARGUMENT, 'checkpoint_name');
    await refused(S(), 'RestoreSession', { checkpoint_id: '' }, grpc.status.INVALID_ARGUMENT, 'checkpoint_id');
    await refused(S(), 'RestoreSession', { checkpoint_id: 'cp-1' }, grpc.status.NOT_FOUND, 'checkpoint_id');
    await refused(S(), 'RestoreSession', { checkpoint_id: '../x' }, grpc.status.INVALID_ARGUMENT, 'checkpoint_id');
    await refused(S(), 'DeleteCheckpoint', { checkpoint_id: 'cp-1' }, grpc.status.NOT_FOUND, 'checkpoint_id');
    await refused(S(), 'ListCheckpoints', { session_id: 'sess-none' }, grpc.status.NOT_FOUND);
    await refused(S(), 'DestroySession', { session_id: 'sess-none', save_checkpoint: true }, grpc.status.NOT_FOUND);
    expect((await unary(S(), 'GetSessionStatus', { session_id: sessionId })).state).not.toBe('SESSION_STATE_FAILED');
  });

  it('refuses a session beyond MAX_SESSIONS with RESOURCE_EXHAUSTED and a clear message', async () => {
    // Capacity is 2 × 2; one session exists.
    const more = await Promise.all([0, 1, 2].map(() => unary(S(), 'CreateSession', {})));
    const held = [sessionId, ...more.map((s) => s.session_id)];
    const byWorker = more.concat([{ worker_id: '' }]).reduce<Record<string, number>>((acc, s) => ((acc[s.worker_id] = (acc[s.worker_id] ?? 0) + 1), acc), {});
    expect(Object.keys(byWorker).filter(Boolean).length).toBe(2);
    const msg = await refused(S(), 'CreateSession', {}, grpc.status.RESOURCE_EXHAUSTED);
    expect(msg).toMatch(/session limit|maximum/);
    const msg1 = await refused(S(), 'CreateSession', { worker_id: 'worker-1' }, grpc.status.RESOURCE_EXHAUSTED, 'worker-1');
    expect(msg1).toMatch(/maximum of 2 sessions/);
    // Freeing one makes room again.
    await unary(S(), 'DestroySession', { session_id: held.at(-1) });
    const again = await unary(S(), 'CreateSession', {});
    await unary(S(), 'DestroySession', { session_id: again.session_id });
    for (const id of held.slice(1, -1)) await unary(S(), 'DestroySession', { session_id: id });
  });

  it('refuses to destroy a BUSY session without force (FAILED_PRECONDITION); with force it cancels the task', async () => {
    const busy = startTask(sys.clients, python(sessionId, 'import time\nprint("started", flush=True)\ntime.sleep(60)'));
    await busy.waitForLog((l) => l === 'started');
    await refused(S(), 'DestroySession', { session_id: sessionId }, grpc.status.FAILED_PRECONDITION, 'BUSY', 'force');
    const d = await unary(S(), 'DestroySession', { session_id: sessionId, force: true });
    expect(d.destroyed).toBe(true);
    const r = await busy.done;
    expect(r.result?.status, JSON.stringify({ error: r.error, status: r.status?.details })).toBe('STATUS_CANCELLED');
    await refused(S(), 'GetSessionStatus', { session_id: sessionId }, grpc.status.NOT_FOUND);
  });

  it('refuses misuse of WorkerLifecycle by a client that is no worker', async () => {
    await refused(W(), 'RegisterWorker', { worker_id: '', max_sessions: 1 }, grpc.status.INVALID_ARGUMENT, 'worker_id');
    await refused(W(), 'RegisterWorker', { worker_id: 'bad id/..', max_sessions: 1 }, grpc.status.INVALID_ARGUMENT, 'worker_id');
    await refused(W(), 'RegisterWorker', { worker_id: 'fine-id', max_sessions: 0 }, grpc.status.INVALID_ARGUMENT, 'max_sessions');
    await refused(W(), 'Heartbeat', { worker_id: 'worker-1', registration_id: 'reg-forged' }, grpc.status.NOT_FOUND);
    await refused(W(), 'DeregisterWorker', { worker_id: 'worker-1', registration_id: 'reg-forged' }, grpc.status.NOT_FOUND);
    // A task stream whose first message is not a hello, and one naming a registration that does not exist.
    for (const first of [{ reply: { ok: true } }, { hello: { worker_id: 'worker-1', registration_id: 'reg-forged' } }]) {
      const err = await new Promise<grpc.ServiceError>((resolve) => {
        const call = W()['TaskStream'](new grpc.Metadata(), { deadline: new Date(Date.now() + 15_000) });
        call.on('data', () => {});
        call.on('error', resolve);
        call.on('end', () => resolve({ code: grpc.status.OK } as grpc.ServiceError));
        call.write(first);
      });
      expect([grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND], `${JSON.stringify(first)}: ${err.details}`).toContain(err.code);
    }
  });

  it('survives bytes that are not a protobuf message', async () => {
    const raw = new grpc.Client(sys.address, grpc.credentials.createInsecure());
    try {
      for (const method of ['/codegen.v1.SessionManagement/CreateSession', '/codegen.v1.SessionManagement/GetSessionStatus', '/codegen.v1.TaskExecution/CancelTask', '/codegen.v1.WorkerLifecycle/RegisterWorker']) {
        const err = await new Promise<grpc.ServiceError | null>((resolve) => {
          raw.makeUnaryRequest(method, (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99]), { deadline: new Date(Date.now() + 10_000) }, (e) => resolve(e));
        });
        expect(err, method).not.toBeNull();
        expect(err!.code, `${method}: ${err!.details}`).not.toBe(grpc.status.DEADLINE_EXCEEDED);
      }
      const stream = await new Promise<grpc.ServiceError | null>((resolve) => {
        const call = raw.makeServerStreamRequest('/codegen.v1.TaskExecution/ExecuteTask', (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x0a, 0xff, 0xff, 0xff]), { deadline: new Date(Date.now() + 10_000) });
        call.on('data', () => {});
        call.on('error', resolve);
        call.on('end', () => resolve(null));
      });
      expect(stream).not.toBeNull();
      expect(stream!.code).not.toBe(grpc.status.DEADLINE_EXCEEDED);
    } finally {
      raw.close();
    }
  });

  it('a file too large for one message: fs_read ends with LIMIT_EXCEEDED, and the worker keeps its link and its other work', async () => {
    const s = await unary(S(), 'CreateSession', {});
    try {
      // 50 MiB of random bytes: base64 makes 67 MiB, more than a gRPC message (64 MiB) carries.
      const made = await runTask(sys.clients, python(s.session_id, 'import os\nwith open("big.bin", "wb") as f:\n    f.write(os.urandom(50 * 1024 * 1024))\nprint("made")'), 60_000);
      expect(replyOf(made, 'run_python')['stdout']).toBe('made\n');
      const r = await runTask(sys.clients, { session_id: s.session_id, typed_request: { fs_read: { path: 'big.bin' } } }, 60_000);
      expect(r.result, 'no result').toBeUndefined();
      expect(r.error?.code, JSON.stringify(r.error)).toBe('LIMIT_EXCEEDED');
      expect(r.error?.message).toMatch(/fs_read result is 6\d\.\d MiB, more than the 63\.0 MiB one message can carry; split or compress/);
      // The same session goes on: its worker was not lost.
      const after = await runTask(sys.clients, python(s.session_id, 'import os; print(os.path.getsize("big.bin"))'));
      expect(replyOf(after, 'run_python')['stdout']).toBe(`${50 * 1024 * 1024}\n`);
    } finally {
      await unary(S(), 'DestroySession', { session_id: s.session_id, force: true });
    }
  }, 120_000);

  it('still has the coordinator and both workers answering after all of it', async () => {
    expect(await sys.health()).toBe('SERVING');
    for (const workerId of ['worker-1', 'worker-2']) {
      const s = await unary(S(), 'CreateSession', { worker_id: workerId });
      expect(s.worker_id).toBe(workerId);
      const r = await runTask(sys.clients, python(s.session_id, 'print("alive")'));
      expect(replyOf(r, 'run_python')['stdout']).toBe('alive\n');
      await unary(S(), 'DestroySession', { session_id: s.session_id });
    }
    expect(up.exit).toBeUndefined();
    // No child of `up` died and was restarted along the way.
    expect(up.lines.filter((l) => l.msg === 'child exited; restarting')).toEqual([]);
    expect(up.lines.filter((l) => typeof l.level === 'number' && l.level >= 50)).toEqual([]);
  });
});
