/**
 * Losing a worker, with real processes: `codegen-mcp up` with two workers (heartbeat 1 s, two
 * misses). One is killed with SIGKILL mid-task: its running and queued tasks end WORKER_LOST
 * within seconds and its sandboxed programs die, but its session is not final — `up` restarts
 * the worker on the same BASE_WORKSPACE, which adopts the session: same id, READY, with its
 * files, installed package and metadata. The other is frozen with SIGSTOP: it is declared lost
 * when its heartbeats stop, and on SIGCONT it registers again and keeps its sessions.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, isAlive, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { grpc, grpcError, python, replyOf, runTask, sessionStatus, settledStatus, startTask, TestSystem, unary, until, type SystemProcess, type TaskRun, type Wire } from '../helpers/system.js';
import { buildWheel } from '../helpers/wheels.js';

const stubborn = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'python', 'stubborn.py'), 'utf8');

let sys: TestSystem;
let up: SystemProcess;

beforeAll(async () => {
  sys = new TestSystem({ label: 'loss' });
  const wheels = path.join(sys.root, 'wheels');
  buildWheel(wheels, 'lost_pkg', '2.7.1');
  up = await sys.startUp(2, { HEARTBEAT_INTERVAL_SECONDS: '1', HEARTBEAT_MISSES: '2', PIP_FIND_LINKS: wheels, PIP_NO_INDEX: '1' });
}, 120_000);

afterAll(async () => {
  await sys?.stop();
}, 120_000);

const S = () => sys.clients.sessions;
const status = (sessionId: string) => sessionStatus(sys.clients, sessionId);

/** The typed reply of a task that must have succeeded. */
function ok(r: TaskRun, tool: string): Wire {
  expect(r.status?.details, 'gRPC status').toBeUndefined();
  expect(r.error, 'task error').toBeUndefined();
  expect(r.result?.['status']).toBe('STATUS_SUCCESS');
  return replyOf(r, tool);
}

const call = (sessionId: string, tool: string, input: Wire) => runTask(sys.clients, { session_id: sessionId, typed_request: { [tool]: input } });

/** How many terminal payloads (result or error) a task's stream carried. */
const ends = (r: TaskRun) => r.responses.filter((x) => x['payload'] === 'result' || x['payload'] === 'error').length;

describe('losing a worker', () => {
  it('a worker killed with SIGKILL mid-task: its tasks end WORKER_LOST within seconds, and after `up` restarts it the session is back with its files, package and metadata', async () => {
    const lost = await unary(S(), 'CreateSession', { worker_id: 'worker-1', metadata: { owner: 'alice' } });
    const kept = await unary(S(), 'CreateSession', { worker_id: 'worker-2' });
    const kept2 = await unary(S(), 'CreateSession', { worker_id: 'worker-2' });
    expect(lost.worker_id).toBe('worker-1');

    // What must survive: a file, an installed package, metadata changed after the create.
    ok(await call(lost.session_id, 'fs_write', { path: 'notes/kept.txt', contents: 'written before the kill\n', create_dirs: true }), 'fs_write');
    const installed = ok(await call(lost.session_id, 'pkg_install', { packages: ['lost_pkg'] }), 'pkg_install');
    expect(installed['installed']).toEqual([expect.objectContaining({ version: '2.7.1' })]);
    const updated = await unary(S(), 'UpdateSessionMetadata', { session_id: lost.session_id, metadata: { stage: 'before-kill' } });
    expect(updated.metadata).toEqual({ owner: 'alice', stage: 'before-kill' });
    const before = await status(lost.session_id);
    expect(before.restartedAtMs).toBe(0);

    const token = uniqueToken('sigkill');
    const running = startTask(sys.clients, python(lost.session_id, stubborn, { args: [token] }));
    await running.waitForLog((l) => l.startsWith('pids '));
    const queued = startTask(sys.clients, python(lost.session_id, 'print("never")'));
    // The second task is queued behind the first at the coordinator.
    await until(() => status(lost.session_id), (s) => s['info']['active_tasks'] === 2, 10_000, 50, 'two active tasks');
    expect(await eventually(() => pidsWithToken(token).length >= 2, 5_000)).toBe(true);

    const oldPid = sys.workerPid('worker-1');
    const from = up.lines.length;
    const killedAt = Date.now();
    process.kill(oldPid, 'SIGKILL');

    const r = await running.done;
    expect(Date.now() - killedAt).toBeLessThan(10_000);
    expect(r.result).toBeUndefined();
    expect(r.error).toMatchObject({ code: 'WORKER_LOST', retriable: true });
    expect(ends(r)).toBe(1);
    const q = await queued.done;
    expect(q.result).toBeUndefined();
    expect(q.error).toMatchObject({ code: 'WORKER_LOST', retriable: true });
    expect(ends(q)).toBe(1);
    const st = await unary(sys.clients.tasks, 'GetTaskStatus', { task_id: r.taskId });
    expect(st.state).toBe('errored');
    expect(st.error?.code).toBe('WORKER_LOST');

    // The sandboxed program and its grandchild died with their worker.
    expect(await eventually(() => pidsWithToken(token).length === 0, 10_000)).toBe(true);

    // The session is not final: it is never FAILED, whether its worker is still away or already back.
    const during = await status(lost.session_id);
    expect(during.session_id).toBe(lost.session_id);
    expect(during.state).not.toBe('SESSION_STATE_FAILED');
    expect(during['info']['failure_reason']).toBe('');

    // The other worker's sessions are untouched.
    expect((await status(kept.session_id)).state).toMatch(/READY|IDLE/);
    expect(ok(await runTask(sys.clients, python(kept.session_id, 'print("kept")')), 'run_python')['stdout']).toBe('kept\n');

    // `up` restarts the worker, which registers again and adopts the session from disk.
    await up.waitForLine((l) => l.msg === 'child exited; restarting' && l['child'] === 'worker-1', 30_000, from);
    await sys.waitForStream(up, 'worker-1', from, 60_000);
    const newPid = sys.workerPid('worker-1');
    expect(newPid).not.toBe(oldPid);
    expect(isAlive(oldPid)).toBe(false);
    const adopted = await up.waitForLine((l) => l.msg === 'adopted the sessions found on disk' && l.workerId === 'worker-1', 10_000, from);
    expect(adopted['adopted']).toEqual([lost.session_id]);

    // Reachable again on worker-1 (READY before any task is a todo in system-restarts.test.ts: that report can be lost).
    await until(() => status(lost.session_id), (s) => s.worker_id === 'worker-1' && s.unreachableSinceMs === 0 && s.state !== 'SESSION_STATE_FAILED', 30_000, 100, 'the session reachable on its restarted worker');
    expect(ok(await runTask(sys.clients, { session_id: lost.session_id, typed_request: { fs_read: { path: 'notes/kept.txt' } } }), 'fs_read')['contents']).toBe('written before the kill\n');
    const probe = ok(await runTask(sys.clients, python(lost.session_id, 'import lost_pkg\nprint(lost_pkg.VERSION, lost_pkg.value)')), 'run_python');
    expect(probe['stdout']).toBe('2.7.1 lost_pkg-2.7.1\n');
    const back = await settledStatus(sys.clients, lost.session_id);
    expect(back.session_id).toBe(lost.session_id);
    expect(back.worker_id).toBe('worker-1');
    expect(back.state).toBe('SESSION_STATE_READY');
    expect(back.restartedAtMs).toBeGreaterThanOrEqual(killedAt);
    expect(back['info']['survival_note']).toMatch(/restart/);
    expect(back['info']['survival_note']).toMatch(/files/);
    expect(back.metadata).toEqual({ owner: 'alice', stage: 'before-kill' });
    expect((await unary(S(), 'GetSessionMetadata', { session_id: lost.session_id })).metadata).toEqual({ owner: 'alice', stage: 'before-kill' });

    // Placement counts the adopted session: worker-1 holds one, worker-2 two, so a new session lands on worker-1.
    const fresh = await unary(S(), 'CreateSession', {});
    expect(fresh.worker_id).toBe('worker-1');
    expect(ok(await runTask(sys.clients, python(fresh.session_id, 'print("back")')), 'run_python')['stdout']).toBe('back\n');

    // Only DestroySession removes a workspace.
    expect(existsSync(lost.workspace_path)).toBe(true);
    expect((await unary(S(), 'DestroySession', { session_id: lost.session_id })).destroyed).toBe(true);
    expect(await eventually(() => !existsSync(lost.workspace_path), 10_000)).toBe(true);
    for (const s of [kept, kept2, fresh]) await unary(S(), 'DestroySession', { session_id: s.session_id });
  });

  it('a frozen worker (SIGSTOP) is declared lost when its heartbeats stop, and on SIGCONT registers again with its sessions', async () => {
    const s = await unary(S(), 'CreateSession', { worker_id: 'worker-2', metadata: { frozen: 'yes' } });
    ok(await call(s.session_id, 'fs_write', { path: 'frozen.txt', contents: 'still here' }), 'fs_write');
    const token = uniqueToken('sigstop');
    const t = startTask(sys.clients, python(s.session_id, stubborn, { args: [token] }));
    await t.waitForLog((l) => l.startsWith('pids '));
    const pid = sys.workerPid('worker-2');
    const from = up.lines.length;
    const stoppedAt = Date.now();
    process.kill(pid, 'SIGSTOP');
    try {
      const r = await t.done;
      // Heartbeat interval 1 s, two misses: the coordinator gives up within a few seconds.
      expect(Date.now() - stoppedAt).toBeLessThan(15_000);
      expect(r.error).toMatchObject({ code: 'WORKER_LOST', retriable: true });
      expect(ends(r)).toBe(1);

      // Unreachable, not final: the last state it reported (BUSY shows READY: its task ended here), and new work refused UNAVAILABLE.
      const away = await status(s.session_id);
      expect(away.state).toBe('SESSION_STATE_READY');
      expect(away.unreachableSinceMs).toBeGreaterThanOrEqual(stoppedAt - 1_000);
      expect(away['info']['failure_reason']).toBe('');
      const refused = await runTask(sys.clients, python(s.session_id, 'print(1)'), 15_000);
      expect(refused.result).toBeUndefined();
      expect(refused.status?.code, refused.status?.details).toBe(grpc.status.UNAVAILABLE);
      expect(refused.status?.details).toContain('unreachable');
      const err = await grpcError(unary(S(), 'CreateSession', { worker_id: 'worker-2' }));
      expect(err.code).toBe(grpc.status.NOT_FOUND);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // Resumed, it finds out it was forgotten and registers again (same process), listing its session.
    await sys.waitForStream(up, 'worker-2', from, 60_000);
    expect(sys.workerPid('worker-2')).toBe(pid);
    // The task it was running was ended at the coordinator; the worker stops it too when it registers again.
    expect(await eventually(() => pidsWithToken(token).length === 0, 15_000)).toBe(true);

    const back = await until(() => status(s.session_id), (x) => x.state === 'SESSION_STATE_READY' && x.unreachableSinceMs === 0, 30_000, 100, 'the session reachable again');
    expect(back.worker_id).toBe('worker-2');
    expect(back.metadata).toEqual({ frozen: 'yes' });
    expect(ok(await call(s.session_id, 'fs_read', { path: 'frozen.txt' }), 'fs_read')['contents']).toBe('still here');
    expect(ok(await runTask(sys.clients, python(s.session_id, 'print("resumed")')), 'run_python')['stdout']).toBe('resumed\n');
    const again = await unary(S(), 'CreateSession', { worker_id: 'worker-2' });
    expect(ok(await runTask(sys.clients, python(again.session_id, 'print("new")')), 'run_python')['stdout']).toBe('new\n');
    for (const id of [s.session_id, again.session_id]) await unary(S(), 'DestroySession', { session_id: id });
  });
});
