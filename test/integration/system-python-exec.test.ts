/**
 * python_exec end to end: a real coordinator and worker processes, real gRPC on 127.0.0.1. The
 * state a call leaves is there for the next; output streams while a call runs; CancelTask
 * interrupts and keeps the state; a worker killed with SIGKILL and started again brings the
 * session back, and its first python_exec says the interpreter's state was lost, and why.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replyOf, runTask, startTask, TestSystem, unary, until, sessionStatus, type SystemProcess, type TaskRun, type Wire } from '../helpers/system.js';

const fast = { HEARTBEAT_INTERVAL_SECONDS: '1', HEARTBEAT_MISSES: '2', HTTP_ENABLED: 'false' };

const exec = (sessionId: string, code: string, timeout_seconds = 0): Wire => ({ session_id: sessionId, typed_request: { python_exec: { code, timeout_seconds } } });

function reply(r: TaskRun): Wire {
  expect(r.status?.details, 'gRPC status').toBeUndefined();
  expect(r.error, 'task error').toBeUndefined();
  return replyOf(r, 'python_exec');
}

describe('python_exec over gRPC', () => {
  let sys: TestSystem;
  let worker: SystemProcess;
  let sessionId: string;

  beforeAll(async () => {
    sys = new TestSystem({ label: 'pyexec' });
    await sys.startCoordinator(fast);
    worker = await sys.startWorker('exec-w');
    sessionId = (await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'exec-w' })).session_id;
  }, 120_000);

  afterAll(async () => {
    await sys?.stop();
  }, 120_000);

  it('keeps variables between calls and answers the trailing value, rich outputs and errors as completed calls', async () => {
    const a = await runTask(sys.clients, exec(sessionId, 'import math\nradius = 2'));
    expect(a.result?.['status']).toBe('STATUS_SUCCESS');
    expect(reply(a)).toMatchObject({ result: '', state_lost: false, execution_count: 1 });
    const b = reply(await runTask(sys.clients, exec(sessionId, 'round(math.pi * radius ** 2, 3)')));
    expect(b).toMatchObject({ result: '12.566', execution_count: 2 });

    const png = Buffer.from('89504e470d0a1a0a', 'hex');
    const rich = reply(await runTask(sys.clients, exec(sessionId, `class P:\n    def _repr_png_(self):\n        return bytes.fromhex("${png.toString('hex')}")\nP()`)));
    expect(rich['outputs']).toHaveLength(1);
    expect(rich['outputs'][0]['mime_type']).toBe('image/png');
    expect(Buffer.from(rich['outputs'][0]['data']).equals(png)).toBe(true);

    const failed = await runTask(sys.clients, exec(sessionId, 'raise ValueError("bad value")'));
    expect(failed.result?.['status']).toBe('STATUS_FAILURE');
    expect(reply(failed)).toMatchObject({ error_name: 'ValueError', error_value: 'bad value', state_lost: false });
    expect(reply(failed)['traceback']).toContain('ValueError: bad value');
  });

  it('streams output lines while the call runs, before its result', async () => {
    const t = startTask(sys.clients, exec(sessionId, 'import time\nprint("first", flush=True)\ntime.sleep(1.5)\nprint("second")'));
    await t.waitForLog((l) => l === 'first', 10_000);
    expect(t.run.result).toBeUndefined();
    const done = await t.done;
    expect(reply(done)['stdout']).toBe('first\nsecond\n');
    expect(done.logs.map((l) => l.line)).toEqual(['first', 'second']);
  });

  it('CancelTask interrupts the call and the state stays', async () => {
    await runTask(sys.clients, exec(sessionId, 'survives_cancel = "yes"'));
    const t = startTask(sys.clients, exec(sessionId, 'import time\nprint("waiting", flush=True)\ntime.sleep(60)'));
    await t.waitForLog((l) => l === 'waiting', 10_000);
    const c = await unary(sys.clients.tasks, 'CancelTask', { task_id: t.run.taskId, reason: 'test' });
    expect(c.state).toBe('cancelled');
    const done = await t.done;
    expect(done.result?.['status']).toBe('STATUS_CANCELLED');
    expect(reply(done)['state_lost']).toBe(false);
    expect(reply(await runTask(sys.clients, exec(sessionId, 'survives_cancel')))['result']).toBe("'yes'");
  });

  it('python_reset answers reset and the next call starts fresh', async () => {
    const r = await runTask(sys.clients, { session_id: sessionId, typed_request: { python_reset: {} } });
    expect(replyOf(r, 'python_reset')).toEqual({ reset: true });
    expect(reply(await runTask(sys.clients, exec(sessionId, '"radius" in globals()')))).toMatchObject({ result: 'False', state_lost: false, execution_count: 1 });
  });

  it('after the worker is killed and started again, the first call says the state was lost because the worker restarted', async () => {
    await runTask(sys.clients, exec(sessionId, 'before_kill = 1'));
    worker.signal('SIGKILL');
    await worker.exited;
    worker = await sys.startWorker('exec-w');
    await until(() => sessionStatus(sys.clients, sessionId), (x) => x.state === 'SESSION_STATE_READY' && x.unreachableSinceMs === 0, 30_000, 100, 'the session back and reachable');
    const first = reply(await runTask(sys.clients, exec(sessionId, '"before_kill" in globals()')));
    expect(first).toMatchObject({ result: 'False', state_lost: true });
    expect(first['state_lost_reason']).toContain('worker restarted');
    const second = reply(await runTask(sys.clients, exec(sessionId, '1')));
    expect(second).toMatchObject({ state_lost: false, state_lost_reason: '' });
  }, 120_000);

  it('refuses a python_exec without code, naming the field', async () => {
    const r = await runTask(sys.clients, exec(sessionId, '   '));
    expect(r.result).toBeUndefined();
    expect(r.status?.details).toContain('typed_request.python_exec.code');
  });
});
