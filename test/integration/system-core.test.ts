/**
 * The whole system with real processes: `codegen-mcp up` with a coordinator and two workers on
 * 127.0.0.1 (ephemeral ports), real gRPC, real Python in sandboxed venvs.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { python, replyOf, runTask, startTask, TestSystem, unary, grpc, type TaskRun, type Wire } from '../helpers/system.js';
import { buildWheel } from '../helpers/wheels.js';

const fixture = (name: string) => readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'python', name), 'utf8');
const uid = () => Math.random().toString(36).slice(2, 10);

let sys: TestSystem;
let wheels: string;
/** The six sessions of the placement test, reused by the others. */
let sessions: Array<{ session_id: string; worker_id: string; workspace_path: string }> = [];
let bwrap = false;

beforeAll(async () => {
  sys = new TestSystem({ label: 'core' });
  wheels = path.join(sys.root, 'wheels');
  buildWheel(wheels, 'alpha_pkg', '1.2.3');
  buildWheel(wheels, 'beta_pkg', '4.5.6');
  await sys.startUp(2, { SESSION_IDLE_TIMEOUT_SECONDS: '1', PIP_FIND_LINKS: wheels, PIP_NO_INDEX: '1' });
  bwrap = sys.allLines().some((l) => l.name === 'worker' && l['isolation'] === 'bwrap');
  // Six sessions at once, on a system with none: the placement test checks where they landed.
  sessions = await Promise.all(Array.from({ length: 6 }, (_, i) => unary(sys.clients.sessions, 'CreateSession', { metadata: { n: String(i) } })));
}, 120_000);

afterAll(async () => {
  await sys?.stop();
}, 120_000);

const sessionsOn = (workerId: string) => sessions.filter((s) => s.worker_id === workerId);

async function fsCall(sessionId: string, tool: string, input: Wire): Promise<TaskRun> {
  return runTask(sys.clients, { session_id: sessionId, typed_request: { [tool]: input } });
}

/** The result's typed response, after checking the task succeeded. */
async function ok(run: Promise<TaskRun> | TaskRun, tool: string): Promise<Wire> {
  const r = await run;
  expect(r.status?.details, 'gRPC status').toBeUndefined();
  expect(r.error, 'task error').toBeUndefined();
  expect(r.result?.status).toBe('STATUS_SUCCESS');
  return replyOf(r, tool);
}

/** The TaskError of a task that must fail with `code`. */
async function taskError(run: Promise<TaskRun> | TaskRun, code: string): Promise<Wire> {
  const r = await run;
  expect(r.result, `expected ${code}, got a result`).toBeUndefined();
  expect(r.status?.details, 'gRPC status').toBeUndefined();
  expect(r.error?.code).toBe(code);
  return r.error!;
}

describe('a coordinator with two workers', () => {
  it('serves grpc.health.v1 (SERVING) and server reflection listing every service', async () => {
    expect(await sys.health()).toBe('SERVING');
    expect(await sys.health('codegen.v1.TaskExecution')).toBe('SERVING');
    const services = await sys.reflectionServices();
    expect(services).toEqual(expect.arrayContaining(['codegen.v1.SessionManagement', 'codegen.v1.TaskExecution', 'codegen.v1.WorkerLifecycle', 'grpc.health.v1.Health']));
  });

  it('places six sessions created at once three on each worker', async () => {
    for (const s of sessions) {
      expect(s.session_id).toMatch(/\S{16,}/);
      expect(['SESSION_STATE_READY', 'SESSION_STATE_IDLE']).toContain((s as Wire)['state']);
    }
    expect(new Set(sessions.map((s) => s.session_id)).size).toBe(6);
    expect(sessionsOn('worker-1')).toHaveLength(3);
    expect(sessionsOn('worker-2')).toHaveLength(3);

    const listed = await unary(sys.clients.sessions, 'ListSessions', {});
    expect(listed.sessions.map((s: Wire) => s['session_id']).sort()).toEqual(sessions.map((s) => s.session_id).sort());
  });

  it('runs file operations of six sessions concurrently, each seeing only its own files', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await Promise.all(
      sessions.map(async (s, i) => {
        const writes = [
          fsCall(s.session_id, 'fs_write', { path: 'own.txt', contents: `session ${i}\n` }),
          fsCall(s.session_id, 'fs_write', { path: `dir-${i}/nested/deep.txt`, contents: `deep ${i}`, create_dirs: true }),
          fsCall(s.session_id, 'fs_write', { path: 'blob.bin', contents: bytes.toString('base64'), encoding: 'base64' }),
          fsCall(s.session_id, 'fs_write', { path: `only-${i}.txt`, contents: 'mine' }),
        ];
        for (const w of writes) await ok(w, 'fs_write');
      }),
    );
    await Promise.all(
      sessions.map(async (s, i) => {
        const [own, blob, deep, list, globbed] = await Promise.all([
          ok(fsCall(s.session_id, 'fs_read', { path: 'own.txt' }), 'fs_read'),
          ok(fsCall(s.session_id, 'fs_read', { path: 'blob.bin' }), 'fs_read'),
          ok(fsCall(s.session_id, 'fs_read', { path: `dir-${i}/nested/deep.txt` }), 'fs_read'),
          ok(fsCall(s.session_id, 'fs_list', { path: '', recursive: true }), 'fs_list'),
          ok(fsCall(s.session_id, 'fs_list', { path: '', recursive: true, pattern: '*.txt' }), 'fs_list'),
        ]);
        expect(own['contents']).toBe(`session ${i}\n`);
        expect(blob['encoding']).toBe('base64');
        expect(Buffer.from(blob['contents'], 'base64').equals(bytes)).toBe(true);
        expect(Number(blob['size_bytes'])).toBe(256);
        expect(deep['contents']).toBe(`deep ${i}`);
        const paths: string[] = list['files'].map((f: Wire) => f['path']);
        expect(paths).toEqual(expect.arrayContaining(['own.txt', 'blob.bin', `only-${i}.txt`, `dir-${i}/nested/deep.txt`]));
        // Nothing of the other sessions.
        for (let j = 0; j < sessions.length; j++) if (j !== i) expect(paths.some((p) => p.includes(`only-${j}`) || p.includes(`dir-${j}`))).toBe(false);
        const txt: string[] = globbed['files'].map((f: Wire) => f['path']);
        expect(txt.every((p) => p.endsWith('.txt'))).toBe(true);
        expect(txt).toEqual(expect.arrayContaining(['own.txt', `only-${i}.txt`]));
        // Another session's file does not exist here.
        await taskError(fsCall(s.session_id, 'fs_read', { path: `only-${(i + 1) % 6}.txt` }), 'NOT_FOUND');
      }),
    );
  });

  it('installs a wheel into one session only: each session imports its own package, not the other', async () => {
    const [s1, s2] = sessionsOn('worker-1');
    const [i1, i2] = await Promise.all([
      ok(runTask(sys.clients, { session_id: s1!.session_id, typed_request: { pkg_install: { packages: ['alpha_pkg'] } } }), 'pkg_install'),
      ok(runTask(sys.clients, { session_id: s2!.session_id, typed_request: { pkg_install: { packages: ['beta_pkg==4.5.6'] } } }), 'pkg_install'),
    ]);
    expect(i1['exit_code']).toBe(0);
    expect(i1['installed']).toEqual([expect.objectContaining({ version: '1.2.3' })]);
    expect(i1['installed'][0].name.replace('-', '_').toLowerCase()).toBe('alpha_pkg');
    expect(i2['installed']).toEqual([expect.objectContaining({ version: '4.5.6' })]);
    expect(i2['installed'][0].name.replace('-', '_').toLowerCase()).toBe('beta_pkg');
    expect(i1['failed']).toEqual([]);

    const probe = `import importlib.util\nfor m in ("alpha_pkg", "beta_pkg"):\n    spec = importlib.util.find_spec(m)\n    print(m, __import__(m).VERSION if spec else "missing")`;
    const [o1, o2, o3] = await Promise.all([
      ok(runTask(sys.clients, python(s1!.session_id, probe)), 'run_python'),
      ok(runTask(sys.clients, python(s2!.session_id, probe)), 'run_python'),
      ok(runTask(sys.clients, python(sessionsOn('worker-2')[0]!.session_id, probe)), 'run_python'),
    ]);
    expect(o1['stdout']).toBe('alpha_pkg 1.2.3\nbeta_pkg missing\n');
    expect(o2['stdout']).toBe('alpha_pkg missing\nbeta_pkg 4.5.6\n');
    expect(o3['stdout']).toBe('alpha_pkg missing\nbeta_pkg missing\n');
  });

  it('runs the tasks of one session one at a time in arrival order, and different sessions in parallel', async () => {
    const s = sessionsOn('worker-2')[1]!;
    const code = 'import sys, time\ns = time.time()\ntime.sleep(0.4)\nprint(sys.argv[1], s, time.time())';
    const ids = Array.from({ length: 4 }, (_, i) => `order-${i}-${uid()}`);
    const runs = await Promise.all(ids.map((id) => runTask(sys.clients, python(s.session_id, code, { args: [id] }, { task_id: id }))));
    const spans = runs.map((r) => {
      const [name, start, end] = String(replyOf(r, 'run_python')['stdout']).trim().split(' ');
      return { name: name!, start: Number(start), end: Number(end) };
    });
    expect(spans.map((x) => x.name)).toEqual(ids);
    // Arrival order as the coordinator recorded it, and the order they ran in.
    const status = await unary(sys.clients.sessions, 'GetSessionStatus', { session_id: s.session_id });
    const arrival = (status.recent_tasks as string[]).filter((id) => ids.includes(id));
    expect(arrival).toEqual(ids);
    const byStart = [...spans].sort((a, b) => a.start - b.start).map((x) => x.name);
    expect(byStart).toEqual(arrival);
    for (let i = 1; i < spans.length; i++) expect(spans[i]!.start).toBeGreaterThanOrEqual(spans[i - 1]!.end);

    // Two sessions of the same worker: their tasks overlap in time.
    const [a, b] = sessionsOn('worker-1');
    const both = await Promise.all([a!, b!].map((x) => runTask(sys.clients, python(x.session_id, 'import time\ns = time.time()\ntime.sleep(2.5)\nprint(s, time.time())'))));
    const [sa, sb] = both.map((r) => String(replyOf(r, 'run_python')['stdout']).trim().split(' ').map(Number)) as [number[], number[]];
    expect(sa[0]!).toBeLessThan(sb[1]!);
    expect(sb[0]!).toBeLessThan(sa[1]!);
  });

  describe('stopping programs leaves no process behind', () => {
    const stubborn = fixture('stubborn.py');

    it('a timeout kills the program and its grandchild', async () => {
      const token = uniqueToken('timeout');
      const t = startTask(sys.clients, python(sessions[0]!.session_id, stubborn, { args: [token], timeout_seconds: 2 }));
      await t.waitForLog((l) => l.startsWith('pids '));
      expect(pidsWithToken(token).length).toBeGreaterThanOrEqual(2);
      const r = await t.done;
      expect(r.result?.status).toBe('STATUS_TIMEOUT');
      expect(replyOf(r, 'run_python')['timed_out']).toBe(true);
      expect(await eventually(() => pidsWithToken(token).length === 0, 5_000)).toBe(true);
    });

    it('CancelTask ends a running task as CANCELLED and kills its processes', async () => {
      const token = uniqueToken('cancel');
      const sessionId = sessions[1]!.session_id;
      const t = startTask(sys.clients, python(sessionId, stubborn, { args: [token] }));
      await t.waitForLog((l) => l.startsWith('pids '));
      expect(pidsWithToken(token).length).toBeGreaterThanOrEqual(2);
      const c = await unary(sys.clients.tasks, 'CancelTask', { task_id: t.run.taskId, reason: 'test' });
      expect(c.cancelled).toBe(true);
      // The state after the cancel, not before it (the task was running).
      expect(c.state).toBe('cancelled');
      const r = await t.done;
      expect(r.result?.status).toBe('STATUS_CANCELLED');
      expect(await eventually(() => pidsWithToken(token).length === 0, 5_000)).toBe(true);
      const st = await unary(sys.clients.tasks, 'GetTaskStatus', { task_id: r.taskId });
      expect(st.status).toBe('STATUS_CANCELLED');
      // The session is fine afterwards.
      expect(replyOf(await runTask(sys.clients, python(sessionId, 'print(7)')), 'run_python')['stdout']).toBe('7\n');
    });

    it('a client cancelling its ExecuteTask call cancels the task and kills its processes', async () => {
      const token = uniqueToken('client-cancel');
      const sessionId = sessions[2]!.session_id;
      const t = startTask(sys.clients, python(sessionId, stubborn, { args: [token] }));
      await t.waitForLog((l) => l.startsWith('pids '));
      expect(pidsWithToken(token).length).toBeGreaterThanOrEqual(2);
      t.call.cancel();
      const r = await t.done;
      expect(r.status?.code).toBe(grpc.status.CANCELLED);
      expect(await eventually(() => pidsWithToken(token).length === 0, 15_000)).toBe(true);
      let state = '';
      expect(
        await eventually(() => {
          void unary(sys.clients.tasks, 'GetTaskStatus', { task_id: r.taskId }).then((st) => (state = st.state), () => {});
          return state === 'cancelled';
        }, 15_000, 200),
      ).toBe(true);
    });
  });

  it('refuses paths that leave the workspace: "..", absolute paths, and symlinks made by user code', async () => {
    const [mine, other] = sessionsOn('worker-2');
    await ok(fsCall(other!.session_id, 'fs_write', { path: 'secret.txt', contents: 'other session secret' }), 'fs_write');
    const otherName = path.basename(other!.workspace_path);
    expect(existsSync(path.join(other!.workspace_path, 'secret.txt'))).toBe(true); // the real host path

    const violations: Array<[string, Wire]> = [
      ['fs_read', { path: '../' + otherName + '/secret.txt' }],
      ['fs_read', { path: '/etc/hostname' }],
      ['fs_read', { path: other!.workspace_path + '/secret.txt' }],
      ['fs_write', { path: '../escape.txt', contents: 'x' }],
      ['fs_write', { path: '/tmp/escape-' + uid(), contents: 'x' }],
      ['fs_list', { path: '..' }],
      ['fs_list', { path: '/' }],
      ['fs_read', { path: 'a/../../' + otherName + '/secret.txt' }],
    ];
    for (const [tool, input] of violations) {
      const e = await taskError(fsCall(mine!.session_id, tool, input), 'PATH_VIOLATION');
      expect(e.message, `${tool} ${JSON.stringify(input)}`).toContain('path');
    }

    // Symlinks made by the user's own code, to another session's workspace and to /etc.
    const made = await runTask(sys.clients, python(mine!.session_id, `import os\nos.symlink(${JSON.stringify(other!.workspace_path)}, "link")\nos.symlink("/etc", "etc")\nos.symlink("../${otherName}/secret.txt", "rel")\nprint("ok")`));
    expect(replyOf(made, 'run_python')['stdout']).toBe('ok\n');
    const viaLinks: Array<[string, Wire]> = [
      ['fs_read', { path: 'link/secret.txt' }],
      ['fs_read', { path: 'etc/hostname' }],
      ['fs_read', { path: 'rel' }],
      ['fs_write', { path: 'link/pwned.txt', contents: 'x' }],
      ['fs_write', { path: 'rel', contents: 'overwritten' }],
      ['fs_list', { path: 'link' }],
      ['fs_list', { path: 'etc' }],
    ];
    for (const [tool, input] of viaLinks) {
      const r = await fsCall(mine!.session_id, tool, input);
      expect(r.result, `${tool} ${JSON.stringify(input)} must be refused`).toBeUndefined();
      expect(r.error?.code, `${tool} ${JSON.stringify(input)}: ${JSON.stringify(r.error)}`).toBe('PATH_VIOLATION');
    }
    // The other session's files are untouched.
    const secret = await ok(fsCall(other!.session_id, 'fs_read', { path: 'secret.txt' }), 'fs_read');
    expect(secret['contents']).toBe('other session secret');
    const list = await ok(fsCall(other!.session_id, 'fs_list', { path: '' }), 'fs_list');
    expect(list['files'].map((f: Wire) => f['path'])).not.toContain('pwned.txt');

    if (bwrap) {
      // In the sandbox the user's code cannot reach another session's workspace either.
      const peek = await runTask(sys.clients, python(mine!.session_id, `try:\n    print(open(${JSON.stringify(other!.workspace_path + '/secret.txt')}).read())\nexcept OSError as e:\n    print("denied", type(e).__name__)`));
      expect(replyOf(peek, 'run_python')['stdout']).toMatch(/^denied/);
    }
  });

  it('answers a repeated task_id or sequence from the first run, never running it twice', async () => {
    const s = sessionsOn('worker-1')[2]!;
    const append = (tag: string) => `import time\nwith open("count.txt", "a") as f:\n    f.write("${tag}\\n")\ntime.sleep(0.3)\nprint("${tag}", time.time())`;
    const lines = async () => String((await ok(fsCall(s.session_id, 'fs_read', { path: 'count.txt' }), 'fs_read'))['contents']).trim().split('\n');

    const taskId = `dup-${uid()}`;
    // Three copies at once, then one more after the first finished.
    const firsts = await Promise.all([0, 1, 2].map(() => runTask(sys.clients, python(s.session_id, append('A'), {}, { task_id: taskId }))));
    const later = await runTask(sys.clients, python(s.session_id, append('B'), {}, { task_id: taskId }));
    const outs = [...firsts, later].map((r) => {
      expect(r.taskId).toBe(taskId);
      return replyOf(r, 'run_python')['stdout'];
    });
    expect(new Set(outs).size).toBe(1);
    expect(outs[0]).toMatch(/^A /);
    expect(await lines()).toEqual(['A']);

    const seq = String(1_000_000 + Math.floor(Math.random() * 1e6));
    const s1 = await runTask(sys.clients, python(s.session_id, append('C'), {}, { sequence: seq }));
    const s2 = await runTask(sys.clients, python(s.session_id, append('D'), {}, { sequence: seq, task_id: `other-${uid()}` }));
    expect(s2.taskId).toBe(s1.taskId);
    expect(replyOf(s2, 'run_python')['stdout']).toBe(replyOf(s1, 'run_python')['stdout']);
    expect(await lines()).toEqual(['A', 'C']);

    // GetTaskStatus knows the first run.
    const st = await unary(sys.clients.tasks, 'GetTaskStatus', { task_id: taskId });
    expect(st.status).toBe('STATUS_SUCCESS');
  });

  it('lets a client that attached to a running task by its task_id go away without cancelling it', async () => {
    const s = sessionsOn('worker-1')[1]!;
    const taskId = `attach-${uid()}`;
    const code = [
      'import os, time',
      'def wait(name):',
      '    while not os.path.exists(name):',
      '        time.sleep(0.05)',
      'print("started", flush=True)',
      'wait("go-attach-1")',
      'print("tick", flush=True)',
      'wait("go-attach-2")',
      'print("finished")',
    ].join('\n');
    const first = startTask(sys.clients, python(s.session_id, code, {}, { task_id: taskId }));
    await first.waitForLog((l) => l === 'started');
    const second = startTask(sys.clients, python(s.session_id, code, {}, { task_id: taskId }));
    await new Promise((r) => setTimeout(r, 300));
    // The task polls its own workspace: drop the flag files there directly (a task would queue behind it).
    writeFileSync(path.join(s.workspace_path, 'go-attach-1'), '');
    await second.waitForLog((l) => l === 'tick'); // the second client is attached
    second.call.cancel();
    await second.done;
    await new Promise((r) => setTimeout(r, 500)); // a wrongly forwarded cancel would land now
    writeFileSync(path.join(s.workspace_path, 'go-attach-2'), '');
    const run = await first.done;
    expect(run.result?.['status'], 'the first run was not cancelled').toBe('STATUS_SUCCESS');
    expect(replyOf(run, 'run_python')['stdout']).toContain('finished');
  });

  it('lets a READY session go IDLE after the idle timeout, and back to work on the next task', async () => {
    const s = sessionsOn('worker-2')[2]!;
    await ok(runTask(sys.clients, python(s.session_id, 'print(1)')), 'run_python');
    let state = '';
    const poll = async () => (state = (await unary(sys.clients.sessions, 'GetSessionStatus', { session_id: s.session_id })).state);
    const deadline = Date.now() + 20_000;
    while ((await poll()) !== 'SESSION_STATE_IDLE' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(state).toBe('SESSION_STATE_IDLE');

    // The task runs until the test drops a file into its workspace: BUSY is observed, not raced.
    const t = startTask(sys.clients, python(s.session_id, 'import os, time\nprint("started", flush=True)\nwhile not os.path.exists("go"):\n    time.sleep(0.05)\nprint("done")'));
    await t.waitForLog((l) => l === 'started');
    expect(await poll()).toBe('SESSION_STATE_BUSY');
    writeFileSync(path.join(s.workspace_path, 'go'), '');
    const r = await t.done;
    expect(replyOf(r, 'run_python')['stdout']).toBe('started\ndone\n');
    expect(['SESSION_STATE_READY', 'SESSION_STATE_IDLE']).toContain(await poll());
  });
});
