/**
 * The coordinator's scale figures (issue 7): a benchmark, not a timed test. `make bench` runs it
 * after bench/run.ts; alone: `node dist/bench/scale.js` (SCALE_ONLY=floor,tree-one,tree-fleet,
 * grpc-one,grpc-fleet picks parts; SCALE_CPU_PROF=<dir> profiles every process it starts).
 * Prints a Markdown table and one JSON line (`{"scale": …}`); BENCHMARKS.md records a run.
 *
 * Two shapes, each measured in process (the actor tree alone, no gRPC) and through the real gRPC
 * API (a coordinator process and synthetic workers speaking the real worker protocol):
 *   - fleet: 1,000 workers × 10 sessions (the guide's "1 worker per 5-10 concurrent sessions");
 *   - one:   1 worker holding 10,000 sessions (a shard must not be quadratic either).
 *
 * In process, the root is made as src/coordinator/main.ts makes it and fed through the same
 * ports (WorkerRegistry, ActorCoordinatorPort); each worker's task stream is in memory and
 * answers every command on the next microtask with the real worker codecs (no protobuf bytes:
 * the messages keep the shape grpc-js would hand over). Each part runs in its own child process
 * (node --expose-gc), warmed up first on a tenth of the tree, which is then stopped: heap figures
 * are `heapUsed` after `gc()` minus the same before, and the first thousand is not charged for
 * the JIT. "Not quadratic" compares the median createSession call of the first and last
 * thousand (GC pauses land in either block at random; the block totals are shown too).
 *
 * Every comparison's baseline is measured in the same run:
 *   - the actor tree against the floor of XState itself: 10,000 trivial actors spawned one by one
 *     into the same bucketed shape (what any tree of 10,000 actors costs), and against the bare
 *     data (10,000 session reports in a Map: what the tree must hold anyway);
 *   - CreateSession/s against grpc.health.v1 Check on the same coordinator process, client and
 *     connection at the same concurrency (the floor of a unary call on that server);
 *   - ListSessions against the protobuf encode and decode of the same response alone, measured
 *     here with the same loader and options (work every call does at each end).
 * The machine's other load during the run is printed with the table: on a shared machine the
 * figures are only as good as it is small.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { assign, createActor, enqueueActions, setup } from 'xstate';
import { coordinatorConfig } from '../src/config/coordinator.js';
import { coordinatorActors } from '../src/coordinator/main.js';
import type { SessionReport } from '../src/domain/sessions.js';
import { newSessionId } from '../src/domain/ids.js';
import { createLogger } from '../src/log/logger.js';
import type { WorkerStream, WorkerStreamLink } from '../src/runtime/port.js';
import { connectCoordinator, unary, type CoordinatorClients } from '../src/wire/client.js';
import { loadProtos } from '../src/wire/protos.js';
import { sessionProxyIdOf, type SessionProxyActor } from '../machines/coordinator/session-proxy.machine.js';
import { answerCommand, asReceivedCommand, asReceivedWorkerMessage, heldSession, SyntheticWorker, workerLifecycleClient } from './synthetic-worker.js';

/** The bench coordinator's credentials (given, so nothing is written to the state folder). */
const BENCH_CLIENT_TOKEN = `bench-client-${process.pid}`;
const BENCH_WORKER_TOKEN = `bench-worker-${process.pid}`;

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.join(here, '..', 'src', 'cli', 'main.js');
const SESSIONS = 10_000;

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN;
};
const ms = (x: number) => `${x.toFixed(x < 10 ? 2 : 0)} ms`;
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
const round = (x: number, digits = 1) => Number(x.toFixed(digits));
const tick = () => new Promise<void>((r) => setImmediate(r));
/** CPU time (user + system, all threads: the GC's helpers too) since `from`. */
const cpuMs = (from: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
};

// =============================================================================================
// In process: the coordinator's actor tree, as src/coordinator/main.ts builds it, with no gRPC.

function heap(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('the in-process scale bench needs node --expose-gc');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** The coordinator's root exactly as src/coordinator/main.ts makes it (same input, inspection, ports), with RECOVERY_GRACE 0. */
function coordinatorTree() {
  // BENCH_INSPECT_URL: the same tree with the Stately inspector on (bench/inspection.ts).
  const config = coordinatorConfig({ RECOVERY_GRACE_SECONDS: '0', STATELY_INSPECT_URL: process.env['BENCH_INSPECT_URL'] ?? '' });
  const logger = createLogger({ level: 'warn', name: 'scale', stream: 'stderr', pretty: false });
  const { root, streams, coordinator: port, registry, inspection } = coordinatorActors(config, logger);
  const warnings: string[] = [];
  root.subscribe({ error: (err) => warnings.push(`root failed: ${String(err)}`) });
  root.on('coordinator.warning', (e) => warnings.push(e.message));
  root.start();
  const links: WorkerStreamLink[] = [];
  const workers: Array<{ workerId: string; registrationId: string }> = [];
  const beats = setInterval(() => {
    for (const w of workers) registry.heartbeat(w.workerId, w.registrationId);
  }, config.heartbeatIntervalMs);
  return {
    root,
    port,
    registry,
    inspection,
    warnings,
    proxy: (id: string) => root.system.get(sessionProxyIdOf(id)) as SessionProxyActor | undefined,
    register(workerId: string, maxSessions: number, sessions: SessionReport[]) {
      const { registrationId } = registry.register({ workerId, instanceId: `inst-${workerId}`, maxSessions, isolation: 'none', hostname: 'bench', sessions });
      workers.push({ workerId, registrationId });
      return registrationId;
    },
    /** An in-memory task stream that answers every command at once (on the next microtask, as data from a socket would come later). */
    openStream(workerId: string, registrationId: string, held = new Map<string, SessionReport>()) {
      let link: WorkerStreamLink | undefined;
      const stream: WorkerStream = {
        write: (msg) => {
          const answers = answerCommand(workerId, `inst-${workerId}#0`, held, asReceivedCommand(msg), Date.now());
          queueMicrotask(() => {
            for (const a of answers) link?.receive(asReceivedWorkerMessage(a));
          });
        },
        end: () => {},
      };
      link = registry.openStream(workerId, registrationId, stream);
      links.push(link);
      return link;
    },
    cutAll() {
      workers.length = 0;
      for (const l of links.splice(0)) l.close('cut by the bench');
    },
    stop() {
      clearInterval(beats);
      streams.closeAll();
      root.stop();
    },
  };
}

async function until(pred: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error('timed out waiting in the scale bench');
    await tick();
  }
}

const workerName = (w: number) => `w${String(w).padStart(4, '0')}`;

interface RegisterFigures {
  /** every registration made → every listed session has its proxy */
  registerMs: number;
  registerCpuMs: number;
  /** per tenth of the workers (fleet); empty for one worker */
  registerBlocksMs: number[];
  /** streams opened → every proxy reachable */
  onlineMs: number;
  heapBytes: number;
  warnings: string[];
}

/** Registrations listing every session (a restarted coordinator, its fleet registering again). `base`: the heap before, or undefined not to measure it. */
async function registerShape(workers: number, sessions: number, base: number | undefined): Promise<RegisterFigures> {
  const perWorker = sessions / workers;
  const tree = coordinatorTree();
  const listed: string[] = [];
  const lists = Array.from({ length: workers }, (_, w) =>
    Array.from({ length: perWorker }, () => {
      const id = newSessionId();
      listed.push(id);
      return heldSession(workerName(w), id, Date.now());
    }),
  );
  const block = workers / 10;
  const registerBlocksMs: number[] = [];
  const regs: string[] = [];
  const cpu0 = process.cpuUsage();
  let t0 = performance.now();
  let tb = t0;
  for (let w = 0; w < workers; w++) {
    regs.push(tree.register(workerName(w), perWorker, lists[w]!));
    if (workers >= 10 && (w + 1) % block === 0) {
      registerBlocksMs.push(performance.now() - tb);
      tb = performance.now();
    }
  }
  await until(() => listed.every((id) => tree.proxy(id)));
  const registerMs = performance.now() - t0;
  const registerCpuMs = cpuMs(cpu0);
  t0 = performance.now();
  for (let w = 0; w < workers; w++) tree.openStream(workerName(w), regs[w]!, new Map(lists[w]!.map((r) => [r.description.sessionId, r])));
  await until(() => listed.every((id) => tree.proxy(id)?.getSnapshot().context.reachable));
  const onlineMs = performance.now() - t0;
  lists.length = 0;
  const heapBytes = base === undefined ? 0 : heap() - base;
  if (base === undefined) tree.stop();
  return { registerMs, registerCpuMs, registerBlocksMs, onlineMs, heapBytes, warnings: tree.warnings };
}

interface CreateFigures {
  /** SESSIONS createSession calls, one after the other */
  createMs: number;
  createCpuMs: number;
  createBlocksMs: number[];
  /** the median createSession of the first and of the last thousand, in µs: the per-call cost without the GC pauses that land in either */
  createP50FirstUs: number;
  createP50LastUs: number;
  heapBytes: number;
  listMs: number;
  /** every stream cut → every proxy unreachable */
  lossMs: number;
  /** root.stop() of the whole tree (a coordinator's shutdown) */
  stopMs: number;
  warnings: string[];
  /** inspection events the Stately inspector dropped (bench/inspection.ts: must be 0 for its figure to count) */
  inspectorDropped: number;
  /** events the inspector folded into their actor's latest state (its CPU budget), and how long after the last create it had sent everything */
  inspectorCoalesced: number;
  inspectorCatchUpMs: number;
}

/** Creates one by one through the port, every worker online with an answering stream. */
async function createShape(workers: number, sessions: number, base: number | undefined): Promise<CreateFigures> {
  const perWorker = sessions / workers;
  const tree = coordinatorTree();
  // With the inspector on, it is connected before the clock starts (the loop below leaves no turn for a handshake).
  for (let i = 0; tree.inspection.stately && !tree.inspection.stately.connected() && i < 500; i++) await new Promise((r) => setTimeout(r, 20));
  for (let w = 0; w < workers; w++) tree.openStream(workerName(w), tree.register(workerName(w), perWorker, []));
  const created: string[] = [];
  const createBlocksMs: number[] = [];
  const latencies: number[] = new Array(sessions);
  // The synthetic streams answer on a microtask, so this loop alone would never give the event loop
  // a turn: the inspector could send nothing until the end (and would drop what its queue cannot
  // hold). A server gets a turn between requests; the inspector bench gives one per create, in
  // both of its runs.
  const turnEachCreate = process.env['BENCH_INSPECT_URL'] !== undefined;
  const cpu0 = process.cpuUsage();
  let t0 = performance.now();
  let tb = t0;
  for (let i = 0; i < sessions; i++) {
    if (turnEachCreate) await new Promise((r) => setImmediate(r));
    const tc = performance.now();
    const view = await tree.port.createSession({});
    latencies[i] = performance.now() - tc;
    if (view.state !== 'READY') throw new Error(`session ${view.sessionId} is ${view.state}, not READY`);
    created.push(view.sessionId);
    if ((i + 1) % (sessions / 10) === 0) {
      createBlocksMs.push(performance.now() - tb);
      tb = performance.now();
    }
  }
  // Work deferred to timers (the inspector's, when it is on) is charged to the creates too.
  await new Promise((r) => setTimeout(r, 20));
  const createMs = performance.now() - t0;
  const createCpuMs = cpuMs(cpu0);
  const tenth = sessions / 10;
  const createP50FirstUs = quantile(latencies.slice(0, tenth), 0.5) * 1000;
  const createP50LastUs = quantile(latencies.slice(-tenth), 0.5) * 1000;
  const inspector = tree.inspection.stately;
  const inspectorCoalesced = inspector?.coalesced() ?? 0;
  const tc0 = performance.now();
  while (inspector && inspector.pending() > 0 && performance.now() - tc0 < 60_000) await new Promise((r) => setTimeout(r, 10));
  const inspectorCatchUpMs = performance.now() - tc0;
  const heapBytes = base === undefined ? 0 : heap() - base;
  const inspectorDropped = inspector?.dropped() ?? 0;
  const lists: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const all = await tree.port.listSessions();
    lists.push(performance.now() - t);
    if (all.length !== sessions) throw new Error(`listSessions gave ${all.length}, not ${sessions}`);
  }
  t0 = performance.now();
  tree.cutAll();
  await until(() => created.every((id) => (tree.proxy(id)?.getSnapshot().context.unreachableSinceMs ?? 0) > 0));
  const lossMs = performance.now() - t0;
  t0 = performance.now();
  tree.stop();
  const stopMs = performance.now() - t0;
  return { createMs, createCpuMs, createBlocksMs, createP50FirstUs, createP50LastUs, heapBytes, listMs: quantile(lists, 0.5), lossMs, stopMs, warnings: tree.warnings, inspectorDropped, inspectorCoalesced, inspectorCatchUpMs };
}


/** The floor of XState itself: trivial actors, spawned one event at a time into buckets of 100 under one parent, each with a systemId. */
const leaf = setup({ types: { input: {} as { id: string }, context: {} as { id: string; n: number } } }).createMachine({
  context: ({ input }) => ({ id: input.id, n: 0 }),
  initial: 'on',
  states: { on: { on: { poke: { actions: assign({ n: ({ context }) => context.n + 1 }) } } } },
});
const floorBucket = setup({ types: { events: {} as { type: 'add'; id: string } }, actors: { leaf } }).createMachine({
  on: { add: { actions: enqueueActions(({ enqueue, event }) => enqueue.spawnChild('leaf', { id: event.id, systemId: event.id, input: { id: event.id } })) } },
});
const floorParent = setup({ types: { context: {} as { n: number }, events: {} as { type: 'add'; id: string } }, actors: { floorBucket } }).createMachine({
  context: { n: 0 },
  on: {
    add: {
      actions: enqueueActions(({ context, enqueue, event }) => {
        const bucket = `b${Math.floor(context.n / 100)}`;
        if (context.n % 100 === 0) enqueue.spawnChild('floorBucket', { id: bucket, systemId: bucket });
        enqueue.sendTo(bucket, event);
        enqueue.assign({ n: context.n + 1 });
      }),
    },
  },
});

function floor(n: number): { ms: number; blocksMs: number[]; heapBytes: number; mapMs: number; mapHeapBytes: number } {
  const before = heap();
  const root = createActor(floorParent).start();
  const blocksMs: number[] = [];
  const t0 = performance.now();
  let tb = t0;
  for (let i = 0; i < n; i++) {
    root.send({ type: 'add', id: `leaf:${newSessionId()}` });
    if ((i + 1) % 1_000 === 0) {
      blocksMs.push(performance.now() - tb);
      tb = performance.now();
    }
  }
  const elapsed = performance.now() - t0;
  if (!root.system.get(`b${Math.floor((n - 1) / 100)}`)) throw new Error('the floor tree is incomplete');
  const heapBytes = heap() - before;
  root.stop();
  const before2 = heap();
  const map = new Map<string, SessionReport>();
  const t1 = performance.now();
  for (let i = 0; i < n; i++) {
    const id = newSessionId();
    map.set(id, heldSession('w', id, Date.now()));
  }
  const mapMs = performance.now() - t1;
  const mapHeapBytes = heap() - before2;
  if (map.size !== n) throw new Error('map');
  return { ms: elapsed, blocksMs, heapBytes, mapMs, mapHeapBytes };
}

/** Child-process entry: one part, warmed up on a tenth of it first (thrown away); prints one result line. */
async function inProcessChild(part: string): Promise<void> {
  let result: unknown;
  const [shape, what] = part.split(':');
  const workers = shape === 'fleet' ? 1_000 : 1;
  if (part === 'floor') {
    floor(1_000);
    result = floor(SESSIONS);
  } else if (what === 'register') {
    await registerShape(Math.max(1, workers / 10), SESSIONS / 10, undefined);
    const base = heap();
    result = { ...(await registerShape(workers, SESSIONS, base)), baseHeapBytes: base };
  } else if (what === 'create') {
    await createShape(Math.max(1, workers / 10), SESSIONS / 10, undefined);
    const base = heap();
    result = { ...(await createShape(workers, SESSIONS, base)), baseHeapBytes: base };
  } else {
    throw new Error(`unknown in-process part ${part}`);
  }
  process.stdout.write(`SCALE_CHILD_RESULT ${JSON.stringify(result)}\n`);
}

export function runChild<T>(shape: string, nodeArgs: string[], env: NodeJS.ProcessEnv = process.env): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', ...nodeArgs, fileURLToPath(import.meta.url), '--in-process', shape], { stdio: ['ignore', 'pipe', 'inherit'], env });
    let result: T | undefined;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('SCALE_CHILD_RESULT ')) result = JSON.parse(line.slice('SCALE_CHILD_RESULT '.length)) as T;
      else process.stderr.write(`[${shape}] ${line}\n`);
    });
    child.on('exit', (code) => (code === 0 && result ? resolve(result) : reject(new Error(`in-process scale child ${shape} exited ${code}`))));
  });
}

// =============================================================================================
// Through gRPC: a coordinator process, synthetic workers and an API client in this process.

interface LogLine {
  msg?: string;
  level?: number;
  port?: number;
  workerId?: string;
}

const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

class CoordinatorProcess {
  readonly lines: LogLine[] = [];
  private waiters: Array<() => void> = [];
  port = 0;
  private exited = false;

  private constructor(readonly proc: ChildProcess) {
    proc.once('exit', () => {
      this.exited = true;
      this.notify();
    });
    createInterface({ input: proc.stdout! }).on('line', (text) => {
      try {
        this.lines.push(JSON.parse(text) as LogLine);
        this.notify();
      } catch {
        // not a log line
      }
    });
  }

  /** LOG_LEVEL=info: the info lines are only the listen line and one per registration and stream; nothing per session. */
  static async start(nodeArgs: string[]): Promise<CoordinatorProcess> {
    const proc = spawn(process.execPath, [...nodeArgs, cli, 'coordinator'], {
      env: { ...process.env, GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_ENABLED: 'false', LOG_LEVEL: 'info', RECOVERY_GRACE_SECONDS: '0', CLIENT_TOKEN: BENCH_CLIENT_TOKEN, WORKER_TOKEN: BENCH_WORKER_TOKEN, TENANT_MAX_SESSIONS: '0', TENANT_MAX_CONCURRENT_TASKS: '0' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const c = new CoordinatorProcess(proc);
    const line = await c.waitFor(() => c.lines.find((l) => l.msg === 'coordinator gRPC listening'), 30_000);
    c.port = Number(line.port);
    return c;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  waitFor<T>(probe: () => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`coordinator: not seen within ${timeoutMs} ms`)), timeoutMs);
      const check = () => {
        const v = probe();
        if (v !== undefined && v !== false) {
          clearTimeout(timer);
          return resolve(v);
        }
        if (this.exited) {
          clearTimeout(timer);
          return reject(new Error('the coordinator exited'));
        }
        this.waiters.push(check);
      };
      check();
    });
  }

  /** Resolves when every worker named has its task stream open (counting from log line `from`). */
  streamsOpen(workerIds: string[], from: number): Promise<true> {
    const want = new Set(workerIds);
    let seen = from;
    return this.waitFor(() => {
      for (; seen < this.lines.length; seen++) {
        const l = this.lines[seen]!;
        if (l.msg === 'worker task stream open' && l.workerId) want.delete(l.workerId);
      }
      return want.size === 0 ? true : undefined;
    }, 60_000);
  }

  warnings(): string[] {
    return this.lines.filter((l) => (l.level ?? 0) >= 40).map((l) => l.msg ?? '?');
  }

  /** CPU seconds (user + system, every thread) the coordinator process has used so far. */
  cpuSeconds(): number {
    try {
      const stat = readFileSync(`/proc/${this.proc.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) / clockTicks;
    } catch {
      return NaN;
    }
  }

  rssBytes(): number {
    try {
      const status = readFileSync(`/proc/${this.proc.pid}/status`, 'utf8');
      const kb = /VmRSS:\s+(\d+)/.exec(status)?.[1];
      return kb ? Number(kb) * 1024 : 0;
    } catch {
      return 0;
    }
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const done = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 30_000);
    await done;
    clearTimeout(t);
  }
}

/** `n` calls of `fn`, `concurrency` at a time; each call's latency, and the whole run's time. */
async function concurrently<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<{ out: T[]; latencies: number[]; ms: number }> {
  const out: T[] = new Array(n);
  const latencies: number[] = new Array(n);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        const i = next++;
        const t = performance.now();
        out[i] = await fn(i);
        latencies[i] = performance.now() - t;
      }
    }),
  );
  return { out, latencies, ms: performance.now() - t0 };
}

function healthClient(api: CoordinatorClients) {
  const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  const channel = api.sessions.getChannel();
  return new pkg.grpc.health.v1.Health(channel.getTarget(), grpc.credentials.createInsecure(), { channelOverride: channel });
}

const healthCheck = (client: grpc.Client): Promise<unknown> =>
  new Promise((resolve, reject) => (client as unknown as { Check(req: object, cb: (err: Error | null, res: unknown) => void): void }).Check({ service: '' }, (err, res) => (err ? reject(err) : resolve(res))));

/** ExecuteTask echo: the message the worker echoed. */
function echo(api: CoordinatorClients, sessionId: string, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let last: { payload?: string; result?: { typed_response?: { echo?: { message?: string } } } } | undefined;
    const call = api.tasks.ExecuteTask({ session_id: sessionId, typed_request: { echo: { message } } });
    call.on('data', (d: typeof last) => (last = d));
    call.on('error', reject);
    call.on('end', () => (last?.payload === 'result' ? resolve(String(last.result?.typed_response?.echo?.message)) : reject(new Error(JSON.stringify(last ?? {})))));
  });
}

type SessionStatus = { session_id: string; info: { worker_unreachable_since_ms: string | number } | null };
const unreachable = (s: SessionStatus): boolean => Number(s.info?.worker_unreachable_since_ms ?? 0) > 0;

interface GrpcFigures {
  workers: number;
  startWorkersMs: number;
  healthPerSec: number;
  createPerSec: number;
  createP50: number;
  createP95: number;
  createCount: number;
  createCoordinatorCores: number;
  createBenchCores: number;
  destroyPerSec: number;
  listP50: number;
  listBytes: number;
  listEncodeP50: number;
  listDecodeP50: number;
  echoP50: number;
  rssBytes: number;
  lossFirstMs: number;
  lossProbeMs: number;
  lossSampleMs: number;
  lossListMs: number;
  lossSample: number;
  recoverRegisterMs?: number;
  recoverMs?: number;
  warnings: string[];
}

/** One shape through the real API: `workers` synthetic workers of `maxSessions` each, filled with SESSIONS sessions at 100 concurrent CreateSession calls. */
async function grpcShape(workerCount: number, maxSessions: number, nodeArgs: string[]): Promise<GrpcFigures> {
  const coord = await CoordinatorProcess.start(nodeArgs);
  // The workers' connections: one shared by all by default (SCALE_WORKER_CHANNELS to spread them).
  const wclients = Array.from({ length: Math.max(1, Number(process.env['SCALE_WORKER_CHANNELS'] ?? 1) || 1) }, () => workerLifecycleClient(coord.address, BENCH_WORKER_TOKEN));
  const wclient = wclients[0]!;
  const api = connectCoordinator(coord.address, { 'grpc.max_receive_message_length': -1, 'grpc.use_local_subchannel_pool': 1 }, { token: BENCH_CLIENT_TOKEN });
  const health = healthClient(api);
  let workers: SyntheticWorker[] = [];
  try {
    const from = coord.lines.length;
    workers = Array.from({ length: workerCount }, (_, i) => new SyntheticWorker({ workerId: `synth-${String(i).padStart(4, '0')}`, client: wclients[i % wclients.length]!, maxSessions }));
    let t0 = performance.now();
    await concurrently(workers.length, 50, (i) => workers[i]!.start());
    await coord.streamsOpen(workers.map((w) => w.workerId), from);
    const startWorkersMs = performance.now() - t0;

    // Baseline: the floor of a unary call on this server, this client, this connection.
    await concurrently(2_000, 100, () => healthCheck(health));
    const h = await concurrently(10_000, 100, () => healthCheck(health));
    const healthPerSec = 10_000 / (h.ms / 1000);

    // Warm-up (the coordinator process starts cold), then its sessions destroyed.
    const warm = await concurrently(1_000, 100, () => unary(api.sessions, 'CreateSession', {}));
    const d = await concurrently(warm.out.length, 100, (i) => unary(api.sessions, 'DestroySession', { session_id: warm.out[i]!.session_id }));
    const destroyPerSec = warm.out.length / (d.ms / 1000);

    const coordCpu0 = coord.cpuSeconds();
    const benchCpu0 = process.cpuUsage();
    const c = await concurrently(SESSIONS, 100, () => unary(api.sessions, 'CreateSession', {}));
    // How busy each side was: CPU seconds per second of the run (1.0 = one core the whole time).
    const createCoordinatorCores = (coord.cpuSeconds() - coordCpu0) / (c.ms / 1000);
    const createBenchCores = cpuMs(benchCpu0) / c.ms;
    const ids = c.out.map((s) => s.session_id);
    const createPerSec = SESSIONS / (c.ms / 1000);

    const { definition } = loadProtos();
    const listMethod = (definition['codegen.v1.SessionManagement'] as unknown as Record<string, protoLoader.MethodDefinition<object, object>>)['ListSessions']!;
    const lists: number[] = [];
    let listed: { sessions: SessionStatus[] } = { sessions: [] };
    for (let i = 0; i < 9; i++) {
      const t = performance.now();
      listed = (await unary(api.sessions, 'ListSessions', {})) as unknown as { sessions: SessionStatus[] };
      lists.push(performance.now() - t);
    }
    if (listed.sessions.length !== SESSIONS) throw new Error(`ListSessions gave ${listed.sessions.length} sessions, not ${SESSIONS}`);
    // The protobuf work of one ListSessions at each end, measured here with the same loader and options.
    const bytes = listMethod.responseSerialize(listed);
    const encodes: number[] = [];
    const decodes: number[] = [];
    for (let i = 0; i < 9; i++) {
      let t = performance.now();
      listMethod.responseSerialize(listed);
      encodes.push(performance.now() - t);
      t = performance.now();
      listMethod.responseDeserialize(bytes);
      decodes.push(performance.now() - t);
    }

    // The task path once more, to the synthetic worker and back: ExecuteTask echo, one at a time.
    const echoes: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      const reply = await echo(api, ids[i % ids.length]!, `m${i}`);
      echoes.push(performance.now() - t);
      if (reply !== `m${i}`) throw new Error(`echo answered ${JSON.stringify(reply)}`);
    }
    const rssBytes = coord.rssBytes();

    // Worker loss: every stream cut (and heartbeats stopped) at once; until every session shows its worker unreachable.
    // First a tight loop on three sessions (the first, middle and last made: one round trip of resolution),
    // then a sample of ~300 spread over all of them, then ListSessions showing all 10,000.
    const probes = [ids[0]!, ids[Math.floor(ids.length / 2)]!, ids[ids.length - 1]!];
    const status = (id: string) => unary(api.sessions, 'GetSessionStatus', { session_id: id }) as unknown as Promise<SessionStatus>;
    const step = Math.max(1, Math.floor(ids.length / 300));
    let pending = ids.filter((_, i) => i % step === 0);
    const lossSample = pending.length;
    let lossFirstMs = 0;
    t0 = performance.now();
    for (const w of workers) w.cut();
    let probing = probes;
    while (probing.length > 0) {
      const left = (await Promise.all(probing.map(status))).filter((s) => !unreachable(s)).map((s) => s.session_id);
      if (left.length < probing.length && !lossFirstMs) lossFirstMs = performance.now() - t0;
      probing = left;
      if (performance.now() - t0 > 60_000) throw new Error('sessions not marked unreachable within 60 s');
    }
    const lossProbeMs = performance.now() - t0;
    while (pending.length > 0) {
      pending = (await Promise.all(pending.map(status))).filter((s) => !unreachable(s)).map((s) => s.session_id);
      if (performance.now() - t0 > 60_000) throw new Error('sessions not marked unreachable within 60 s');
    }
    const lossSampleMs = performance.now() - t0;
    for (;;) {
      const all = (await unary(api.sessions, 'ListSessions', {})) as unknown as { sessions: SessionStatus[] };
      if (all.sessions.length === SESSIONS && all.sessions.every(unreachable)) break;
      if (performance.now() - t0 > 60_000) throw new Error('ListSessions did not show every session unreachable within 60 s');
    }
    const lossListMs = performance.now() - t0;

    // One worker: it comes back (a new process, same id) listing its 10,000 sessions; until they are reachable again.
    let recoverRegisterMs: number | undefined;
    let recoverMs: number | undefined;
    if (workerCount === 1) {
      const old = workers[0]!;
      const back = new SyntheticWorker({ workerId: old.workerId, client: wclient, maxSessions, sessions: [...old.held.values()] });
      workers = [back];
      const from2 = coord.lines.length;
      t0 = performance.now();
      await back.register();
      recoverRegisterMs = performance.now() - t0;
      back.openStream();
      await coord.streamsOpen([back.workerId], from2);
      for (;;) {
        const all = (await unary(api.sessions, 'ListSessions', {})) as unknown as { sessions: SessionStatus[] };
        if (all.sessions.length === SESSIONS && !all.sessions.some(unreachable)) break;
        if (performance.now() - t0 > 60_000) throw new Error('sessions not reachable again within 60 s');
      }
      recoverMs = performance.now() - t0;
    }
    return {
      workers: workerCount,
      startWorkersMs,
      healthPerSec,
      createPerSec,
      createP50: quantile(c.latencies, 0.5),
      createP95: quantile(c.latencies, 0.95),
      createCount: SESSIONS,
      createCoordinatorCores,
      createBenchCores,
      destroyPerSec,
      listP50: quantile(lists, 0.5),
      listBytes: bytes.length,
      listEncodeP50: quantile(encodes, 0.5),
      listDecodeP50: quantile(decodes, 0.5),
      echoP50: quantile(echoes, 0.5),
      rssBytes,
      lossFirstMs,
      lossProbeMs,
      lossSampleMs,
      lossListMs,
      lossSample,
      ...(recoverRegisterMs !== undefined ? { recoverRegisterMs, recoverMs } : {}),
      warnings: coord.warnings(),
    };
  } finally {
    for (const w of workers) w.cut();
    health.close();
    api.close();
    for (const c of wclients) c.close();
    await coord.stop();
  }
}

// =============================================================================================

type Measured<T> = T & { baseHeapBytes: number };
type ChildFloor = ReturnType<typeof floor>;
interface TreeFigures {
  register?: Measured<RegisterFigures>;
  create?: Measured<CreateFigures>;
}

export interface ScaleFigures {
  /** CPU the rest of the machine used during the run, in cores: the figures are only as good as this is small. */
  otherLoadCores?: number;
  floor?: ChildFloor;
  tree: { one: TreeFigures; fleet: TreeFigures };
  grpc: { one?: GrpcFigures; fleet?: GrpcFigures };
}

const ratio = (blocks: number[]) => (blocks.length >= 2 ? blocks[blocks.length - 1]! / blocks[0]! : NaN);
const verdict = (ok: boolean) => (ok ? 'met' : 'missed');
const shapes = [
  ['one', '1 worker × 10,000'],
  ['fleet', '1,000 workers × 10'],
] as const;

export function scaleTable(f: ScaleFigures): string[][] {
  const rows: string[][] = [];
  const fl = f.floor;
  if (fl) {
    rows.push(['floor: 10,000 trivial XState actors spawned one by one (buckets of 100)', ms(fl.ms), `first/last 1,000: ${ms(fl.blocksMs[0]!)} / ${ms(fl.blocksMs.at(-1)!)} (${ratio(fl.blocksMs).toFixed(2)}×); heap ${mb(fl.heapBytes)}`, 'baseline', '']);
    rows.push(['floor: 10,000 session reports in a Map', ms(fl.mapMs), `heap ${mb(fl.mapHeapBytes)}`, 'baseline', '']);
  }
  for (const [key, name] of shapes) {
    const c = f.tree[key].create;
    if (c) {
      const r = ratio(c.createBlocksMs);
      const r50 = c.createP50LastUs / c.createP50FirstUs;
      rows.push([
        `tree, ${name}: 10,000 createSession one by one`,
        ms(c.createMs),
        `CPU ${ms(c.createCpuMs)}; first/last 1,000: ${ms(c.createBlocksMs[0]!)} / ${ms(c.createBlocksMs.at(-1)!)} (${r.toFixed(2)}×), median call ${c.createP50FirstUs.toFixed(0)} / ${c.createP50LastUs.toFixed(0)} µs (${r50.toFixed(2)}×)${fl ? `; ${(c.createMs / fl.ms).toFixed(1)}× the floor` : ''}`,
        '≤ 1 s; last/first ≤ 1.5×',
        `${verdict(c.createMs <= 1_000)}; ${r50 <= 1.5 ? 'not quadratic' : 'grows'}`,
      ]);
      rows.push([`tree, ${name}: heap with 10,000 created sessions (after gc)`, mb(c.heapBytes), `${(c.heapBytes / SESSIONS / 1024).toFixed(1)} KB/session (process heap before: ${mb(c.baseHeapBytes)})`, '≤ 150 MB', verdict(c.heapBytes <= 150 * 2 ** 20)]);
      rows.push([`tree, ${name}: listSessions at 10,000 (in process, p50 of 5)`, ms(c.listMs), '', '', '']);
      rows.push([`tree, ${name}: every stream cut → 10,000 proxies unreachable`, ms(c.lossMs), '', '≤ 1 s', verdict(c.lossMs <= 1_000)]);
      rows.push([`tree, ${name}: root.stop() with 10,000 sessions`, ms(c.stopMs), "the coordinator's last step at shutdown", '', '']);
    }
    const g = f.tree[key].register;
    if (g) {
      const rr = ratio(g.registerBlocksMs);
      rows.push([
        `tree, ${name}: registrations listing 10,000 sessions → every proxy`,
        ms(g.registerMs),
        `CPU ${ms(g.registerCpuMs)}; ${g.registerBlocksMs.length >= 2 ? `first/last 100 workers: ${ms(g.registerBlocksMs[0]!)} / ${ms(g.registerBlocksMs.at(-1)!)} (${rr.toFixed(2)}×); ` : ''}streams open → all reachable ${ms(g.onlineMs)}; heap ${mb(g.heapBytes)}`,
        '≤ 1 s',
        verdict(g.registerMs <= 1_000 && (Number.isNaN(rr) || rr <= 1.5)),
      ]);
    }
  }
  for (const [key, name] of shapes) {
    const g = f.grpc[key];
    if (!g) continue;
    rows.push([`gRPC, ${name}: health Check at 100 concurrent (baseline)`, `${g.healthPerSec.toFixed(0)} calls/s`, 'same server, client and connection', 'baseline', '']);
    rows.push([`gRPC, ${name}: CreateSession at 100 concurrent`, `${g.createPerSec.toFixed(0)} /s`, `${g.createCount} sessions; latency p50 ${ms(g.createP50)}, p95 ${ms(g.createP95)}; ${(g.createPerSec / g.healthPerSec).toFixed(2)}× the baseline; CPU: coordinator ${g.createCoordinatorCores.toFixed(2)} cores (${((g.createCoordinatorCores * 1e6) / g.createPerSec).toFixed(0)} µs per call, so at most ~${(g.createPerSec / g.createCoordinatorCores).toFixed(0)} /s on one free core), bench process (client + workers) ${g.createBenchCores.toFixed(2)}`, '≥ 2,000 /s', verdict(g.createPerSec >= 2_000)]);
    rows.push([`gRPC, ${name}: ListSessions at 10,000 (p50 of 9)`, ms(g.listP50), `${mb(g.listBytes)} response; its protobuf encode ${ms(g.listEncodeP50)} and decode ${ms(g.listDecodeP50)} alone (baseline, same loader)`, '≤ 100 ms', verdict(g.listP50 <= 100)]);
    rows.push([
      `gRPC, ${name}: ${g.workers === 1 ? 'the worker' : `all ${g.workers} workers`} lost → sessions marked unreachable`,
      ms(g.lossProbeMs),
      `first, middle and last session polled (first seen ${ms(g.lossFirstMs)}); ${g.lossSample} sampled by GetSessionStatus all marked at ${ms(g.lossSampleMs)}; ListSessions shows all 10,000 at ${ms(g.lossListMs)}`,
      '≤ 1 s',
      verdict(g.lossProbeMs <= 1_000),
    ]);
    if (g.recoverMs !== undefined) rows.push([`gRPC, ${name}: the worker back, listing 10,000 → all reachable`, ms(g.recoverMs), `RegisterWorker itself ${ms(g.recoverRegisterMs!)}`, '', '']);
    rows.push([`gRPC, ${name}: context`, `RSS ${mb(g.rssBytes)}`, `workers started and streams open in ${ms(g.startWorkersMs)}; DestroySession ${g.destroyPerSec.toFixed(0)} /s; ExecuteTask echo p50 ${ms(g.echoP50)} (one at a time); coordinator warnings: ${g.warnings.length}`, '', '']);
  }
  return rows;
}

/** Busy CPU time of the whole machine, and of this process with its finished children, in seconds (Linux /proc). */
function cpuTimes(): { machine: number; ours: number } | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const busy = cpu.reduce((a, b) => a + b, 0) - (cpu[3] ?? 0) - (cpu[4] ?? 0);
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ours = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    return { machine: busy / clockTicks, ours: ours / clockTicks };
  } catch {
    return undefined;
  }
}

const parts = ['floor', 'tree-one', 'tree-fleet', 'grpc-one', 'grpc-fleet'] as const;

/** Runs the parts named in SCALE_ONLY (comma-separated; all by default), prints the table and the JSON line. */
export async function runScale(only = process.env['SCALE_ONLY']): Promise<ScaleFigures> {
  const wanted = new Set(only ? only.split(',').map((s) => s.trim()) : parts);
  const profDir = process.env['SCALE_CPU_PROF'];
  const nodeArgs = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
  const t0 = performance.now();
  const times0 = cpuTimes();
  const f: ScaleFigures = { tree: { one: {}, fleet: {} }, grpc: {} };
  if (wanted.has('floor')) f.floor = await runChild<ChildFloor>('floor', nodeArgs);
  for (const shape of ['one', 'fleet'] as const) {
    if (!wanted.has(`tree-${shape}`)) continue;
    f.tree[shape].create = await runChild<Measured<CreateFigures>>(`${shape}:create`, nodeArgs);
    f.tree[shape].register = await runChild<Measured<RegisterFigures>>(`${shape}:register`, nodeArgs);
  }
  if (wanted.has('grpc-one')) f.grpc.one = await grpcShape(1, SESSIONS, nodeArgs);
  if (wanted.has('grpc-fleet')) f.grpc.fleet = await grpcShape(1_000, SESSIONS / 1_000, nodeArgs);
  const wall = (performance.now() - t0) / 1000;
  const times1 = cpuTimes();
  // What else ran on the machine meanwhile: its busy time minus ours (this process and its children).
  const otherCores = times0 && times1 ? Math.max(0, times1.machine - times0.machine - (times1.ours - times0.ours)) / wall : NaN;
  f.otherLoadCores = otherCores;
  console.log(`\ncodegen-mcp coordinator scale — ${new Date().toISOString()} — ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version} — ${wall.toFixed(0)} s; other processes used ${otherCores.toFixed(2)} cores on average meanwhile\n`);
  console.log('| measure | figure | detail | target | |');
  console.log('|---|---|---|---|---|');
  for (const r of scaleTable(f)) console.log(`| ${r.join(' | ')} |`);
  const all = [f.tree.one.create, f.tree.one.register, f.tree.fleet.create, f.tree.fleet.register, f.grpc.one, f.grpc.fleet].filter((x) => x !== undefined);
  const warnings = all.flatMap((x) => x.warnings);
  if (warnings.length) console.log(`\ncoordinator warnings during the run (${warnings.length}): ${[...new Set(warnings)].slice(0, 5).join('; ')}`);
  const strip = <T extends { warnings: string[] }>(x: T | undefined) => (x ? { ...x, warnings: x.warnings.length } : undefined);
  const tree = (t: TreeFigures) => ({ create: strip(t.create), register: strip(t.register) });
  const json = { otherLoadCores: f.otherLoadCores, floor: f.floor, tree: { one: tree(f.tree.one), fleet: tree(f.tree.fleet) }, grpc: { one: strip(f.grpc.one), fleet: strip(f.grpc.fleet) } };
  console.log(`\n${JSON.stringify({ scale: json }, (_, v: unknown) => (typeof v === 'number' ? round(v, 2) : v))}`);
  return f;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const i = process.argv.indexOf('--in-process');
  const job = i >= 0 ? inProcessChild(process.argv[i + 1] ?? '') : runScale().then(() => undefined);
  job.then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}

