/**
 * Restarts that lose nothing, with real processes (a coordinator and workers started one by one,
 * real gRPC on 127.0.0.1, real Python in bubblewrap when it is there):
 * - a worker killed with SIGKILL, or stopped with SIGTERM, and started again on the same
 *   BASE_WORKSPACE: same session ids, files, installed packages and metadata;
 * - a coordinator killed with SIGKILL and started again on the same port: it rebuilds its view
 *   from the workers' registrations, and answers UNAVAILABLE ("recovering") meanwhile;
 * - two workers on one BASE_WORKSPACE: a session is adopted only once its owner is gone;
 * - an injected crash of the session actors (CODEGEN_TEST_FAULTS, SIGUSR2);
 * - bad input from a worker: malformed registrations, a duplicate registration, reports about
 *   sessions the coordinator does not know.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, isAlive, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { grpc, grpcError, python, replyOf, runTask, sessionStatus, settledStatus, startTask, TestSystem, unary, until, type SystemProcess, type TaskRun, type Wire } from '../helpers/system.js';
import type { CoordinatorClients } from '../../src/wire/client.js';
import { buildWheel } from '../helpers/wheels.js';

const stubborn = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'python', 'stubborn.py'), 'utf8');
const fast = { HEARTBEAT_INTERVAL_SECONDS: '1', HEARTBEAT_MISSES: '2', HTTP_ENABLED: 'false' };

/** The typed reply of a task that must have succeeded. */
function ok(r: TaskRun, tool: string): Wire {
  expect(r.status?.details, 'gRPC status').toBeUndefined();
  expect(r.error, 'task error').toBeUndefined();
  expect(r.result?.['status']).toBe('STATUS_SUCCESS');
  return replyOf(r, tool);
}

const tool = (clients: CoordinatorClients, sessionId: string, name: string, input: Wire) => runTask(clients, { session_id: sessionId, typed_request: { [name]: input } });

/** How many terminal payloads (result or error) a task's stream carried. */
const ends = (r: TaskRun) => r.responses.filter((x) => x['payload'] === 'result' || x['payload'] === 'error').length;

/** The session listing as {id: {worker, metadata, reachable}}. */
async function listing(clients: CoordinatorClients): Promise<Record<string, { worker: string; metadata: Record<string, string>; reachable: boolean }>> {
  const res = await unary(clients.sessions, 'ListSessions', {}, { deadlineMs: 5_000 });
  return Object.fromEntries((res.sessions as Wire[]).map((s) => [s['session_id'], { worker: s['worker_id'], metadata: s['metadata'], reachable: Number(s['info']['worker_unreachable_since_ms']) === 0 }]));
}

/** Every listed session's worker is connected (its task stream open): tasks can be sent. */
const allReachable = (l: Record<string, { reachable: boolean }>, n: number) => Object.keys(l).length === n && Object.values(l).every((v) => v.reachable);

/** A task the system must refuse with gRPC status UNAVAILABLE (no task run). */
async function refusedUnavailable(clients: CoordinatorClients, sessionId: string, mention: string): Promise<void> {
  const r = await runTask(clients, python(sessionId, 'print("must not run")'), 15_000);
  expect(r.result, 'the task must not run').toBeUndefined();
  expect(r.error, 'refused before it is a task').toBeUndefined();
  expect(grpc.status[r.status?.code ?? 0], r.status?.details).toBe('UNAVAILABLE');
  expect(r.status?.details).toContain(mention);
}

/** The worker's latest "adopted the sessions found on disk" line (from `from` on), or the "worker started" line's count when it adopted nothing. */
async function adoption(w: SystemProcess): Promise<{ adopted: string[]; heldByOthers: number }> {
  const started = await w.waitForLine((l) => l.msg === 'worker started', 30_000);
  const line = w.lines.find((l) => l.msg === 'adopted the sessions found on disk');
  expect(started['adopted']).toBe(line ? (line['adopted'] as string[]).length : 0);
  return line ? { adopted: [...(line['adopted'] as string[])].sort(), heldByOthers: Number(line['heldByOthers']) } : { adopted: [], heldByOthers: 0 };
}

/** The worker's lock helper (a child running lock-helper.py). */
function lockHelperOf(workerPid: number): number | undefined {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === workerPid && readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('lock-helper.py')) return Number(name);
    } catch {
      // gone
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------

describe('a worker that restarts on the same BASE_WORKSPACE', () => {
  let sys: TestSystem;
  let coordinator: SystemProcess;
  let wheels: string;
  const S = () => sys.clients.sessions;
  const status = (id: string) => sessionStatus(sys.clients, id);

  beforeAll(async () => {
    sys = new TestSystem({ label: 'restarts' });
    wheels = path.join(sys.root, 'wheels');
    buildWheel(wheels, 'survivor_pkg', '3.1.4');
    coordinator = await sys.startCoordinator(fast);
  }, 120_000);

  afterAll(async () => {
    await sys?.stop();
  }, 120_000);

  it('after a SIGKILL: its tasks end WORKER_LOST, its sessions stay (unreachable, refusing tasks with UNAVAILABLE), and when it starts again they are back with files, package and metadata', async () => {
    const env = { PIP_FIND_LINKS: wheels, PIP_NO_INDEX: '1' };
    const worker = await sys.startWorker('kill-w', env);
    const s = await unary(S(), 'CreateSession', { worker_id: 'kill-w', user_id: 'user-7', metadata: { team: 'blue' } });
    const quiet = await unary(S(), 'CreateSession', { worker_id: 'kill-w', metadata: { role: 'quiet' } });
    ok(await tool(sys.clients, s.session_id, 'fs_write', { path: 'data/before.txt', contents: 'from before the kill', create_dirs: true }), 'fs_write');
    ok(await tool(sys.clients, quiet.session_id, 'fs_write', { path: 'q.txt', contents: 'quiet file' }), 'fs_write');
    const installed = ok(await tool(sys.clients, s.session_id, 'pkg_install', { packages: ['survivor_pkg==3.1.4'] }), 'pkg_install');
    expect(installed['installed']).toEqual([expect.objectContaining({ version: '3.1.4' })]);
    expect((await unary(S(), 'UpdateSessionMetadata', { session_id: s.session_id, metadata: { phase: 'one' } })).metadata).toEqual({ team: 'blue', phase: 'one' });

    const token = uniqueToken('restart-kill');
    const running = startTask(sys.clients, python(s.session_id, stubborn, { args: [token] }));
    await running.waitForLog((l) => l.startsWith('pids '));
    const queued = startTask(sys.clients, python(s.session_id, 'print("never")'));
    await until(() => status(s.session_id), (x) => x['info']['active_tasks'] === 2, 10_000, 50, 'two active tasks');

    const killedAt = Date.now();
    worker.signal('SIGKILL');
    const [r, q] = await Promise.all([running.done, queued.done]);
    expect(Date.now() - killedAt).toBeLessThan(10_000);
    for (const t of [r, q]) {
      expect(t.result).toBeUndefined();
      expect(t.error).toMatchObject({ code: 'WORKER_LOST', retriable: true });
      expect(ends(t)).toBe(1);
    }
    expect(await eventually(() => pidsWithToken(token).length === 0, 10_000)).toBe(true);
    expect(await worker.exited).toEqual({ code: null, signal: 'SIGKILL' });

    // While the worker is away: the sessions answer (not NOT_FOUND, not FAILED), marked unreachable, and refuse new work with UNAVAILABLE.
    const away = await status(s.session_id);
    expect(away.state).toBe('SESSION_STATE_READY'); // it was BUSY; its task ended here
    expect(away.worker_id).toBe('kill-w');
    expect(away.unreachableSinceMs).toBeGreaterThanOrEqual(killedAt - 1_000);
    expect(away['info']['failure_reason']).toBe('');
    expect(away.metadata).toEqual({ team: 'blue', phase: 'one' });
    const quietAway = await status(quiet.session_id);
    expect(quietAway.state).toMatch(/READY|IDLE/);
    expect(quietAway.unreachableSinceMs).toBeGreaterThan(0);
    await refusedUnavailable(sys.clients, s.session_id, 'unreachable');
    const metaErr = await grpcError(unary(S(), 'UpdateSessionMetadata', { session_id: s.session_id, metadata: { phase: 'two' } }));
    expect(grpc.status[metaErr.code]).toBe('UNAVAILABLE');
    expect((await unary(S(), 'GetSessionMetadata', { session_id: s.session_id })).metadata).toEqual({ team: 'blue', phase: 'one' });
    expect(Object.keys(await listing(sys.clients)).sort()).toEqual([s.session_id, quiet.session_id].sort());
    expect((await grpcError(unary(S(), 'CreateSession', { worker_id: 'kill-w' }))).code).toBe(grpc.status.NOT_FOUND);
    expect(existsSync(s.workspace_path)).toBe(true);

    // Started again (same WORKER_ID and BASE_WORKSPACE): it adopts both sessions.
    const again = await sys.startWorker('kill-w', env);
    expect(await adoption(again)).toEqual({ adopted: [s.session_id, quiet.session_id].sort(), heldByOthers: 0 });
    await until(() => status(s.session_id), (x) => x.unreachableSinceMs === 0, 15_000, 100, 'the session reachable again');
    expect(ok(await runTask(sys.clients, { session_id: s.session_id, typed_request: { fs_read: { path: 'data/before.txt' } } }), 'fs_read')['contents']).toBe('from before the kill');
    expect(ok(await runTask(sys.clients, python(s.session_id, 'import survivor_pkg\nprint(survivor_pkg.VERSION)')), 'run_python')['stdout']).toBe('3.1.4\n');
    const back = await settledStatus(sys.clients, s.session_id);
    expect(back.session_id).toBe(s.session_id);
    expect(back.worker_id).toBe('kill-w');
    expect(back.state).toBe('SESSION_STATE_READY');
    expect(back.metadata).toEqual({ team: 'blue', phase: 'one' });
    expect(back['info']['user_id']).toBe('user-7');
    expect(back.restartedAtMs).toBeGreaterThanOrEqual(killedAt);
    expect(back['info']['survival_note']).toMatch(/worker restarted/);
    // Metadata changes work again, and reach the disk.
    expect((await unary(S(), 'UpdateSessionMetadata', { session_id: s.session_id, metadata: { phase: 'two' } })).metadata).toEqual({ team: 'blue', phase: 'two' });

    expect(ok(await runTask(sys.clients, { session_id: quiet.session_id, typed_request: { fs_read: { path: 'q.txt' } } }), 'fs_read')['contents']).toBe('quiet file');
    const quietBack = await status(quiet.session_id);
    expect(quietBack.metadata).toEqual({ role: 'quiet' });
    expect(quietBack.restartedAtMs).toBeGreaterThanOrEqual(killedAt);

    for (const id of [s.session_id, quiet.session_id]) await unary(S(), 'DestroySession', { session_id: id });
    expect(await eventually(() => !existsSync(s.workspace_path), 10_000)).toBe(true);
    again.signal('SIGTERM');
    expect(await again.exited).toEqual({ code: 0, signal: null });
  });

  it(
    'a task sent right after its worker re-registered with an adopted session runs (the registration names the run of each session actor, so only tasks sent to an earlier run end)',
    async () => {
      const w = await sys.startWorker('eager-w');
      const s = await unary(S(), 'CreateSession', { worker_id: 'eager-w' });
      ok(await tool(sys.clients, s.session_id, 'fs_write', { path: 'e.txt', contents: 'eager' }), 'fs_write');
      w.signal('SIGKILL');
      await w.exited;
      const from = coordinator.lines.length;
      await sys.startWorker('eager-w', {}, false);
      await sys.waitForStream(coordinator, 'eager-w', from);
      // As soon as the coordinator sends it tasks (UNAVAILABLE only until the connection is online).
      const r = await until(() => tool(sys.clients, s.session_id, 'fs_read', { path: 'e.txt' }), (x) => x.status?.code !== grpc.status.UNAVAILABLE, 5_000, 20, 'the task accepted');
      expect(ok(r, 'fs_read')['contents']).toBe('eager');
      await unary(S(), 'DestroySession', { session_id: s.session_id });
    },
  );

  it(
    'an adopted session is READY at the coordinator, with restarted_at_ms and survival_note, once its worker has registered, without any task (reports made before the stream opens are sent when it does)',
    async () => {
      const w = await sys.startWorker('ready-w');
      const s = await unary(S(), 'CreateSession', { worker_id: 'ready-w' });
      const killedAt = Date.now();
      w.signal('SIGKILL');
      await w.exited;
      await sys.startWorker('ready-w');
      const back = await until(() => status(s.session_id), (x) => x.state === 'SESSION_STATE_READY' && x.unreachableSinceMs === 0 && x.restartedAtMs >= killedAt, 10_000, 100, 'READY with its restart time, no task sent');
      expect(back['info']['survival_note']).toMatch(/worker restarted/);
      await unary(S(), 'DestroySession', { session_id: s.session_id });
    },
  );

  it('after a SIGTERM: the running short task completes, the worker deregisters and exits 0, and when it starts again its session is back with its files, package and metadata', async () => {
    const env = { DRAIN_TIMEOUT_SECONDS: '5', PIP_FIND_LINKS: wheels, PIP_NO_INDEX: '1' };
    const worker = await sys.startWorker('term-w', env);
    const s = await unary(S(), 'CreateSession', { worker_id: 'term-w', metadata: { kept: 'on-disk' } });
    ok(await tool(sys.clients, s.session_id, 'fs_write', { path: 'term.txt', contents: 'survives SIGTERM' }), 'fs_write');
    ok(await tool(sys.clients, s.session_id, 'pkg_install', { packages: ['survivor_pkg==3.1.4'] }), 'pkg_install');
    expect((await unary(S(), 'UpdateSessionMetadata', { session_id: s.session_id, metadata: { phase: 'before' } })).metadata).toEqual({ kept: 'on-disk', phase: 'before' });
    const t = startTask(sys.clients, python(s.session_id, 'import time\nprint("started", flush=True)\ntime.sleep(1.5)\nprint("finished")'));
    await t.waitForLog((l) => l === 'started');

    const from = coordinator.lines.length;
    const termAt = Date.now();
    worker.signal('SIGTERM');
    const r = await t.done;
    expect(r.result?.['status'], JSON.stringify({ error: r.error, status: r.status?.details })).toBe('STATUS_SUCCESS');
    expect(replyOf(r, 'run_python')['stdout']).toBe('started\nfinished\n');
    expect(ends(r)).toBe(1);
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    expect(worker.lines.find((l) => l.msg === 'shutting down')?.['signal']).toBe('SIGTERM');
    await coordinator.waitForLine((l) => l.msg === 'worker deregistered' && l.workerId === 'term-w', 5_000, from);

    // Away: the session stays (its files on disk), unreachable, refusing work; the worker is gone from placement.
    const away = await status(s.session_id);
    // It comes back READY with its worker (a shutdown drain is not a destroy): shown READY, with when it became unreachable.
    expect(away.state).toBe('SESSION_STATE_READY');
    expect(away['info']['failure_reason']).toBe('');
    expect(away.unreachableSinceMs).toBeGreaterThanOrEqual(termAt - 1_000);
    await refusedUnavailable(sys.clients, s.session_id, 'unreachable');
    expect((await grpcError(unary(S(), 'CreateSession', { worker_id: 'term-w' }))).code).toBe(grpc.status.NOT_FOUND);
    expect(readFileSync(path.join(s.workspace_path, 'term.txt'), 'utf8')).toBe('survives SIGTERM');

    const again = await sys.startWorker('term-w', env);
    expect(await adoption(again)).toEqual({ adopted: [s.session_id], heldByOthers: 0 });
    await until(() => status(s.session_id), (x) => x.unreachableSinceMs === 0, 15_000, 100, 'the session reachable again');
    expect(ok(await runTask(sys.clients, { session_id: s.session_id, typed_request: { fs_read: { path: 'term.txt' } } }), 'fs_read')['contents']).toBe('survives SIGTERM');
    expect(ok(await runTask(sys.clients, python(s.session_id, 'import survivor_pkg\nprint(survivor_pkg.VERSION)')), 'run_python')['stdout']).toBe('3.1.4\n');
    const back = await settledStatus(sys.clients, s.session_id);
    expect(back.state).toBe('SESSION_STATE_READY');
    expect(back.worker_id).toBe('term-w');
    expect(back.metadata).toEqual({ kept: 'on-disk', phase: 'before' });
    expect(back.restartedAtMs).toBeGreaterThanOrEqual(termAt);
    expect(back['info']['survival_note']).not.toBe('');
    await unary(S(), 'DestroySession', { session_id: s.session_id });
    again.signal('SIGTERM');
    expect(await again.exited).toEqual({ code: 0, signal: null });
  });

  it('an injected crash of the session actors (SIGUSR2 with CODEGEN_TEST_FAULTS): the running task ends WORKER_LOST once, and the session restarts from its description with its files', async () => {
    const worker = await sys.startWorker('fault-w', { CODEGEN_TEST_FAULTS: 'true' });
    const s = await unary(S(), 'CreateSession', { worker_id: 'fault-w', metadata: { fault: 'injected' } });
    ok(await tool(sys.clients, s.session_id, 'fs_write', { path: 'fault.txt', contents: 'survives the crash' }), 'fs_write');
    expect((await status(s.session_id)).restartedAtMs).toBe(0);
    const token = uniqueToken('fault');
    const running = startTask(sys.clients, python(s.session_id, stubborn, { args: [token] }));
    await running.waitForLog((l) => l.startsWith('pids '));
    expect(await eventually(() => pidsWithToken(token).length >= 2, 5_000)).toBe(true);

    const faultAt = Date.now();
    process.kill(worker.pid, 'SIGUSR2');
    const r = await running.done;
    // The coordinator learns of the restart from the session's report (a newer restarted_at_ms) and ends the task it followed.
    expect(r.result).toBeUndefined();
    expect(r.error).toMatchObject({ code: 'WORKER_LOST', retriable: true });
    expect(r.error?.['message']).toMatch(/restarted/);
    expect(ends(r)).toBe(1);
    expect(Date.now() - faultAt).toBeLessThan(10_000);
    // (That its sandboxed program dies too is the todo below.)

    const back = await until(() => status(s.session_id), (x) => x.restartedAtMs > 0 && x.state === 'SESSION_STATE_READY', 15_000, 100, 'the session restarted and READY');
    expect(back.restartedAtMs).toBeGreaterThanOrEqual(faultAt);
    expect(back['info']['survival_note']).toMatch(/actor/);
    expect(back.unreachableSinceMs).toBe(0);
    expect(back.metadata).toEqual({ fault: 'injected' });
    // Only the session actor restarted, not the worker process.
    expect(worker.exit).toBeUndefined();
    expect(ok(await tool(sys.clients, s.session_id, 'fs_read', { path: 'fault.txt' }), 'fs_read')['contents']).toBe('survives the crash');
    expect(ok(await runTask(sys.clients, python(s.session_id, 'print("after the crash")')), 'run_python')['stdout']).toBe('after the crash\n');
    const st = await unary(sys.clients.tasks, 'GetTaskStatus', { task_id: r.taskId });
    expect(st.state).toBe('errored');
    expect(st.error?.code).toBe('WORKER_LOST');
    await unary(S(), 'DestroySession', { session_id: s.session_id });
    worker.signal('SIGTERM');
    expect(await worker.exited).toEqual({ code: 0, signal: null });
  });

  it(
    "kills the sandboxed program of the task a crashed session actor was running (a failed actor's children are stopped: XState v5 leaves them running)",
    async () => {
      const worker = await sys.startWorker('fault-w2', { CODEGEN_TEST_FAULTS: 'true' });
      const s = await unary(S(), 'CreateSession', { worker_id: 'fault-w2' });
      const token = uniqueToken('fault-kill');
      const running = startTask(sys.clients, python(s.session_id, stubborn, { args: [token] }));
      await running.waitForLog((l) => l.startsWith('pids '));
      expect(await eventually(() => pidsWithToken(token).length >= 2, 5_000)).toBe(true);
      process.kill(worker.pid, 'SIGUSR2');
      await running.done;
      expect(await eventually(() => pidsWithToken(token).length === 0, 10_000)).toBe(true);
      await unary(S(), 'DestroySession', { session_id: s.session_id });
    },
  );

  describe('bad input from a worker', () => {
    let real: SystemProcess;
    let held: { session_id: string; workspace_path: string };
    const W = () => sys.clients.workers;

    beforeAll(async () => {
      real = await sys.startWorker('real-w');
      held = await unary(S(), 'CreateSession', { worker_id: 'real-w', metadata: { owner: 'real' } });
      ok(await tool(sys.clients, held.session_id, 'fs_write', { path: 'mine.txt', contents: 'real data' }), 'fs_write');
    }, 60_000);

    /** The real worker's session is unchanged and usable, and nothing of it left the disk. */
    async function heldIntact(): Promise<void> {
      const st = await settledStatus(sys.clients, held.session_id);
      expect(st.worker_id).toBe('real-w');
      expect(st.state).toMatch(/READY|IDLE/);
      expect(st.unreachableSinceMs).toBe(0);
      expect(st.metadata).toEqual({ owner: 'real' });
      expect(readFileSync(path.join(held.workspace_path, 'mine.txt'), 'utf8')).toBe('real data');
      expect(ok(await tool(sys.clients, held.session_id, 'fs_read', { path: 'mine.txt' }), 'fs_read')['contents']).toBe('real data');
    }

    const register = (req: Wire) => unary(W(), 'RegisterWorker', { max_sessions: 2, hostname: 'test', isolation: 'none', ...req }, { deadlineMs: 10_000 });

    it('refuses a registration listing a malformed session with INVALID_ARGUMENT naming the field, and nothing else changes', async () => {
      const valid = { session_id: 'sess-rogue-valid-1', state: 'SESSION_STATE_READY' };
      const cases: Array<[Wire[], string]> = [
        [[{ session_id: 'bad id/..', state: 'SESSION_STATE_READY' }], 'sessions[0].session_id'],
        [[{ session_id: 'sess-rogue-2', state: 42 }], 'sessions[0].state'],
        [[{ session_id: 'sess-rogue-3' }], 'sessions[0].state'],
        [[valid, { session_id: '', state: 'SESSION_STATE_READY' }], 'sessions[1].session_id'],
        [[valid, { session_id: 'sess-rogue-4', state: 'SESSION_STATE_READY', metadata_version: '-1' }], 'sessions[1].metadata_version'],
        [[valid, valid], 'sessions[1].session_id'],
        [[{ session_id: held.session_id, state: 'SESSION_STATE_FAILED', config: { env_vars: { '1BAD': 'x' } } }], 'sessions[0].config.env_vars'],
      ];
      for (const [sessions, field] of cases) {
        const err = await grpcError(register({ worker_id: 'rogue-a', instance_id: 'inst-rogue-a', sessions }));
        expect(grpc.status[err.code], `${JSON.stringify(sessions)}: ${err.details}`).toBe('INVALID_ARGUMENT');
        expect(err.details, JSON.stringify(sessions)).toContain(field);
      }
      // None of it registered a worker or a session.
      expect((await grpcError(unary(S(), 'CreateSession', { worker_id: 'rogue-a' }))).code).toBe(grpc.status.NOT_FOUND);
      expect((await grpcError(unary(S(), 'GetSessionStatus', { session_id: 'sess-rogue-valid-1' }))).code).toBe(grpc.status.NOT_FOUND);
      expect(coordinator.lines.filter((l) => l.msg === 'worker registered' && l.workerId === 'rogue-a')).toEqual([]);
      await heldIntact();
    });

    it(
      'logs a registration refused for a malformed session list ("a malformed report from a worker gets a clear error and a log line")',
      async () => {
        const from = coordinator.lines.length;
        await grpcError(register({ worker_id: 'rogue-log', instance_id: 'inst-rogue-log', sessions: [{ session_id: 'bad id/..', state: 'SESSION_STATE_READY' }] }));
        const line = await coordinator.waitForLine((l) => l.msg === 'worker registration refused' && l.workerId === 'rogue-log', 5_000, from);
        expect((line['err'] as Wire)['code']).toBe('INVALID_ARGUMENT');
        expect((line['err'] as Wire)['message']).toContain('sessions[0].session_id');
      },
    );

    it('refuses a duplicate registration (same worker_id, another instance) with ALREADY_EXISTS; the real worker keeps its sessions and files', async () => {
      const from = coordinator.lines.length;
      const err = await grpcError(register({ worker_id: 'real-w', instance_id: 'inst-impostor', sessions: [] }));
      expect(grpc.status[err.code], err.details).toBe('ALREADY_EXISTS');
      expect(err.details).toContain('worker_id');
      expect(err.details).toContain('already connected');
      const logged = await coordinator.waitForLine((l) => l.msg === 'worker registration refused' && l.workerId === 'real-w', 5_000, from);
      expect((logged['err'] as Wire)['code']).toBe('ALREADY_EXISTS');
      // Accepted, an empty list would have failed the real worker's session; it is untouched, and its worker did not register again.
      await heldIntact();
      expect(coordinator.lines.slice(from).filter((l) => l.msg === 'worker registered')).toEqual([]);
      expect(real.exit).toBeUndefined();
    });

    it('logs and ignores reports on a task stream about sessions the coordinator does not know, and reports claiming another worker\'s session', async () => {
      const reg = await register({ worker_id: 'rogue-b', instance_id: 'inst-rogue-b', sessions: [] });
      const from = coordinator.lines.length;
      const call = W()['TaskStream'](new grpc.Metadata(), { deadline: new Date(Date.now() + 30_000) });
      const commands: Wire[] = [];
      call.on('data', (m: Wire) => commands.push(m));
      call.on('error', () => {});
      try {
        // Written as a worker would, including what no real worker sends: typed loosely on purpose.
        const send = (m: Wire) => call.write(m as never);
        send({ hello: { worker_id: 'rogue-b', registration_id: reg.registration_id } });
        await sys.waitForStream(coordinator, 'rogue-b', from, 10_000);
        const report = (id: string, extra: Wire = {}) => ({ session_report: { session_id: id, state: 'SESSION_STATE_READY', session: { session_id: id, state: 'SESSION_STATE_READY', metadata: { evil: 'yes' } }, ...extra } });
        send(report('sess-nobody-knows'));
        const line = await coordinator.waitForLine((l) => typeof l.msg === 'string' && l.msg.includes('a report about a session this coordinator does not know') && l['sessionId'] === 'sess-nobody-knows', 10_000, from);
        expect(line.workerId).toBe('rogue-b');
        // A report claiming the real worker's session (gone, and READY with other metadata).
        send(report(held.session_id, { gone: true }));
        send(report(held.session_id));
        await coordinator.waitForLine((l) => typeof l.msg === 'string' && l.msg.includes(`worker rogue-b reported session ${held.session_id}`) && l.msg.includes('ignored'), 10_000, from);
        // And a malformed one.
        send({ session_report: { session_id: 'x', session: { session_id: 'bad id/..', state: 'SESSION_STATE_READY' } } });
        await coordinator.waitForLine((l) => l.msg === 'dropped a malformed message from the worker' && l.workerId === 'rogue-b', 10_000, from);

        expect((await grpcError(unary(S(), 'GetSessionStatus', { session_id: 'sess-nobody-knows' }))).code).toBe(grpc.status.NOT_FOUND);
        const now = await listing(sys.clients);
        expect(now['sess-nobody-knows']).toBeUndefined();
        expect(Object.values(now).filter((v) => v.worker === 'rogue-b')).toEqual([]);
        expect(now[held.session_id]).toEqual({ worker: 'real-w', metadata: { owner: 'real' }, reachable: true });
        await heldIntact();
        expect(commands).toEqual([]); // nothing was sent to the rogue worker
      } finally {
        call.end();
      }
    });

    afterAll(async () => {
      await unary(S(), 'DestroySession', { session_id: held.session_id }).catch(() => {});
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe('a coordinator killed with SIGKILL and started again on the same port', () => {
  let sys: TestSystem;
  const workers: SystemProcess[] = [];
  const sessions: Array<{ session_id: string; worker_id: string }> = [];
  const S = () => sys.clients.sessions;

  beforeAll(async () => {
    sys = new TestSystem({ label: 'coord-restart' });
    await sys.startCoordinator({ ...fast, RECOVERY_GRACE_SECONDS: '15' });
    workers.push(await sys.startWorker('co-w1'), await sys.startWorker('co-w2'));
    for (const [i, w] of ['co-w1', 'co-w2'].entries()) {
      const s = await unary(S(), 'CreateSession', { worker_id: w, metadata: { n: String(i + 1) } });
      sessions.push(s);
      ok(await tool(sys.clients, s.session_id, 'fs_write', { path: 'c.txt', contents: `file of ${w}` }), 'fs_write');
    }
    await unary(S(), 'UpdateSessionMetadata', { session_id: sessions[0]!.session_id, metadata: { later: 'change' } });
  }, 120_000);

  afterAll(async () => {
    for (const w of workers) if (!w.exit) process.kill(w.pid, 'SIGCONT');
    await sys?.stop();
  }, 120_000);

  const expected = () => ({
    [sessions[0]!.session_id]: { worker: 'co-w1', metadata: { n: '1', later: 'change' }, reachable: true },
    [sessions[1]!.session_id]: { worker: 'co-w2', metadata: { n: '2' }, reachable: true },
  });

  it('lists the sessions with their metadata and runs a task in each within 10 s, answering UNAVAILABLE "recovering" for unknown ids meanwhile', async () => {
    const port = sys.grpcPort;
    const first = sys.coordinator!;
    first.signal('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });

    const second = await sys.startCoordinator({ ...fast, GRPC_PORT: String(port), RECOVERY_GRACE_SECONDS: '15' });
    const restartedAt = Date.now();
    expect(sys.grpcPort).toBe(port);
    // An id that never existed: during the grace it may not have been reported yet.
    const ghost = await grpcError(unary(S(), 'GetSessionStatus', { session_id: 'sess-never-existed-1' }, { deadlineMs: 5_000 }));
    expect(grpc.status[ghost.code], ghost.details).toBe('UNAVAILABLE');
    expect(ghost.details).toContain('recovering');

    const listed = await until(() => listing(sys.clients), (l) => allReachable(l, 2), 10_000, 100, 'both sessions listed, their workers connected');
    expect(listed).toEqual(expected());
    await Promise.all(
      sessions.map(async (s) => expect(ok(await tool(sys.clients, s.session_id, 'fs_read', { path: 'c.txt' }), 'fs_read')['contents']).toBe(`file of ${s.worker_id}`)),
    );
    expect(Date.now() - restartedAt).toBeLessThan(10_000);
    for (const w of ['co-w1', 'co-w2']) await sys.waitForStream(second, w, 0, 1_000);

    // Placement works again: a new session is made and runs; the workers keep their ids.
    const fresh = await unary(S(), 'CreateSession', {});
    expect(['co-w1', 'co-w2']).toContain(fresh.worker_id);
    expect(ok(await runTask(sys.clients, python(fresh.session_id, 'print("placed")')), 'run_python')['stdout']).toBe('placed\n');
    await unary(S(), 'DestroySession', { session_id: fresh.session_id });
    expect(workers.every((w) => w.exit === undefined)).toBe(true);
  });

  it('before the workers registered again, a known session id answers UNAVAILABLE mentioning recovering (not NOT_FOUND); after the grace an unknown id is NOT_FOUND', async () => {
    const port = sys.grpcPort;
    // Frozen workers cannot register with the new coordinator: the window is certain.
    for (const w of workers) process.kill(w.pid, 'SIGSTOP');
    try {
      const previous = sys.coordinator!;
      previous.signal('SIGKILL');
      await previous.exited;
      const graceSeconds = 3;
      // The grace starts in the process, after this: it cannot be over sooner than graceSeconds from here.
      const startedAt = Date.now();
      const third = await sys.startCoordinator({ ...fast, GRPC_PORT: String(port), RECOVERY_GRACE_SECONDS: String(graceSeconds) });
      const known = await grpcError(unary(S(), 'GetSessionStatus', { session_id: sessions[0]!.session_id }, { deadlineMs: 5_000 }));
      expect(grpc.status[known.code], known.details).toBe('UNAVAILABLE');
      expect(known.details).toContain('recovering');
      expect(known.details).toContain(sessions[0]!.session_id);
      const task = await runTask(sys.clients, python(sessions[1]!.session_id, 'print(1)'), 5_000);
      expect(grpc.status[task.status?.code ?? 0], task.status?.details).toBe('UNAVAILABLE');
      expect(task.status?.details).toContain('recovering');
      expect(grpc.status[(await grpcError(unary(S(), 'GetSessionStatus', { session_id: 'sess-never-existed-2' }))).code]).toBe('UNAVAILABLE');
      expect(Date.now() - startedAt).toBeLessThan(graceSeconds * 1000);

      // Once the grace is over, an id nobody reported is gone.
      const gone = await until(
        () => grpcError(unary(S(), 'GetSessionStatus', { session_id: 'sess-never-existed-2' })),
        (e) => e.code === grpc.status.NOT_FOUND,
        graceSeconds * 1000 + 5_000,
        200,
        'NOT_FOUND after the grace',
      );
      expect(gone.details).toContain('sess-never-existed-2');
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(graceSeconds * 1000 - 100);
      expect(third.exit).toBeUndefined();
    } finally {
      for (const w of workers) process.kill(w.pid, 'SIGCONT');
    }
    const resumedAt = Date.now();
    const listed = await until(() => listing(sys.clients), (l) => allReachable(l, 2), 10_000, 100, 'both sessions listed after the workers resumed, their workers connected');
    expect(listed).toEqual(expected());
    for (const s of sessions) expect(ok(await tool(sys.clients, s.session_id, 'fs_read', { path: 'c.txt' }), 'fs_read')['contents']).toBe(`file of ${s.worker_id}`);
    expect(Date.now() - resumedAt).toBeLessThan(10_000);
  });
});

// ---------------------------------------------------------------------------------------------

describe('two workers on one BASE_WORKSPACE', () => {
  let sys: TestSystem;
  let coordinator: SystemProcess;
  let shared: string;
  const S = () => sys.clients.sessions;
  const status = (id: string) => sessionStatus(sys.clients, id);

  beforeAll(async () => {
    sys = new TestSystem({ label: 'shared-ws' });
    shared = path.join(sys.root, 'shared');
    coordinator = await sys.startCoordinator(fast);
  }, 120_000);

  afterAll(async () => {
    for (const p of sys.procs) if (!p.exit) process.kill(p.pid, 'SIGCONT');
    await sys?.stop();
  }, 120_000);

  it('adopt a session only once its owner is gone: not while it runs or is stalled (SIGSTOP), but after a SIGKILL', async () => {
    const on = { BASE_WORKSPACE: shared };
    const a = await sys.startWorker('share-a', on);
    const owned: Array<{ session_id: string; workspace_path: string }> = [];
    for (const i of [1, 2]) {
      const s = await unary(S(), 'CreateSession', { worker_id: 'share-a', metadata: { i: String(i) } });
      ok(await tool(sys.clients, s.session_id, 'fs_write', { path: 'owner.txt', contents: `made on share-a #${i}` }), 'fs_write');
      owned.push(s);
    }
    const ids = owned.map((s) => s.session_id).sort();

    // B starts on the same folder while A runs: it adopts none of A's sessions, and A still serves them.
    const b = await sys.startWorker('share-b', on);
    expect(await adoption(b)).toEqual({ adopted: [], heldByOthers: 2 });
    expect(Object.fromEntries(Object.entries(await listing(sys.clients)).map(([id, v]) => [id, v.worker]))).toEqual({ [ids[0]!]: 'share-a', [ids[1]!]: 'share-a' });
    expect(ok(await tool(sys.clients, owned[0]!.session_id, 'fs_read', { path: 'owner.txt' }), 'fs_read')['contents']).toBe('made on share-a #1');
    const ofB = await unary(S(), 'CreateSession', { worker_id: 'share-b' });

    // A stalls: the coordinator declares it lost, but it still holds its sessions' locks.
    process.kill(a.pid, 'SIGSTOP');
    let c: SystemProcess;
    try {
      await until(() => status(owned[0]!.session_id), (x) => x.unreachableSinceMs > 0, 15_000, 100, "A's session unreachable");
      // B restarted on the folder takes back its own session only; C (a new id) takes none.
      b.signal('SIGTERM');
      expect(await b.exited).toEqual({ code: 0, signal: null });
      const b2 = await sys.startWorker('share-b', on);
      expect(await adoption(b2)).toEqual({ adopted: [ofB.session_id], heldByOthers: 2 });
      c = await sys.startWorker('share-c', on);
      expect(await adoption(c)).toEqual({ adopted: [], heldByOthers: 3 });
      for (const s of owned) expect((await status(s.session_id)).worker_id).toBe('share-a');
    } finally {
      process.kill(a.pid, 'SIGCONT');
    }
    // A resumes, registers again and serves its sessions.
    await until(() => status(owned[0]!.session_id), (x) => x.unreachableSinceMs === 0 && x.worker_id === 'share-a', 30_000, 100, "A's session reachable again");
    for (const [i, s] of owned.entries()) expect(ok(await tool(sys.clients, s.session_id, 'fs_read', { path: 'owner.txt' }), 'fs_read')['contents']).toBe(`made on share-a #${i + 1}`);
    c!.signal('SIGTERM');
    expect(await c!.exited).toEqual({ code: 0, signal: null });

    // A is killed: its lock helper dies with it, and C started again on the folder adopts A's sessions.
    const helper = lockHelperOf(a.pid);
    expect(helper).toBeDefined();
    a.signal('SIGKILL');
    await a.exited;
    expect(await eventually(() => !isAlive(helper!), 5_000)).toBe(true);
    const c2 = await sys.startWorker('share-c', on);
    expect(await adoption(c2)).toEqual({ adopted: ids, heldByOthers: 1 });
    const moved = await until(() => listing(sys.clients), (l) => ids.every((id) => l[id]?.worker === 'share-c' && l[id]!.reachable), 15_000, 100, 'the sessions shown on share-c, connected');
    for (const [i, s] of owned.entries()) expect(moved[s.session_id]!.metadata).toEqual({ i: String(i + 1) });
    expect(moved[ofB.session_id]!.worker).toBe('share-b');
    for (const [i, s] of owned.entries()) {
      expect(ok(await runTask(sys.clients, { session_id: s.session_id, typed_request: { fs_read: { path: 'owner.txt' } } }), 'fs_read')['contents']).toBe(`made on share-a #${i + 1}`);
      const st = await settledStatus(sys.clients, s.session_id);
      expect(st.worker_id).toBe('share-c');
      expect(st.state).toBe('SESSION_STATE_READY');
      expect(st['info']['survival_note']).not.toBe('');
    }
    expect((await grpcError(unary(S(), 'CreateSession', { worker_id: 'share-a' }))).code).toBe(grpc.status.NOT_FOUND);
    expect(coordinator.exit).toBeUndefined();
  });
});
