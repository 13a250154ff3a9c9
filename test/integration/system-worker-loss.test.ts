/**
 * Losing a worker, with real processes: `codegen-mcp up` with two workers; one is killed with
 * SIGKILL mid-task (its task ends WORKER_LOST within seconds, its session FAILED, and `up`
 * restarts it, which registers again), and one is frozen with SIGSTOP (heartbeats stop).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, isAlive, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { grpc, grpcError, python, replyOf, runTask, startTask, TestSystem, unary, type SystemProcess } from '../helpers/system.js';

const stubborn = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'python', 'stubborn.py'), 'utf8');

let sys: TestSystem;
let up: SystemProcess;

beforeAll(async () => {
  sys = new TestSystem({ label: 'loss' });
  up = await sys.startUp(2, { HEARTBEAT_INTERVAL_SECONDS: '1', HEARTBEAT_MISSES: '2' });
}, 120_000);

afterAll(async () => {
  await sys?.stop();
}, 120_000);

const state = async (sessionId: string): Promise<string> => (await unary(sys.clients.sessions, 'GetSessionStatus', { session_id: sessionId })).state;

describe('losing a worker', () => {
  it('a worker killed with SIGKILL mid-task: WORKER_LOST within seconds, session FAILED, restart re-registers', async () => {
    const lost = await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'worker-1' });
    const kept = await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'worker-2' });
    expect(lost.worker_id).toBe('worker-1');

    const token = uniqueToken('sigkill');
    const running = startTask(sys.clients, python(lost.session_id, stubborn, { args: [token] }));
    await running.waitForLog((l) => l.startsWith('pids '));
    const queued = startTask(sys.clients, python(lost.session_id, 'print("never")'));
    // Wait until the coordinator has the second task queued behind the first.
    for (let i = 0; i < 100 && (await unary(sys.clients.sessions, 'GetSessionStatus', { session_id: lost.session_id })).recent_tasks.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    expect((await unary(sys.clients.sessions, 'GetSessionStatus', { session_id: lost.session_id })).info.active_tasks).toBe(2);
    expect(pidsWithToken(token).length).toBeGreaterThanOrEqual(2);

    const oldPid = sys.workerPid('worker-1');
    const from = up.lines.length;
    const killedAt = Date.now();
    process.kill(oldPid, 'SIGKILL');

    const r = await running.done;
    const elapsed = Date.now() - killedAt;
    expect(r.result).toBeUndefined();
    expect(r.error).toMatchObject({ code: 'WORKER_LOST', retriable: true });
    expect(elapsed).toBeLessThan(10_000);
    const q = await queued.done;
    expect(q.result).toBeUndefined();
    expect(q.error).toMatchObject({ code: 'WORKER_LOST', retriable: true });

    // The sandboxed program died with its worker.
    expect(await eventually(() => pidsWithToken(token).length === 0, 10_000)).toBe(true);

    expect(await state(lost.session_id)).toBe('SESSION_STATE_FAILED');
    const after = await runTask(sys.clients, python(lost.session_id, 'print(1)'));
    expect(after.result).toBeUndefined();
    expect(after.status?.code, after.status?.details).toBe(grpc.status.FAILED_PRECONDITION);
    expect(after.status?.details).toMatch(/FAILED/);
    const st = await unary(sys.clients.tasks, 'GetTaskStatus', { task_id: r.taskId });
    expect(st.state).toBe('errored');

    // The other worker's session is untouched.
    expect(await state(kept.session_id)).toMatch(/READY|IDLE/);
    expect(replyOf(await runTask(sys.clients, python(kept.session_id, 'print("kept")')), 'run_python')['stdout']).toBe('kept\n');

    // `up` restarts the worker, which registers again; a new session lands on it.
    await up.waitForLine((l) => l.msg === 'child exited; restarting' && l['child'] === 'worker-1', 30_000, from);
    await sys.waitForStream(up, 'worker-1', from, 60_000);
    const newPid = sys.workerPid('worker-1');
    expect(newPid).not.toBe(oldPid);
    expect(isAlive(oldPid)).toBe(false);
    // The restarted worker removed the workspace of the session it lost: nothing leaks on disk.
    expect(lost.workspace_path).toBeTruthy();
    expect(existsSync(lost.workspace_path)).toBe(false);
    const fresh = await unary(sys.clients.sessions, 'CreateSession', {});
    expect(fresh.worker_id).toBe('worker-1'); // worker-2 holds one session, worker-1 none
    expect(replyOf(await runTask(sys.clients, python(fresh.session_id, 'print("back")')), 'run_python')['stdout']).toBe('back\n');

    // The failed session can still be destroyed.
    expect((await unary(sys.clients.sessions, 'DestroySession', { session_id: lost.session_id })).destroyed).toBe(true);
    for (const s of [kept, fresh]) await unary(sys.clients.sessions, 'DestroySession', { session_id: s.session_id });
  });

  it('a frozen worker (SIGSTOP) is declared lost when its heartbeats stop, and registers again when it resumes', async () => {
    const s = await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'worker-2' });
    const t = startTask(sys.clients, python(s.session_id, 'import time\nprint("started", flush=True)\ntime.sleep(60)'));
    await t.waitForLog((l) => l === 'started');
    const pid = sys.workerPid('worker-2');
    const from = up.lines.length;
    const stoppedAt = Date.now();
    process.kill(pid, 'SIGSTOP');
    try {
      const r = await t.done;
      // Heartbeat interval 1 s, two misses: the coordinator gives up within a few seconds.
      expect(Date.now() - stoppedAt).toBeLessThan(15_000);
      expect(r.error).toMatchObject({ code: 'WORKER_LOST', retriable: true });
      expect(await state(s.session_id)).toBe('SESSION_STATE_FAILED');
      const err = await grpcError(unary(sys.clients.sessions, 'CreateSession', { worker_id: 'worker-2' }));
      expect(err.code).toBe(grpc.status.NOT_FOUND);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // Resumed, it finds out it was forgotten and registers again (same process).
    await sys.waitForStream(up, 'worker-2', from, 60_000);
    expect(sys.workerPid('worker-2')).toBe(pid);
    const again = await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'worker-2' });
    expect(replyOf(await runTask(sys.clients, python(again.session_id, 'print("resumed")')), 'run_python')['stdout']).toBe('resumed\n');
    for (const id of [s.session_id, again.session_id]) await unary(sys.clients.sessions, 'DestroySession', { session_id: id });
  });
});
