/**
 * Eviction and recovery with real processes. An idle session is checkpointed and evicted (its
 * worker drops it and its slot), shows EVICTED, and its next task restores it transparently.
 * A worker SIGKILLed for good: its sessions with a checkpoint come back on the other worker
 * under the same id, saying what survived; a frozen (SIGSTOP) worker's copy is dropped when it
 * wakes after its sessions were recovered elsewhere, so there is never a second live copy.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpc, grpcError, python, replyOf, runTask, sessionStatus, TestSystem, unary, until, type TaskRun, type Wire } from '../helpers/system.js';
import { buildWheel } from '../helpers/wheels.js';

const ok = (r: TaskRun, tool: string): Wire => {
  expect(r.error, 'task error').toBeUndefined();
  expect(r.status?.details, 'gRPC status').toBeUndefined();
  expect(r.result?.['status']).toBe('STATUS_SUCCESS');
  return replyOf(r, tool);
};

describe('eviction', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = new TestSystem({ label: 'evict' });
    const wheels = path.join(sys.root, 'wheels');
    buildWheel(wheels, 'evict_pkg', '3.1.4');
    await sys.startUp(2, { SESSION_IDLE_TIMEOUT_SECONDS: '1', SESSION_EVICT_AFTER_SECONDS: '2', PIP_FIND_LINKS: wheels, PIP_NO_INDEX: '1' });
  }, 120_000);
  afterAll(async () => {
    await sys?.stop();
  }, 120_000);

  it('evicts an idle session (its worker drops its files), shows it EVICTED, and its next tasks restore it transparently', async () => {
    const s = (await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'worker-1', metadata: { team: 'blue' } })) as Wire;
    const sid = s['session_id'] as string;
    ok(await runTask(sys.clients, { session_id: sid, typed_request: { pkg_install: { packages: ['evict_pkg'] } } }), 'pkg_install');
    ok(await runTask(sys.clients, { session_id: sid, typed_request: { python_exec: { code: 'in_memory = 1' } } }), 'python_exec');
    ok(await runTask(sys.clients, { session_id: sid, typed_request: { fs_write: { path: 'work/state.txt', contents: 'before eviction', create_dirs: true } } }), 'fs_write');
    const evicted = await until(() => sessionStatus(sys.clients, sid), (st) => st['state'] === 'SESSION_STATE_EVICTED', 30_000, 200, 'the session EVICTED');
    expect(evicted['info']['survival_note']).toMatch(/checkpoint ckpt-/);
    expect(evicted['metadata']).toEqual({ team: 'blue' });
    expect(existsSync(s['workspace_path'])).toBe(false);
    const listed = ((await unary(sys.clients.sessions, 'ListSessions', {})) as Wire)['sessions'].find((x: Wire) => x.session_id === sid);
    expect(listed['state']).toBe('SESSION_STATE_EVICTED');
    const checkpoints = ((await unary(sys.clients.sessions, 'ListCheckpoints', { session_id: sid })) as Wire)['checkpoints'];
    expect(checkpoints.map((c: Wire) => c.name)).toContain('evict');

    // Two tasks at once: the session comes back once, and both run on it.
    const [a, b] = await Promise.all([
      runTask(sys.clients, python(sid, "import evict_pkg\nprint(evict_pkg.VERSION, open('work/state.txt').read())")),
      runTask(sys.clients, { session_id: sid, typed_request: { fs_read: { path: 'work/state.txt' } } }),
    ]);
    expect(ok(a, 'run_python')['stdout']).toBe('3.1.4 before eviction\n');
    expect(ok(b, 'fs_read')['contents']).toBe('before eviction');
    const restoredFrom = a.result!['metadata']['restored_from_checkpoint'] || b.result!['metadata']['restored_from_checkpoint'];
    expect(restoredFrom).toMatch(/^ckpt-/);
    const after = await sessionStatus(sys.clients, sid);
    expect(['SESSION_STATE_READY', 'SESSION_STATE_BUSY', 'SESSION_STATE_IDLE']).toContain(after['state']);
    expect(after['info']['survival_note']).toMatch(/evicted after \d+ s idle and restored from checkpoint ckpt-/);
    expect(after['metadata']).toEqual({ team: 'blue' });
    // Eviction keeps files and packages, not the interpreter's memory: the first python_exec after it says so.
    const exec = ok(await runTask(sys.clients, { session_id: sid, typed_request: { python_exec: { code: '"in_memory" in globals()' } } }), 'python_exec');
    expect(exec).toMatchObject({ result: 'False', state_lost: true });
    expect(exec['state_lost_reason']).toMatch(/made from checkpoint ckpt-/);
  }, 90_000);

  it('destroys an evicted session without bringing it back, and keeps its checkpoint for a restore', async () => {
    const s = (await unary(sys.clients.sessions, 'CreateSession', {})) as Wire;
    const sid = s['session_id'] as string;
    ok(await runTask(sys.clients, { session_id: sid, typed_request: { fs_write: { path: 'keep.txt', contents: 'kept' } } }), 'fs_write');
    await until(() => sessionStatus(sys.clients, sid), (st) => st['state'] === 'SESSION_STATE_EVICTED', 30_000, 200, 'the session EVICTED');
    const d = (await unary(sys.clients.sessions, 'DestroySession', { session_id: sid, save_checkpoint: true })) as Wire;
    expect(d['destroyed']).toBe(true);
    expect(d['checkpoint_id']).toMatch(/^ckpt-/);
    expect((await grpcError(unary(sys.clients.sessions, 'GetSessionStatus', { session_id: sid }))).code).toBe(grpc.status.NOT_FOUND);
    const r = (await unary(sys.clients.sessions, 'RestoreSession', { checkpoint_id: d['checkpoint_id'], create_new_session: true }, { deadlineMs: 60_000 })) as Wire;
    expect(ok(await runTask(sys.clients, { session_id: r['session_id'], typed_request: { fs_read: { path: 'keep.txt' } } }), 'fs_read')['contents']).toBe('kept');
  }, 90_000);
});

describe('recovery from a lost worker', () => {
  let sys: TestSystem;
  const fast = { HEARTBEAT_INTERVAL_SECONDS: '1', HEARTBEAT_MISSES: '2', SESSION_RECOVERY_SECONDS: '3' };
  beforeAll(async () => {
    sys = new TestSystem({ label: 'recover' });
    const wheels = path.join(sys.root, 'wheels');
    buildWheel(wheels, 'rec_pkg', '1.0.1');
    await sys.startCoordinator(fast);
    for (const id of ['keeper', 'doomed', 'sleeper']) await sys.startWorker(id, { PIP_FIND_LINKS: wheels, PIP_NO_INDEX: '1', ...fast });
  }, 120_000);
  afterAll(async () => {
    await sys?.stop();
  }, 120_000);

  it('a worker SIGKILLed for good: its checkpointed session comes back on another worker under the same id, saying what survived', async () => {
    const s = (await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'doomed', metadata: { who: 'me' } })) as Wire;
    const sid = s['session_id'] as string;
    const bare = (await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'doomed' })) as Wire;
    ok(await runTask(sys.clients, { session_id: sid, typed_request: { pkg_install: { packages: ['rec_pkg'] } } }), 'pkg_install');
    ok(await runTask(sys.clients, { session_id: sid, typed_request: { fs_write: { path: 'saved.txt', contents: 'in the checkpoint' } } }), 'fs_write');
    const c = (await unary(sys.clients.sessions, 'CheckpointSession', { session_id: sid }, { deadlineMs: 60_000 })) as Wire;
    ok(await runTask(sys.clients, { session_id: sid, typed_request: { fs_write: { path: 'later.txt', contents: 'after the checkpoint' } } }), 'fs_write');

    process.kill(sys.workerPid('doomed'), 'SIGKILL');
    const killedAt = Date.now();
    // Until it is recovered, tasks fail and say it can be retried.
    const early = await runTask(sys.clients, { session_id: sid, typed_request: { echo: { message: 'x' } } });
    const code = early.error?.code ?? early.status?.code;
    expect(code === 'WORKER_LOST' || code === grpc.status.UNAVAILABLE, JSON.stringify({ e: early.error, s: early.status?.details })).toBe(true);

    const back = await until(() => sessionStatus(sys.clients, sid), (st) => st['worker_id'] !== 'doomed' && st['state'] === 'SESSION_STATE_READY', 30_000, 200, 'the session recovered');
    expect(Date.now() - killedAt).toBeLessThan(30_000);
    expect(['keeper', 'sleeper']).toContain(back['worker_id']);
    expect(back['info']['survival_note']).toContain(c['checkpoint_id']);
    expect(back['info']['survival_note']).toMatch(/worker doomed was lost .* later changes and the interpreter's memory were lost/);
    expect(back['metadata']).toEqual({ who: 'me' });
    const out = ok(await runTask(sys.clients, python(sid, "import rec_pkg, os\nprint(rec_pkg.VERSION, open('saved.txt').read(), os.path.exists('later.txt'))")), 'run_python');
    expect(out['stdout']).toBe('1.0.1 in the checkpoint False\n');
    // A session with no checkpoint waits for its worker, as before.
    const waiting = await sessionStatus(sys.clients, bare['session_id']);
    expect(waiting['worker_id']).toBe('doomed');
    expect(waiting.unreachableSinceMs).toBeGreaterThan(0);
  }, 90_000);

  it('a worker frozen past SESSION_RECOVERY_SECONDS: its session is recovered elsewhere, and when it wakes its copy is dropped', async () => {
    const s = (await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'sleeper' })) as Wire;
    const sid = s['session_id'] as string;
    ok(await runTask(sys.clients, { session_id: sid, typed_request: { fs_write: { path: 'dream.txt', contents: 'zzz' } } }), 'fs_write');
    await unary(sys.clients.sessions, 'CheckpointSession', { session_id: sid }, { deadlineMs: 60_000 });
    const pid = sys.workerPid('sleeper');
    const from = sys.coordinator!.lines.length;
    process.kill(pid, 'SIGSTOP');
    try {
      const back = await until(() => sessionStatus(sys.clients, sid), (st) => st['worker_id'] === 'keeper' && st['state'] === 'SESSION_STATE_READY', 30_000, 200, 'the session recovered on keeper');
      expect(back['info']['survival_note']).toMatch(/worker sleeper was lost/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // The sleeper registers again; its stale copy is destroyed, never adopted.
    await sys.waitForStream(sys.coordinator!, 'sleeper', from);
    await until(async () => existsSync(s['workspace_path']), (there) => !there, 20_000, 200, "the sleeper's copy removed");
    const st = await sessionStatus(sys.clients, sid);
    expect(st['worker_id']).toBe('keeper');
    expect(ok(await runTask(sys.clients, { session_id: sid, typed_request: { fs_read: { path: 'dream.txt' } } }), 'fs_read')['contents']).toBe('zzz');
  }, 90_000);
});

describe('an evicted session across a coordinator restart', () => {
  let sys: TestSystem;
  const env = { SESSION_IDLE_TIMEOUT_SECONDS: '1', SESSION_EVICT_AFTER_SECONDS: '2', RECOVERY_GRACE_SECONDS: '2' };
  beforeAll(async () => {
    sys = new TestSystem({ label: 'evict-restart' });
    await sys.startCoordinator(env);
    await sys.startWorker('only');
  }, 120_000);
  afterAll(async () => {
    await sys?.stop();
  }, 120_000);

  it('is still EVICTED after the coordinator is SIGKILLed and started again, and its next task restores it', async () => {
    const s = (await unary(sys.clients.sessions, 'CreateSession', {})) as Wire;
    const sid = s['session_id'] as string;
    ok(await runTask(sys.clients, { session_id: sid, typed_request: { fs_write: { path: 'survivor.txt', contents: 'still here' } } }), 'fs_write');
    await until(() => sessionStatus(sys.clients, sid), (st) => st['state'] === 'SESSION_STATE_EVICTED', 30_000, 200, 'the session EVICTED');
    // Written before the worker dropped it: a kill at any moment from here on cannot lose it.
    expect(existsSync(path.join(sys.stateDir, 'checkpoints', 'evicted', `${sid}.json`))).toBe(true);
    const port = sys.grpcPort;
    const old = sys.coordinator!;
    process.kill(old.pid, 'SIGKILL');
    await until(async () => old.exit !== undefined, (gone) => gone, 10_000, 50, 'the coordinator gone');
    const again = await sys.startCoordinator({ ...env, GRPC_PORT: String(port) });
    await sys.waitForStream(again, 'only');
    const st = await until(() => sessionStatus(sys.clients, sid), (x) => x['state'] === 'SESSION_STATE_EVICTED', 15_000, 200, 'the session EVICTED after the restart');
    expect(st['info']['survival_note']).toMatch(/checkpoint ckpt-/);
    const r = await runTask(sys.clients, { session_id: sid, typed_request: { fs_read: { path: 'survivor.txt' } } });
    expect(ok(r, 'fs_read')['contents']).toBe('still here');
    expect(r.result!['metadata']['restored_from_checkpoint']).toMatch(/^ckpt-/);
  }, 90_000);
});
