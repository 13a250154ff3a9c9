/**
 * Worker lifecycle with a coordinator and workers started as separate processes: the worker
 * token, and a graceful SIGTERM (drain, deregister, exit 0).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { grpc, grpcError, python, replyOf, startTask, TestSystem, unary, runTask, type SystemProcess } from '../helpers/system.js';

const stubborn = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'python', 'stubborn.py'), 'utf8');

let sys: TestSystem;
let coordinator: SystemProcess;

beforeAll(async () => {
  sys = new TestSystem({ label: 'lifecycle' });
  coordinator = await sys.startCoordinator({ WORKER_TOKEN: 'secret', HTTP_ENABLED: 'false' });
}, 120_000);

afterAll(async () => {
  await sys?.stop();
}, 120_000);

describe('the worker token', () => {
  it('keeps out a worker with a wrong or missing token (which says why) and lets in one with the right token', async () => {
    // A wrong token is refused for good: the worker stops (exit 1) saying so, instead of retrying forever.
    const wrong = await sys.startWorker('intruder', { WORKER_TOKEN: 'wrong' }, false);
    const line = await wrong.waitForLine((l) => l.level === 50 && typeof l.msg === 'string' && l.msg.includes("refused this worker's credential"), 60_000);
    expect(line.msg).toContain('check WORKER_TOKEN');
    expect((await wrong.exited).code).toBe(1);
    expect(wrong.lines.some((l) => l.msg === 'registration with coordinator failed; retrying with backoff')).toBe(false);
    // No token configured and no token file (the coordinator's was given, so it made none): the worker stops at once, saying what to set.
    const none = await sys.startWorker('stranger', {}, false);
    expect((await none.exited).code).toBe(1);
    expect(none.raw.join('\n')).toMatch(/WORKER_TOKEN: not set, and no token file at .*worker-token/);
    const trusted = await sys.startWorker('trusted', { WORKER_TOKEN: 'secret' });
    await trusted.waitForLine((l) => l.msg === 'Successfully registered with coordinator');

    expect(coordinator.lines.filter((l) => l.msg === 'worker registered').map((l) => l.workerId)).toEqual(['trusted']);
    for (const id of ['intruder', 'stranger']) {
      const err = await grpcError(unary(sys.clients.sessions, 'CreateSession', { worker_id: id }));
      expect(err.code).toBe(grpc.status.NOT_FOUND);
    }
    const s = await unary(sys.clients.sessions, 'CreateSession', {});
    expect(s.worker_id).toBe('trusted');
    await unary(sys.clients.sessions, 'DestroySession', { session_id: s.session_id });

    // A client without the token gets UNAUTHENTICATED from every WorkerLifecycle call.
    for (const [method, req] of [['RegisterWorker', { worker_id: 'sneaky', max_sessions: 1 }], ['Heartbeat', { worker_id: 'trusted', registration_id: 'x' }], ['DeregisterWorker', { worker_id: 'trusted', registration_id: 'x' }]] as const) {
      const err = await grpcError(unary(sys.clients.workers, method, req));
      expect(err.code, method).toBe(grpc.status.UNAUTHENTICATED);
    }
    const streamErr = await new Promise<grpc.ServiceError>((resolve) => {
      const call = sys.clients.workers['TaskStream'](new grpc.Metadata(), { deadline: new Date(Date.now() + 15_000) });
      call.on('data', () => {});
      call.on('error', resolve);
      call.write({ hello: { worker_id: 'trusted', registration_id: 'x' } });
    });
    expect(streamErr.code).toBe(grpc.status.UNAUTHENTICATED);
  });
});

describe('SIGTERM to a worker with running tasks', () => {
  it('lets a short task finish, cancels a long one at the drain bound, deregisters and exits 0', async () => {
    const drainSeconds = 5;
    const worker = await sys.startWorker('drainer', { WORKER_TOKEN: 'secret', DRAIN_TIMEOUT_SECONDS: String(drainSeconds) });
    const short = await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'drainer' });
    const long = await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'drainer' });
    const token = uniqueToken('drain');
    const shortTask = startTask(sys.clients, python(short.session_id, 'import time\nprint("started", flush=True)\ntime.sleep(1.5)\nprint("finished")'));
    const longTask = startTask(sys.clients, python(long.session_id, stubborn, { args: [token] }));
    await Promise.all([shortTask.waitForLog((l) => l === 'started'), longTask.waitForLog((l) => l.startsWith('pids '))]);

    const from = coordinator.lines.length;
    const termAt = Date.now();
    worker.signal('SIGTERM');

    const s = await shortTask.done;
    expect(s.result?.status).toBe('STATUS_SUCCESS');
    expect(replyOf(s, 'run_python')['stdout']).toBe('started\nfinished\n');

    const l = await longTask.done;
    expect(l.result?.status, JSON.stringify({ error: l.error, status: l.status?.details })).toBe('STATUS_CANCELLED');
    const cancelledAfter = Date.now() - termAt;
    expect(cancelledAfter).toBeGreaterThanOrEqual(drainSeconds * 1000 - 200);
    expect(cancelledAfter).toBeLessThan(drainSeconds * 1000 + 10_000);
    expect(await eventually(() => pidsWithToken(token).length === 0, 5_000)).toBe(true);

    const exit = await worker.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - termAt).toBeLessThan(drainSeconds * 1000 + 15_000);
    await coordinator.waitForLine((line) => line.msg === 'worker deregistered' && line.workerId === 'drainer', 5_000, from);
    const err = await grpcError(unary(sys.clients.sessions, 'CreateSession', { worker_id: 'drainer' }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    // Its sessions cannot take tasks any more.
    const late = await runTask(sys.clients, python(short.session_id, 'print(1)'));
    expect(late.result).toBeUndefined();
  });
});
