/**
 * A real codegen-mcp system for integration tests: the built command (`dist/src/cli/main.js`)
 * run as child processes on 127.0.0.1 with ephemeral ports, either as `codegen-mcp up` (a
 * coordinator and N supervised workers) or as a coordinator and workers started one by one
 * (so a test can SIGKILL or SIGTERM a single worker and read its exit code).
 *
 * Readiness is read from the JSON log lines. `stop()` ends everything and fails when any
 * process it saw (by the `pid` of their log lines, every descendant of a process it started
 * seen while it ran, or a command line naming the test's temporary folder) outlives it.
 *
 * A coordinator can be restarted on the same port (`startCoordinator({ GRPC_PORT:
 * String(sys.grpcPort) })`): the helper's clients reconnect within about a second, and
 * `startWorker` / `waitForStream` use the newest coordinator that is still running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { connectCoordinator, unary, type CoordinatorClients } from '../../src/wire/client.js';
import { eventually, isAlive, pidsWithToken } from './processes.js';
import { mountsUnder, unmount } from '../../src/worker/disk-quota.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const cliPath = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

export type LogLine = Record<string, unknown> & { msg?: string; pid?: number; name?: string; workerId?: string; level?: number };

/** The process's start time (field 22 of /proc/<pid>/stat), to tell a reused pid apart. */
export function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** The command line of a process (for messages), or '?'. */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').slice(0, 200);
  } catch {
    return '?';
  }
}

/** Every live process's parent, from /proc (pid → ppid). */
function parentsNow(): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] !== 'Z' && fields[0] !== 'X') out.set(Number(name), Number(fields[1]));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * Remembers processes (with their start times, since pids get reused): the roots it is given,
 * and, by polling /proc while they run, every descendant of them (a worker's lock helper, venv
 * builds, sandboxes, warm interpreters). `leftovers()` are those still alive.
 */
export class ProcessTracker {
  readonly pids = new Map<number, string | undefined>();
  private readonly roots = new Set<number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly pollMs = 300) {}

  /** Tracks `pid` and, from now on, its descendants. */
  watch(pid: number): void {
    this.remember(pid);
    this.roots.add(pid);
    if (!this.timer) {
      this.timer = setInterval(() => this.scan(), this.pollMs);
      this.timer.unref();
    }
  }

  remember(pid: number): void {
    if (!this.pids.has(pid)) this.pids.set(pid, startTime(pid));
  }

  /** One look at /proc: every live descendant of a tracked process is tracked too. */
  scan(): void {
    const parents = parentsNow();
    const children = new Map<number, number[]>();
    for (const [pid, ppid] of parents) {
      const list = children.get(ppid);
      if (list) list.push(pid);
      else children.set(ppid, [pid]);
    }
    const alive = [...this.pids].filter(([pid, started]) => started !== undefined && parents.has(pid) && startTime(pid) === started).map(([pid]) => pid);
    const queue = [...new Set([...alive, ...[...this.roots].filter((r) => parents.has(r))])];
    while (queue.length) {
      const pid = queue.pop()!;
      for (const child of children.get(pid) ?? []) {
        if (this.pids.has(child) && this.pids.get(child) === startTime(child)) continue;
        this.pids.set(child, startTime(child));
        queue.push(child);
      }
    }
  }

  /** Tracked processes still alive (the same process: same start time). */
  leftovers(): number[] {
    return [...this.pids].filter(([pid, started]) => started !== undefined && isAlive(pid) && startTime(pid) === started).map(([pid]) => pid);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** One process this helper started: its log lines (JSON from stdout and stderr) and its end. */
export class SystemProcess {
  readonly lines: LogLine[] = [];
  readonly raw: string[] = [];
  /** Log lines that carry a key twice (pino writes every level's bindings; JSON.parse would hide it). */
  readonly repeatedKeys: string[] = [];
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: Array<() => void> = [];

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    private readonly onLine: (line: LogLine) => void,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        this.notify();
        resolve({ code, signal });
      });
    });
    for (const stream of [child.stdout, child.stderr]) {
      let buf = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          this.take(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      });
      stream?.on('end', () => {
        if (buf) this.take(buf);
        buf = '';
      });
    }
  }

  get pid(): number {
    return this.child.pid!;
  }

  private take(text: string): void {
    this.raw.push(text);
    if (this.raw.length > 20_000) this.raw.splice(0, 10_000);
    if (!text.startsWith('{')) return;
    try {
      const line = JSON.parse(text) as LogLine;
      const repeated = repeatedTopLevelKey(text);
      if (repeated && this.repeatedKeys.length < 5) this.repeatedKeys.push(`${repeated} in ${text.slice(0, 300)}`);
      this.lines.push(line);
      this.onLine(line);
      this.notify();
    } catch {
      // not a log line
    }
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** The first log line (from index `from` on) that `pred` accepts; rejects after `timeoutMs` or when the process exits. */
  waitForLine(pred: (l: LogLine) => boolean, timeoutMs = 30_000, from = 0): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no matching log line within ${timeoutMs} ms; last lines:\n${this.raw.slice(-15).join('\n')}`)), timeoutMs);
      let seen = from;
      const check = () => {
        for (; seen < this.lines.length; seen++) {
          if (pred(this.lines[seen]!)) {
            clearTimeout(timer);
            return resolve(this.lines[seen]!);
          }
        }
        if (this.exit) {
          clearTimeout(timer);
          return reject(new Error(`${this.name} exited (${JSON.stringify(this.exit)}) before the log line; last lines:\n${this.raw.slice(-15).join('\n')}`));
        }
        this.waiters.push(check);
      };
      check();
    });
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.exit) this.child.kill(sig);
  }
}

export interface SystemOptions {
  /** Extra environment for every process (coordinator and workers). */
  env?: Record<string, string>;
  label?: string;
}

const baseEnv = (): NodeJS.ProcessEnv => {
  // Nothing of the test runner's own configuration leaks in, except what node and python need.
  const keep = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR', 'NODE_OPTIONS', 'PYTHONDONTWRITEBYTECODE'];
  const env: NodeJS.ProcessEnv = {};
  for (const k of keep) if (process.env[k] !== undefined) env[k] = process.env[k];
  return env;
};

/** A system under test. Create it with `new TestSystem()`, then start an `up` or the parts. */
export class TestSystem {
  readonly root: string;
  readonly procs: SystemProcess[] = [];
  /** Every pid named in any log line, every process spawned here and their descendants, with its start time (pids get reused). */
  readonly tracker = new ProcessTracker();
  grpcPort = 0;
  httpPort = 0;
  private clientsCache: CoordinatorClients | undefined;
  private stopped = false;
  private readonly exitGuard = () => this.killAll();

  constructor(private readonly opts: SystemOptions = {}) {
    if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run \`npm run build\` first`);
    this.root = mkdtempSync(path.join(tmpdir(), `codegen-sys-${opts.label ?? 'test'}-`));
    process.once('exit', this.exitGuard);
  }

  get pids(): Map<number, string | undefined> {
    return this.tracker.pids;
  }

  get address(): string {
    return `127.0.0.1:${this.grpcPort}`;
  }

  /** The state folder every process of this system shares (CODEGEN_STATE_DIR): the coordinator makes its tokens there. */
  get stateDir(): string {
    return path.join(this.root, 'state');
  }

  /** The client token the coordinator made at its first start (the default tenant's, admin). */
  get clientToken(): string {
    const configured = this.opts.env?.['CLIENT_TOKEN'];
    if (configured) return configured;
    return readFileSync(path.join(this.stateDir, 'client-token'), 'utf8').trim();
  }

  /** The worker token the coordinator uses (configured in the system's env, or made at its first start). */
  get workerToken(): string {
    const configured = this.opts.env?.['WORKER_TOKEN'];
    if (configured) return configured;
    const file = path.join(this.stateDir, 'worker-token');
    return existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  }

  /**
   * Raw clients of the coordinator with its client token, and its worker token on WorkerLifecycle
   * calls (tests that act as a worker); they reconnect within about a second when it restarts on the same port.
   */
  get clients(): CoordinatorClients {
    if (!this.clientsCache) this.clientsCache = this.connect(this.clientToken, undefined, this.address, this.workerToken);
    return this.clientsCache;
  }

  /** Raw clients that send `token` as their bearer credential ('' = none); the caller closes them. */
  connect(token: string, tls?: { ca: string; cert?: string; key?: string; serverName?: string }, address = this.address, workerToken = ''): CoordinatorClients {
    return connectCoordinator(address, { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1_000 }, { token, ...(tls ? { tls } : {}), ...(workerToken ? { metadata: { 'x-worker-token': workerToken } } : {}) });
  }

  /** The newest coordinator process started with startCoordinator that has not exited. */
  get coordinator(): SystemProcess | undefined {
    return this.procs.filter((p) => p.name === 'coordinator' && !p.exit).at(-1);
  }

  /** Every log line of every process, in arrival order per process. */
  allLines(): LogLine[] {
    return this.procs.flatMap((p) => p.lines);
  }

  private remember(pid: number): void {
    this.tracker.remember(pid);
  }

  private spawnCli(name: string, args: string[], env: Record<string, string>): SystemProcess {
    const child = spawn(process.execPath, [cliPath, ...args], {
      cwd: this.root,
      // No recovery grace by default: a fresh test coordinator has nothing to recover, and tests of unknown ids expect NOT_FOUND at once.
      env: { ...baseEnv(), LOG_LEVEL: 'info', RECOVERY_GRACE_SECONDS: '0', CODEGEN_STATE_DIR: this.stateDir, ...this.opts.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: killing -pid reaches `up`'s children too.
      detached: true,
    });
    if (child.pid) this.tracker.watch(child.pid);
    const proc = new SystemProcess(name, child, (line) => {
      if (typeof line.pid === 'number') this.remember(line.pid);
    });
    this.procs.push(proc);
    return proc;
  }

  /** `codegen-mcp up` with `workers` workers; resolves when every worker's task stream is open. */
  async startUp(workers: number, env: Record<string, string> = {}): Promise<SystemProcess> {
    const up = this.spawnCli('up', ['up'], {
      WORKERS: String(workers),
      GRPC_HOST: '127.0.0.1',
      GRPC_PORT: '0',
      HTTP_PORT: '0',
      BASE_WORKSPACE: path.join(this.root, 'ws'),
      SANDBOX: 'auto',
      ...env,
    });
    const ready = await up.waitForLine((l) => l.msg === 'system up', 60_000);
    this.grpcPort = Number(ready['grpcPort']);
    this.httpPort = Number(ready['httpPort'] ?? 0);
    await Promise.all(Array.from({ length: workers }, (_, i) => this.waitForStream(up, `worker-${i + 1}`)));
    return up;
  }

  /** A coordinator alone on an ephemeral port (or on `GRPC_PORT` from `env`, e.g. the previous one's port to restart it). */
  async startCoordinator(env: Record<string, string> = {}): Promise<SystemProcess> {
    const c = this.spawnCli('coordinator', ['coordinator'], { GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0', ...env });
    const line = await c.waitForLine((l) => l.msg === 'coordinator gRPC listening', 60_000);
    this.grpcPort = Number(line['port']);
    return c;
  }

  /** A worker of the coordinator started with startCoordinator; `waitReady: false` to not wait for its stream. */
  async startWorker(workerId: string, env: Record<string, string> = {}, waitReady = true): Promise<SystemProcess> {
    const coordinator = this.coordinator;
    // A worker started again under the same id: only a stream opened from now on counts.
    const from = coordinator?.lines.length ?? 0;
    const w = this.spawnCli(workerId, ['worker'], {
      WORKER_ID: workerId,
      COORDINATOR_ADDR: this.address,
      BASE_WORKSPACE: path.join(this.root, 'ws', workerId),
      SANDBOX: 'auto',
      ...env,
    });
    if (waitReady && coordinator) await this.waitForStream(coordinator, workerId, from);
    return w;
  }

  /** Waits for the coordinator's "worker task stream open" line for `workerId`, from line `from` on. */
  waitForStream(proc: SystemProcess, workerId: string, from = 0, timeoutMs = 60_000): Promise<LogLine> {
    return proc.waitForLine((l) => l.msg === 'worker task stream open' && l.workerId === workerId, timeoutMs, from);
  }

  /** The pid of the latest process that logged as worker `workerId`. */
  workerPid(workerId: string): number {
    const lines = this.allLines().filter((l) => l.name === 'worker' && l.workerId === workerId && typeof l.pid === 'number');
    const pid = lines.at(-1)?.pid;
    if (!pid) throw new Error(`no log line from worker ${workerId}`);
    return pid;
  }

  /** Health of the coordinator (grpc.health.v1). */
  async health(service = ''): Promise<string> {
    const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as any;
    const client = new pkg.grpc.health.v1.Health(this.address, grpc.credentials.createInsecure());
    try {
      // The health client is built from its own proto (untyped here).
      const res = (await unary(client, 'Check' as never, { service } as never, { deadlineMs: 10_000 })) as { status: string };
      return res.status;
    } finally {
      client.close();
    }
  }

  /** The service names server reflection lists (grpc.reflection.v1). */
  async reflectionServices(): Promise<string[]> {
    const require = createRequire(import.meta.url);
    const pkgDir = path.dirname(require.resolve('@grpc/reflection/package.json'));
    const def = protoLoader.loadSync(path.join(pkgDir, 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto'), { keepCase: true, enums: String, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as any;
    const client = new pkg.grpc.reflection.v1.ServerReflection(this.address, grpc.credentials.createInsecure());
    try {
      return await new Promise<string[]>((resolve, reject) => {
        const call = client.ServerReflectionInfo({ deadline: new Date(Date.now() + 10_000) });
        call.on('data', (res: any) => {
          if (res.message_response === 'list_services_response') resolve(res.list_services_response.service.map((s: { name: string }) => s.name));
          else reject(new Error(`unexpected reflection answer ${JSON.stringify(res)}`));
          call.end();
        });
        call.on('error', reject);
        call.write({ host: '', list_services: '' });
      });
    } finally {
      client.close();
    }
  }

  /** Processes still alive: those that logged or were spawned here, and any whose command line names the test folder. */
  leftovers(): number[] {
    return [...new Set([...this.tracker.leftovers(), ...pidsWithToken(this.root)])];
  }

  private killAll(): void {
    for (const p of this.procs) {
      try {
        process.kill(-p.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const pid of this.leftovers()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }

  /**
   * SIGTERM to every top-level process (workers before the coordinator), bounded; then SIGKILL
   * to what is left. Throws when any process outlived the graceful stop.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // CODEGEN_TEST_DUMP=<dir>: every process's output is kept there, for a failure's post-mortem.
    const dump = process.env['CODEGEN_TEST_DUMP'];
    if (dump) {
      mkdirSync(dump, { recursive: true });
      this.procs.forEach((p, i) => writeFileSync(path.join(dump, `${this.opts.label ?? 'test'}-${i}-${p.name}.log`), p.raw.join('\n') + '\n'));
    }
    this.clientsCache?.close();
    const order = [...this.procs].sort((a, b) => rank(a) - rank(b));
    for (const group of [order.filter((p) => rank(p) === 0), order.filter((p) => rank(p) === 1)]) {
      for (const p of group) p.signal('SIGTERM');
      await Promise.all(group.map((p) => Promise.race([p.exited, new Promise((r) => setTimeout(r, 45_000))])));
    }
    const gone = await eventually(() => this.leftovers().length === 0, 15_000, 100);
    const left = gone ? [] : this.leftovers().map((pid) => `${pid}: ${commandLine(pid)}`);
    this.killAll();
    this.tracker.close();
    process.removeListener('exit', this.exitGuard);
    // Sessions' filesystems (disk quotas) a killed worker left mounted: a graceful stop unmounts its own.
    for (const m of mountsUnder(this.root)) await unmount(m);
    if (left.length === 0) rmSync(this.root, { recursive: true, force: true });
    if (left.length > 0) throw new Error(`processes outlived the system (killed now):\n${left.join('\n')}`);
    const repeated = this.procs.flatMap((p) => p.repeatedKeys.map((r) => `${p.name}: ${r}`));
    if (repeated.length > 0) throw new Error(`log lines with a key twice:\n${repeated.join('\n')}`);
  }
}

/** The first key a JSON object's text has twice at its top level, if any. */
export function repeatedTopLevelKey(text: string): string | undefined {
  const keys = new Set<string>();
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) {
        const key = text.slice(i + 1, j);
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return undefined;
}

const rank = (p: SystemProcess): number => (p.name === 'coordinator' || p.name === 'up' ? 1 : 0);


// ---------------------------------------------------------------------------------------------
// gRPC conveniences over the raw clients.

export type Wire = Record<string, any>;

/** What one ExecuteTask call produced. */
export interface TaskRun {
  taskId: string;
  responses: Wire[];
  logs: Array<{ stream: string; line: string; at: number }>;
  result?: Wire;
  error?: Wire;
  /** The call's own failure (a gRPC status), when the stream ended with one. */
  status?: grpc.ServiceError;
}

export interface StartedTask {
  call: grpc.ClientReadableStream<Wire>;
  done: Promise<TaskRun>;
  /** Resolves with the first log line `pred` accepts. */
  waitForLog(pred: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  run: TaskRun;
}

export function startTask(clients: CoordinatorClients, request: Wire, deadlineMs = 180_000): StartedTask {
  const call = clients.tasks['ExecuteTask'](request, new grpc.Metadata(), { deadline: new Date(Date.now() + deadlineMs) }) as grpc.ClientReadableStream<Wire>;
  const run: TaskRun = { taskId: '', responses: [], logs: [] };
  let listeners: Array<() => void> = [];
  const notify = () => {
    const l = listeners;
    listeners = [];
    l.forEach((f) => f());
  };
  const done = new Promise<TaskRun>((resolve) => {
    call.on('data', (res: Wire) => {
      run.responses.push(res);
      run.taskId ||= res['task_id'];
      if (res['payload'] === 'log') run.logs.push({ stream: res['log'].stream, line: res['log'].line, at: Date.now() });
      if (res['payload'] === 'result') run.result = res['result'];
      if (res['payload'] === 'error') run.error = res['error'];
      notify();
    });
    call.on('error', (err: grpc.ServiceError) => {
      run.status = err;
      notify();
      resolve(run);
    });
    call.on('end', () => {
      notify();
      resolve(run);
    });
  });
  let ended = false;
  void done.then(() => (ended = true));
  const waitForLog = (pred: (line: string) => boolean, timeoutMs = 60_000) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; got ${JSON.stringify(run.logs.map((l) => l.line))}`)), timeoutMs);
      const check = () => {
        const hit = run.logs.find((l) => pred(l.line));
        if (hit) {
          clearTimeout(timer);
          return resolve(hit.line);
        }
        if (ended || run.status || run.result || run.error) {
          clearTimeout(timer);
          return reject(new Error(`the task ended without a matching log line: ${JSON.stringify({ logs: run.logs.map((l) => l.line), result: run.result, error: run.error, status: run.status?.details })}`));
        }
        listeners.push(check);
      };
      check();
    });
  return { call, done, waitForLog, run };
}

export const runTask = (clients: CoordinatorClients, request: Wire, deadlineMs?: number): Promise<TaskRun> => startTask(clients, request, deadlineMs).done;

/** A run_python request on a session. */
export const python = (sessionId: string, code: string, extra: Wire = {}, taskExtra: Wire = {}): Wire => ({
  session_id: sessionId,
  typed_request: { run_python: { code, ...extra } },
  ...taskExtra,
});

/** The tool's typed response of a finished task, or a thrown description of what happened instead. */
export function replyOf(run: TaskRun, tool: string): Wire {
  if (!run.result) throw new Error(`task ${run.taskId} has no result: ${JSON.stringify({ error: run.error, status: run.status?.details, code: run.status?.code })}`);
  const typed = run.result['typed_response'];
  if (!typed || typed['response'] !== tool) throw new Error(`task ${run.taskId}: no ${tool} response in ${JSON.stringify(run.result)}`);
  return typed[tool];
}

/** The gRPC error a promise rejects with (fails when it resolves). */
export async function grpcError(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    const v = await p;
    throw new Error(`expected a gRPC error, got ${JSON.stringify(v)}`);
  } catch (err) {
    if ((err as grpc.ServiceError).code === undefined) throw err;
    return err as grpc.ServiceError;
  }
}

export { unary, grpc };

/** A session's status (GetSessionStatus), with its int64 times as numbers. */
export async function sessionStatus(clients: CoordinatorClients, sessionId: string): Promise<Wire & { restartedAtMs: number; unreachableSinceMs: number }> {
  const s = (await unary(clients.sessions, 'GetSessionStatus', { session_id: sessionId }, { deadlineMs: 10_000 })) as Wire;
  return { ...s, restartedAtMs: Number(s['info']?.['restarted_at_ms'] ?? 0), unreachableSinceMs: Number(s['info']?.['worker_unreachable_since_ms'] ?? 0) };
}

/**
 * A session's status once its last task's end has been reported: the worker's report that the
 * session left BUSY can reach the coordinator a moment after the task's result reached the client.
 */
export function settledStatus(clients: CoordinatorClients, sessionId: string, timeoutMs = 5_000): ReturnType<typeof sessionStatus> {
  return until(() => sessionStatus(clients, sessionId), (s) => s['state'] !== 'SESSION_STATE_BUSY' && s['info']?.['active_tasks'] === 0, timeoutMs, 50, `session ${sessionId} no longer BUSY`);
}

/** Polls `probe` until `accept` takes its value (errors count as not yet); returns the last value, or throws with it after `timeoutMs`. */
export async function until<T>(probe: () => Promise<T>, accept: (v: T) => boolean, timeoutMs = 30_000, stepMs = 100, what = 'the condition'): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: { value?: T; error?: unknown } = {};
  for (;;) {
    try {
      const value = await probe();
      last = { value };
      if (accept(value)) return value;
    } catch (error) {
      last = { error };
    }
    if (Date.now() > end) {
      const seen = 'error' in last ? `error ${String((last.error as Error)?.message ?? last.error)}` : JSON.stringify(last.value);
      throw new Error(`${what} did not hold within ${timeoutMs} ms; last: ${seen}`);
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** One log record as pino-pretty prints it in a terminal: `[HH:MM:ss.l] LEVEL (name): msg`, then `    key: value` lines. */
export interface PrettyRecord {
  level: string;
  name: string;
  msg: string;
  /** Top-level fields, JSON-decoded where they are JSON. */
  fields: Record<string, unknown>;
  /** Index of the record's first line in the output. */
  line: number;
}

const PRETTY_HEAD = /^\[\d\d:\d\d:\d\d\.\d+\] (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) \(([^)]*)\): (.*)$/;
const PRETTY_FIELD = /^ {4}([A-Za-z_][\w]*): (.*)$/;

/** The log records in a terminal's output (ANSI escapes already removed), in order. */
export function prettyRecords(lines: readonly string[]): PrettyRecord[] {
  const out: PrettyRecord[] = [];
  let current: PrettyRecord | undefined;
  lines.forEach((text, i) => {
    const head = PRETTY_HEAD.exec(text);
    if (head) {
      current = { level: head[1]!, name: head[2]!, msg: head[3]!, fields: {}, line: i };
      out.push(current);
      return;
    }
    const field = current && PRETTY_FIELD.exec(text);
    if (current && field) {
      try {
        current.fields[field[1]!] = JSON.parse(field[2]!);
      } catch {
        current.fields[field[1]!] = field[2];
      }
    } else if (!/^ {4}/.test(text)) current = undefined;
  });
  return out;
}
