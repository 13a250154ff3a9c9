/**
 * Ordered, bounded shutdown with real processes:
 * - Ctrl-C on `codegen-mcp up` in a real pseudo-terminal (test/helpers/pty.ts: the line
 *   discipline sends one SIGINT to the whole foreground process group) while a task runs: one
 *   drain of every child — the task completes with its whole output, nothing ends WORKER_LOST,
 *   the workers deregister, and `up` exits 0. A second Ctrl-C during a drain forces the exit.
 * - The same Ctrl-C on `make up` (the Makefile's recipe, its install/build prerequisites skipped
 *   with `-o`: dist/ is built by whoever runs the tests).
 * - SIGTERM to a coordinator: new work is refused with UNAVAILABLE while a running task
 *   finishes, then it exits 0.
 * In a terminal the logs are pino-pretty text, parsed with prettyRecords().
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectCoordinator, type CoordinatorClients } from '../../src/wire/client.js';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { sessionPids, spawnInPty, type PtyProcess } from '../helpers/pty.js';
import { cliPath, commandLine, grpc, grpcError, prettyRecords, ProcessTracker, python, replyOf, startTask, TestSystem, unary, runTask, type PrettyRecord, type SystemProcess, type TaskRun } from '../helpers/system.js';
import { mountsUnder, unmount } from '../../src/worker/disk-quota.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const stubbornCode = `import os, signal, subprocess, sys, time
token = sys.argv[1]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\ntime.sleep(1000)", token])
print(f"pids {os.getpid()} {child.pid}", flush=True)
while True:
    time.sleep(1000)
`;

/** A task that runs for a few seconds, then prints several lines and, last, leaves a file in its workspace. */
const slowTask = 'import time\nprint("started", flush=True)\ntime.sleep(3)\nfor i in range(3):\n    print("line", i)\nprint("finished", flush=True)\nopen("ran-to-the-end", "w").close()';
const slowOutput = 'started\nline 0\nline 1\nline 2\nfinished\n';

/** The drained task ran to its end and its client got the whole result (never WORKER_LOST: the connection waits for the stream). */
async function expectCompleted(r: TaskRun, workspace: string): Promise<void> {
  // The program ran to its end in its sandbox (it was neither cancelled nor killed by the drain).
  expect(existsSync(path.join(workspace, 'ran-to-the-end')), 'the program ran to its end').toBe(true);
  expect(r.error, JSON.stringify(r.error)).toBeUndefined();
  expect(r.status?.details, 'gRPC status').toBeUndefined();
  expect(r.result?.['status']).toBe('STATUS_SUCCESS');
  expect(replyOf(r, 'run_python')['stdout']).toBe(slowOutput);
  expect(r.logs.map((l) => l.line)).toEqual(['started', 'line 0', 'line 1', 'line 2', 'finished']);
}

/** `up` (or `make up`) in a pseudo-terminal, with its logs parsed and every process it starts tracked. */
class TerminalUp {
  readonly pty: PtyProcess;
  readonly tracker = new ProcessTracker(200);
  readonly root = mkdtempSync(path.join(tmpdir(), 'codegen-pty-up-'));
  clients: CoordinatorClients | undefined;

  constructor(command: string, args: string[], env: Record<string, string> = {}) {
    const keep = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR', 'NODE_OPTIONS', 'PYTHONDONTWRITEBYTECODE'];
    const base: NodeJS.ProcessEnv = {};
    for (const k of keep) if (process.env[k] !== undefined) base[k] = process.env[k];
    this.pty = spawnInPty(command, args, {
      cwd: repoRoot,
      echo: false,
      env: { ...base, TERM: 'xterm', BASE_WORKSPACE: path.join(this.root, 'ws'), CODEGEN_STATE_DIR: path.join(this.root, 'state'), GRPC_PORT: '0', HTTP_PORT: '0', GRPC_HOST: '127.0.0.1', RECOVERY_GRACE_SECONDS: '0', WORKERS: '2', ...env },
    });
    this.tracker.watch(this.pty.runnerPid);
  }

  records(): PrettyRecord[] {
    return prettyRecords(this.pty.output);
  }

  /** Waits for a log record; `from` is a line index of the output. */
  async record(pred: (r: PrettyRecord) => boolean, timeoutMs = 60_000, from = 0): Promise<PrettyRecord> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.records().find((r) => r.line >= from && pred(r));
      if (hit) return hit;
      if (this.pty.exit) throw new Error(`the command exited (${JSON.stringify(this.pty.exit)}) before the log record; last lines:\n${this.pty.output.slice(-30).join('\n')}`);
      if (Date.now() > deadline) throw new Error(`no such log record within ${timeoutMs} ms; last lines:\n${this.pty.output.slice(-30).join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Resolves when the system is up and both workers' task streams are open; connects the clients. */
  async ready(): Promise<CoordinatorClients> {
    const up = await this.record((r) => r.name === 'up' && r.msg === 'system up');
    const port = Number(up.fields['grpcPort']);
    expect(port).toBeGreaterThan(0);
    for (const w of ['worker-1', 'worker-2']) await this.record((r) => r.name === 'coordinator' && r.msg === 'worker task stream open' && r.fields['workerId'] === w);
    // The coordinator made its client token at first start, in the state folder the command was given.
    const token = readFileSync(path.join(this.root, 'state', 'client-token'), 'utf8').trim();
    this.clients = connectCoordinator(`127.0.0.1:${port}`, {}, { token });
    return this.clients;
  }

  /** Ends everything and fails when a process it started outlived the command. */
  async close(): Promise<void> {
    this.clients?.close();
    // A test that failed early leaves the command running: give a drain under way time to end (and to be logged).
    await Promise.race([this.pty.exited, new Promise((r) => setTimeout(r, 20_000))]);
    // CODEGEN_TEST_DUMP=<dir>: the terminal's output is kept there, for a failure's post-mortem.
    const dump = process.env['CODEGEN_TEST_DUMP'];
    if (dump) {
      mkdirSync(dump, { recursive: true });
      writeFileSync(path.join(dump, `pty-${path.basename(this.root)}.log`), this.pty.output.join('\n') + '\n');
    }
    const sid = this.pty.pid;
    const gone = await eventually(() => this.tracker.leftovers().length === 0 && (sid === undefined || sessionPids(sid).length === 0), 15_000, 100);
    const left = gone ? [] : [...new Set([...this.tracker.leftovers(), ...(sid ? sessionPids(sid) : [])])].map((pid) => `${pid}: ${commandLine(pid)}`);
    await this.pty.kill();
    this.tracker.close();
    // Sessions' filesystems (disk quotas) stay mounted after their worker stops.
    for (const m of mountsUnder(this.root)) await unmount(m);
    if (!left.length) rmSync(this.root, { recursive: true, force: true });
    expect(left, 'processes outlived the command').toEqual([]);
  }
}

/** The drain facts every Ctrl-C test checks: one drain (SIGINT to `up`, SIGTERM to each child), workers deregistered before the coordinator stops. */
function expectOneOrderedDrain(t: TerminalUp): void {
  const recs = t.records();
  const upStops = recs.filter((r) => r.name === 'up' && r.msg === 'shutting down');
  expect(upStops.map((r) => r.fields['signal'])).toEqual(['SIGINT']);
  const workerStops = recs.filter((r) => r.name === 'worker' && r.msg === 'shutting down');
  expect(workerStops.map((r) => [r.fields['workerId'], r.fields['signal']]).sort()).toEqual([
    ['worker-1', 'SIGTERM'],
    ['worker-2', 'SIGTERM'],
  ]);
  const deregistered = recs.filter((r) => r.name === 'coordinator' && r.msg === 'worker deregistered');
  expect(deregistered.map((r) => r.fields['workerId']).sort()).toEqual(['worker-1', 'worker-2']);
  const coordinatorStop = recs.filter((r) => r.name === 'coordinator' && r.msg === 'shutting down');
  expect(coordinatorStop.map((r) => r.fields['signal'])).toEqual(['SIGTERM']);
  for (const d of deregistered) expect(d.line).toBeLessThan(coordinatorStop[0]!.line);
  expect(recs.filter((r) => r.msg.includes('second signal') || r.msg.includes('took too long') || r.msg === 'child exited; restarting')).toEqual([]);
  expect(recs.filter((r) => r.level === 'ERROR' || r.level === 'FATAL')).toEqual([]);
  expect(t.pty.output.filter((l) => l.includes('WORKER_LOST'))).toEqual([]);
}

describe('Ctrl-C in a terminal', () => {
  const started: TerminalUp[] = [];
  const run = (command: string, args: string[], env?: Record<string, string>) => {
    const t = new TerminalUp(command, args, env);
    started.push(t);
    return t;
  };

  afterEach(async () => {
    for (const t of started.splice(0)) await t.close();
  }, 60_000);

  it('on `codegen-mcp up` while a task runs: the task completes with its whole output, nothing ends WORKER_LOST, the workers deregister, and up exits 0', async () => {
    const t = run(process.execPath, [cliPath, 'up']);
    const clients = await t.ready();
    const s = await unary(clients.sessions, 'CreateSession', { worker_id: 'worker-1' });
    const other = await unary(clients.sessions, 'CreateSession', { worker_id: 'worker-2' });
    const task = startTask(clients, python(s.session_id, slowTask));
    await task.waitForLog((l) => l === 'started');

    const from = t.pty.output.length;
    t.pty.interrupt();
    await t.record((r) => r.name === 'up' && r.msg === 'shutting down', 10_000, from);
    const r = await task.done;
    expect(await t.pty.exited).toEqual({ code: 0, signal: null });
    await expectCompleted(r, s.workspace_path);
    expectOneOrderedDrain(t);
    expect(other.worker_id).toBe('worker-2');
  });

  it('on `make up` while a task runs: `up` drains once (the task completes, nothing ends WORKER_LOST, the workers deregister) and make exits 0', async () => {
    // `-o install -o build`: the recipe of `up` as it is, without npm ci and the TypeScript build.
    const t = run('make', ['--no-print-directory', '-o', 'install', '-o', 'build', 'up']);
    const clients = await t.ready();
    const s = await unary(clients.sessions, 'CreateSession', {});
    const task = startTask(clients, python(s.session_id, slowTask));
    await task.waitForLog((l) => l === 'started');

    t.pty.interrupt();
    const r = await task.done;
    const exit = await t.pty.exited;
    await expectCompleted(r, s.workspace_path);
    expectOneOrderedDrain(t);
    // make forks `up` as its own foreground job: the terminal's SIGINT reaches `up` only, and make exits with it.
    expect(exit).toEqual({ code: 0, signal: null });
  });

  it('a second Ctrl-C during the drain forces the exit at once (130) and leaves no process behind', async () => {
    const t = run(process.execPath, [cliPath, 'up'], { DRAIN_TIMEOUT_SECONDS: '30' });
    const clients = await t.ready();
    const s = await unary(clients.sessions, 'CreateSession', { worker_id: 'worker-1' });
    const token = uniqueToken('second-ctrl-c');
    const task = startTask(clients, python(s.session_id, stubbornCode, { args: [token] }));
    await task.waitForLog((l) => l.startsWith('pids '));
    expect(await eventually(() => pidsWithToken(token).length >= 2, 5_000)).toBe(true);

    const from = t.pty.output.length;
    t.pty.interrupt();
    // The drain is under way: the worker waits for its task (up to 30 s).
    await t.record((r) => r.name === 'worker' && r.msg === 'shutting down' && r.fields['workerId'] === 'worker-1', 10_000, from);
    const secondAt = Date.now();
    t.pty.interrupt();
    expect(await t.pty.exited).toEqual({ code: 130, signal: null });
    expect(Date.now() - secondAt).toBeLessThan(5_000);
    const forced = t.records().filter((r) => r.name === 'up' && r.msg === 'second signal: exiting now');
    expect(forced.map((r) => r.fields['signal'])).toEqual(['SIGINT']);
    // The forced stop reaches the sandboxed program too.
    expect(await eventually(() => pidsWithToken(token).length === 0, 10_000)).toBe(true);
    const r = await task.done;
    expect(r.result).toBeUndefined();
  });
});

describe('SIGTERM to a coordinator', () => {
  let sys: TestSystem;
  let coordinator: SystemProcess;

  beforeAll(async () => {
    sys = new TestSystem({ label: 'coord-term' });
    coordinator = await sys.startCoordinator({ HTTP_ENABLED: 'false' });
    await sys.startWorker('ct-w');
  }, 120_000);

  afterAll(async () => {
    await sys?.stop();
  }, 120_000);

  it('refuses new work with UNAVAILABLE while a running task finishes, then exits 0', async () => {
    const s = await unary(sys.clients.sessions, 'CreateSession', {});
    const other = await unary(sys.clients.sessions, 'CreateSession', {});
    const t = startTask(sys.clients, python(s.session_id, 'import time\nprint("started", flush=True)\ntime.sleep(4)\nprint("done")'));
    await t.waitForLog((l) => l === 'started');

    const termAt = Date.now();
    coordinator.signal('SIGTERM');
    await coordinator.waitForLine((l) => l.msg === 'shutting down' && l['signal'] === 'SIGTERM', 5_000);
    expect(await sys.health()).toBe('NOT_SERVING');
    for (const id of [s.session_id, other.session_id]) {
      const refused = await runTask(sys.clients, python(id, 'print("must not run")'), 10_000);
      expect(refused.result).toBeUndefined();
      expect(grpc.status[refused.status?.code ?? 0], refused.status?.details).toBe('UNAVAILABLE');
      expect(refused.status?.details).toContain('shutting down');
    }
    const create = await grpcError(unary(sys.clients.sessions, 'CreateSession', {}, { deadlineMs: 10_000 }));
    expect(grpc.status[create.code], create.details).toBe('UNAVAILABLE');
    expect(create.details).toContain('shutting down');
    expect(coordinator.exit).toBeUndefined();

    const r = await t.done;
    expect(r.result?.['status'], JSON.stringify({ error: r.error, status: r.status?.details })).toBe('STATUS_SUCCESS');
    expect(replyOf(r, 'run_python')['stdout']).toBe('started\ndone\n');
    expect(await coordinator.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - termAt).toBeLessThan(15_000);
  });
});
