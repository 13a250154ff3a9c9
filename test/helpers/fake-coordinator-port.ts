/**
 * An in-memory CoordinatorPort for unit tests of the front doors (MCP). Sessions hold files in
 * a Map; tasks of one session run one at a time; run_python understands a tiny script language:
 *
 *   print TEXT        a stdout line            eprint TEXT     a stderr line
 *   sleep MS          wait (cancellable)       progress PCT MSG   a progress update
 *   exit N            end with exit code N     raise MESSAGE   a traceback on stderr, exit 1
 *   write PATH TEXT   write a workspace file
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { silentLogger } from '../../src/log/logger.js';
import { createMcpServer, type McpOptions } from '../../src/mcp/server.js';
import type { CheckpointView, CoordinatorPort, CreateSessionInput, SubmitTaskInput, TaskHandle, TaskView } from '../../src/runtime/port.js';
import { CodegenError, toErrorInfo } from '../../src/domain/errors.js';
import { newSessionId, newTaskId } from '../../src/domain/ids.js';
import type { SessionView, WorkerView } from '../../src/domain/sessions.js';
import { isFinalTaskState, taskStateOf, type TaskOutcome, type TaskProgress, type TaskState, type TaskStatus, type TaskUpdate } from '../../src/domain/tasks.js';
import type { ToolCall, ToolReply } from '../../src/domain/tools.js';

export interface FakeSession {
  view: SessionView;
  env: Record<string, string>;
  files: Map<string, Buffer>;
  queue: Promise<void>;
}

export interface FakeRunContext {
  session: FakeSession;
  signal: AbortSignal;
  log(stream: 'stdout' | 'stderr' | 'system', line: string): void;
  progress(percent: number, message: string, stage?: string): void;
}

export type FakeRunner = (call: ToolCall, ctx: FakeRunContext) => Promise<{ status: TaskStatus; reply: ToolReply }>;

interface FakeTask {
  taskId: string;
  sessionId: string;
  call: ToolCall;
  state: TaskState;
  progress?: TaskProgress;
  outcome?: TaskOutcome;
  createdAt: number;
  endedAt?: number;
  listeners: Set<(u: TaskUpdate, taskId: string) => void>;
  abort: AbortController;
  cancelReason?: string;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new CodegenError('CANCELLED', 'cancelled'));
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new CodegenError('CANCELLED', 'cancelled'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });

function checkPath(path: string): string {
  if (path.startsWith('/') || path.split('/').includes('..')) throw new CodegenError('PATH_VIOLATION', `path ${path} escapes the workspace`);
  return path.replace(/^\.\//, '').replace(/\/+$/, '');
}

const isUtf8 = (b: Buffer): boolean => {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
};

function globToRegExp(glob: string): RegExp {
  const re = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`);
}

/** The default behaviour of every tool, over the session's in-memory files. */
export const defaultRunner: FakeRunner = async (call, ctx) => {
  const files = ctx.session.files;
  switch (call.tool) {
    case 'echo':
      return { status: 'SUCCESS', reply: { tool: 'echo', output: { message: call.input.message } } };
    case 'fs_read': {
      const path = checkPath(call.input.path);
      const data = files.get(path);
      if (!data) throw new CodegenError('NOT_FOUND', `no such file: ${path}`);
      const text = isUtf8(data);
      return { status: 'SUCCESS', reply: { tool: 'fs_read', output: { contents: data.toString(text ? 'utf8' : 'base64'), size_bytes: data.length, encoding: text ? 'utf-8' : 'base64' } } };
    }
    case 'fs_write': {
      const path = checkPath(call.input.path);
      const data = Buffer.from(call.input.contents, call.input.encoding === 'base64' ? 'base64' : 'utf8');
      files.set(path, data);
      return { status: 'SUCCESS', reply: { tool: 'fs_write', output: { path, bytes_written: data.length } } };
    }
    case 'fs_list': {
      const base = call.input.path ? checkPath(call.input.path) : '';
      const prefix = base ? `${base}/` : '';
      const pattern = call.input.pattern ? globToRegExp(call.input.pattern) : undefined;
      const out = [...files.entries()]
        .filter(([p]) => p.startsWith(prefix) && (call.input.recursive || !p.slice(prefix.length).includes('/')))
        .filter(([p]) => !pattern || pattern.test(p.split('/').pop() ?? ''))
        .map(([p, d]) => ({ path: p, name: p.split('/').pop() ?? p, size_bytes: d.length, is_directory: false, modified_time_ms: 1 }));
      return { status: 'SUCCESS', reply: { tool: 'fs_list', output: { files: out, total_count: out.length } } };
    }
    case 'run_python': {
      const source = call.input.code ?? files.get(checkPath(call.input.file ?? ''))?.toString('utf8');
      if (source === undefined) throw new CodegenError('NOT_FOUND', `no such file: ${call.input.file}`);
      const started = Date.now();
      const stdout: string[] = [];
      const stderr: string[] = [];
      let exitCode = 0;
      const deadline = call.input.timeout_seconds > 0 ? started + call.input.timeout_seconds * 1000 : Infinity;
      let timedOut = false;
      for (const raw of source.split('\n')) {
        const line = raw.trim();
        if (!line) continue;
        const [cmd, ...rest] = line.split(' ');
        const arg = rest.join(' ');
        if (cmd === 'print') {
          stdout.push(arg);
          ctx.log('stdout', arg);
        } else if (cmd === 'eprint') {
          stderr.push(arg);
          ctx.log('stderr', arg);
        } else if (cmd === 'sleep') {
          const ms = Number(arg);
          const left = deadline - Date.now();
          if (ms > left) {
            await sleep(Math.max(0, left), ctx.signal);
            timedOut = true;
            break;
          }
          await sleep(ms, ctx.signal);
        } else if (cmd === 'progress') {
          const [pct, ...msg] = rest;
          ctx.progress(Number(pct), msg.join(' '));
        } else if (cmd === 'write') {
          const [path, ...text] = rest;
          files.set(checkPath(path ?? ''), Buffer.from(text.join(' ')));
        } else if (cmd === 'exit') {
          exitCode = Number(arg);
          break;
        } else if (cmd === 'raise') {
          const tb = ['Traceback (most recent call last):', '  File "<string>", line 1, in <module>', arg];
          for (const l of tb) {
            stderr.push(l);
            ctx.log('stderr', l);
          }
          exitCode = 1;
          break;
        } else {
          stderr.push(`SyntaxError: unknown statement ${cmd}`);
          exitCode = 1;
          break;
        }
      }
      const output = { stdout: stdout.map((l) => `${l}\n`).join(''), stderr: stderr.map((l) => `${l}\n`).join(''), exit_code: timedOut ? -9 : exitCode, duration_ms: Date.now() - started, timed_out: timedOut };
      return { status: timedOut ? 'TIMEOUT' : exitCode === 0 ? 'SUCCESS' : 'FAILURE', reply: { tool: 'run_python', output } };
    }
    case 'pkg_install': {
      const installed = [];
      const failed = [];
      for (const spec of call.input.packages) {
        const [name = spec, version = '1.0.0'] = spec.split('==');
        if (name.startsWith('missing')) failed.push(spec);
        else installed.push({ name, version, location: '/fake/site-packages' });
        ctx.log('system', `Processing ${spec}`);
      }
      const output = failed.length ? `ERROR: No matching distribution found for ${failed.join(', ')}` : `Successfully installed ${installed.map((p) => `${p.name}-${p.version}`).join(' ')}`;
      return { status: failed.length ? 'FAILURE' : 'SUCCESS', reply: { tool: 'pkg_install', output: { installed, failed, output, exit_code: failed.length ? 1 : 0 } } };
    }
    case 'artifact_get': {
      const id = call.input.artifact_id.replace(/^artifacts\//, '');
      const path = checkPath(`artifacts/${id}`);
      const data = files.get(path);
      if (!data) throw new CodegenError('NOT_FOUND', `no such artifact: ${id}`);
      const type = id.endsWith('.zip') ? 'application/zip' : id.endsWith('.txt') ? 'text/plain' : 'application/octet-stream';
      return { status: 'SUCCESS', reply: { tool: 'artifact_get', output: { data, artifact_id: id, size_bytes: data.length, content_type: type } } };
    }
  }
};

export interface MethodCall {
  method: string;
  args: unknown[];
}

export class FakeCoordinatorPort implements CoordinatorPort {
  readonly sessions = new Map<string, FakeSession>();
  readonly tasks = new Map<string, FakeTask>();
  readonly calls: MethodCall[] = [];
  /** Sessions that can exist at once; creating more fails with CAPACITY_EXHAUSTED. */
  capacity = 100;
  runner: FakeRunner = defaultRunner;

  private record(method: string, ...args: unknown[]): void {
    this.calls.push({ method, args });
  }

  callsOf(method: string): MethodCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** Tasks still queued or running (the fake's "live processes"). */
  liveTasks(): string[] {
    return [...this.tasks.values()].filter((t) => !isFinalTaskState(t.state)).map((t) => t.taskId);
  }

  private session(sessionId: string): FakeSession {
    const s = this.sessions.get(sessionId);
    if (!s) throw new CodegenError('SESSION_NOT_FOUND', `session ${sessionId} not found`);
    return s;
  }

  async createSession(input: CreateSessionInput): Promise<SessionView> {
    this.record('createSession', input);
    if (this.sessions.size >= this.capacity) throw new CodegenError('CAPACITY_EXHAUSTED', 'no worker has room for another session');
    const sessionId = newSessionId();
    const now = Date.now();
    const view: SessionView = {
      sessionId,
      workerId: input.workerId || 'worker-1',
      workspaceId: input.workspaceId ?? '',
      workspacePath: `/fake/${sessionId}`,
      state: 'READY',
      createdAtMs: now,
      lastActivityMs: now,
      activeTasks: 0,
      recentTasks: [],
      metadata: { ...(input.metadata ?? {}) },
      failureReason: '',
      userId: input.userId ?? '',
      tenant: input.tenant ?? '',
      restartedAtMs: 0,
      survivalNote: '',
      unreachableSinceMs: 0,
      usage: { memoryBytes: 0, cpuMillicores: 0, diskBytes: 0 },
      limits: { memoryBytes: 0, maxProcesses: 0, cpuSecondsPerTask: 0, cpuMillicores: 0, diskBytes: 0 },
    };
    this.sessions.set(sessionId, { view, env: { ...(input.config?.env_vars ?? {}) }, files: new Map(), queue: Promise.resolve() });
    return { ...view };
  }

  async destroySession(sessionId: string, options?: { force?: boolean; saveCheckpoint?: boolean }): Promise<{ destroyed: boolean; artifacts: string[]; checkpointId: string }> {
    this.record('destroySession', sessionId, options);
    const s = this.session(sessionId);
    const checkpointId = options?.saveCheckpoint ? (await this.checkpointSession(sessionId, { name: 'destroy' })).checkpointId : '';
    for (const t of this.tasks.values()) if (t.sessionId === sessionId && !isFinalTaskState(t.state)) this.abortTask(t, 'session destroyed');
    this.sessions.delete(sessionId);
    return { destroyed: true, artifacts: [...s.files.keys()].filter((p) => p.startsWith('artifacts/')), checkpointId };
  }

  // Checkpoints: the session's files map, copied (no store, no checksums: the real ones are tested with real processes).
  readonly checkpoints = new Map<string, { view: CheckpointView; files: Map<string, string> }>();

  async checkpointSession(sessionId: string, options?: { name?: string }): Promise<CheckpointView> {
    this.record('checkpointSession', sessionId, options);
    const s = this.session(sessionId);
    const checkpointId = `ckpt-${newTaskId().slice(5)}`;
    const view: CheckpointView = {
      checkpointId, name: options?.name ?? '', sessionId, workspaceId: s.view.workspaceId, tenant: '', createdAtMs: Date.now(), sizeBytes: 100,
      storageUrl: `file:///fake/checkpoints/${checkpointId}.json`, checksumSha256: '0'.repeat(64), envVars: {}, installedPackages: [], modifiedFiles: [...s.files.keys()].sort(), fileCount: s.files.size, totalBytes: 0,
    };
    this.checkpoints.set(checkpointId, { view, files: new Map(s.files as Map<string, string>) });
    return view;
  }

  async getCheckpoint(checkpointId: string): Promise<CheckpointView> {
    const c = this.checkpoints.get(checkpointId);
    if (!c) throw new CodegenError('NOT_FOUND', `checkpoint_id: no checkpoint ${JSON.stringify(checkpointId)} exists`);
    return c.view;
  }

  async restoreCheckpoint(checkpointId: string, options?: { workerId?: string; createNew?: boolean }): Promise<{ session: SessionView; checkpoint: CheckpointView }> {
    this.record('restoreCheckpoint', checkpointId, options);
    const c = this.checkpoints.get(checkpointId);
    if (!c) throw new CodegenError('NOT_FOUND', `checkpoint_id: no checkpoint ${JSON.stringify(checkpointId)} exists`);
    const target = options?.createNew ? await this.createSession({ ...(options.workerId ? { workerId: options.workerId } : {}) }) : this.session(c.view.sessionId).view;
    const s = this.session(target.sessionId);
    (s.files as Map<string, string>).clear();
    for (const [k, v] of c.files) (s.files as Map<string, string>).set(k, v);
    return { session: { ...s.view }, checkpoint: c.view };
  }

  async listCheckpoints(sessionId = ''): Promise<CheckpointView[]> {
    return [...this.checkpoints.values()].map((c) => c.view).filter((v) => !sessionId || v.sessionId === sessionId);
  }

  async deleteCheckpoint(checkpointId: string): Promise<boolean> {
    if (!this.checkpoints.has(checkpointId)) throw new CodegenError('NOT_FOUND', `checkpoint_id: no checkpoint ${JSON.stringify(checkpointId)} exists`);
    return this.checkpoints.delete(checkpointId);
  }

  async getSession(sessionId: string): Promise<SessionView> {
    this.record('getSession', sessionId);
    return { ...this.session(sessionId).view };
  }

  async listSessions(): Promise<SessionView[]> {
    this.record('listSessions');
    return [...this.sessions.values()].map((s) => ({ ...s.view }));
  }

  async getMetadata(sessionId: string): Promise<Record<string, string>> {
    return { ...this.session(sessionId).view.metadata };
  }

  async putMetadata(sessionId: string, metadata: Record<string, string>, merge: boolean): Promise<Record<string, string>> {
    const s = this.session(sessionId);
    s.view.metadata = merge ? { ...s.view.metadata, ...metadata } : { ...metadata };
    return { ...s.view.metadata };
  }

  async submitTask(input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle> {
    this.record('submitTask', input);
    const existing = input.taskId ? this.tasks.get(input.taskId) : undefined;
    if (existing) {
      if (existing.outcome) onUpdate({ type: 'outcome', outcome: existing.outcome }, existing.taskId);
      else existing.listeners.add(onUpdate);
      const detach = () => existing.listeners.delete(onUpdate);
      return { taskId: existing.taskId, duplicate: true, detach, abandon: detach };
    }
    const session = this.session(input.sessionId);
    const task: FakeTask = {
      taskId: input.taskId ?? newTaskId(),
      sessionId: input.sessionId,
      call: input.call,
      state: 'queued',
      createdAt: Date.now(),
      listeners: new Set([onUpdate]),
      abort: new AbortController(),
    };
    this.tasks.set(task.taskId, task);
    session.view.recentTasks = [...session.view.recentTasks.slice(-9), task.taskId];
    session.queue = session.queue.then(() => this.run(task, session));
    return {
      taskId: task.taskId,
      duplicate: false,
      detach: () => task.listeners.delete(onUpdate),
      // The caller that started the task went away: the task is cancelled, as the real task proxy does.
      abandon: (reason: string) => {
        task.listeners.delete(onUpdate);
        if (!task.outcome) void this.cancelTask(task.taskId, reason).catch(() => undefined);
      },
    };
  }

  private emit(task: FakeTask, update: TaskUpdate): void {
    for (const l of [...task.listeners]) l(update, task.taskId);
  }

  private finish(task: FakeTask, outcome: TaskOutcome): void {
    if (task.outcome) return;
    task.outcome = outcome;
    task.state = taskStateOf(outcome);
    task.endedAt = Date.now();
    this.emit(task, { type: 'outcome', outcome });
    task.listeners.clear();
  }

  private abortTask(task: FakeTask, reason: string): void {
    task.cancelReason = reason;
    task.abort.abort();
    if (task.state === 'queued') this.cancelledOutcome(task);
  }

  private cancelledOutcome(task: FakeTask): void {
    const now = Date.now();
    this.finish(task, { type: 'result', status: 'CANCELLED', artifacts: [], metadata: { workerId: 'worker-1', startedAtMs: now, finishedAtMs: now, durationMs: 0, queuedMs: 0 } });
  }

  private async run(task: FakeTask, session: FakeSession): Promise<void> {
    if (task.outcome) return;
    task.state = 'running';
    session.view.state = 'BUSY';
    session.view.activeTasks += 1;
    const started = Date.now();
    try {
      const { status, reply } = await this.runner(task.call, {
        session,
        signal: task.abort.signal,
        log: (stream, line) => this.emit(task, { type: 'log', log: { stream, line, timestampMs: Date.now() } }),
        progress: (percent, message, stage = 'running') => {
          task.progress = { stage, message, percent, elapsedMs: Date.now() - started };
          this.emit(task, { type: 'progress', progress: task.progress });
        },
      });
      const now = Date.now();
      this.finish(task, { type: 'result', status, reply, artifacts: [], metadata: { workerId: session.view.workerId, startedAtMs: started, finishedAtMs: now, durationMs: now - started, queuedMs: started - task.createdAt } });
    } catch (err) {
      if (task.abort.signal.aborted) this.cancelledOutcome(task);
      else this.finish(task, { type: 'error', error: toErrorInfo(err) });
    } finally {
      session.view.activeTasks -= 1;
      session.view.state = session.view.activeTasks > 0 ? 'BUSY' : 'READY';
      session.view.lastActivityMs = Date.now();
    }
  }

  async watchTask(taskId: string, sessionId: string | undefined, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<{ detach(): void }> {
    this.record('watchTask', taskId, sessionId);
    const t = this.tasks.get(taskId);
    if (!t || (sessionId && t.sessionId !== sessionId)) throw new CodegenError('TASK_NOT_FOUND', `task ${taskId} not found`);
    if (t.outcome) {
      const outcome = t.outcome;
      queueMicrotask(() => onUpdate({ type: 'outcome', outcome }, taskId));
      return { detach: () => {} };
    }
    t.listeners.add(onUpdate);
    return { detach: () => t.listeners.delete(onUpdate) };
  }

  async cancelTask(taskId: string, reason: string, sessionId?: string): Promise<{ cancelled: boolean; state: TaskState }> {
    this.record('cancelTask', taskId, reason, sessionId);
    const task = this.tasks.get(taskId);
    if (!task) throw new CodegenError('TASK_NOT_FOUND', `task ${taskId} not found`);
    if (isFinalTaskState(task.state)) return { cancelled: false, state: task.state };
    this.abortTask(task, reason);
    // Let the runner see the abort and settle.
    await new Promise((r) => setImmediate(r));
    return { cancelled: true, state: task.state };
  }

  async getTask(taskId: string, sessionId?: string): Promise<TaskView> {
    this.record('getTask', taskId, sessionId);
    const t = this.tasks.get(taskId);
    if (!t || (sessionId && t.sessionId !== sessionId)) throw new CodegenError('TASK_NOT_FOUND', `task ${taskId} not found`);
    return {
      taskId: t.taskId,
      sessionId: t.sessionId,
      tool: t.call.tool,
      state: t.state,
      ...(t.progress ? { progress: t.progress } : {}),
      elapsedMs: (t.endedAt ?? Date.now()) - t.createdAt,
      ...(t.outcome ? { outcome: t.outcome } : {}),
    };
  }

  waitTask(taskId: string, timeoutMs: number): Promise<TaskOutcome | undefined> {
    this.record('waitTask', taskId, timeoutMs);
    const t = this.tasks.get(taskId);
    if (!t) return Promise.reject(new CodegenError('TASK_NOT_FOUND', `task ${taskId} not found`));
    if (t.outcome) return Promise.resolve(t.outcome);
    return new Promise((resolve) => {
      const listener = (u: TaskUpdate): void => {
        if (u.type !== 'outcome') return;
        clearTimeout(timer);
        resolve(u.outcome);
      };
      const timer = setTimeout(() => {
        t.listeners.delete(listener);
        resolve(undefined);
      }, timeoutMs);
      t.listeners.add(listener);
    });
  }

  async listWorkers(): Promise<WorkerView[]> {
    return [{ workerId: 'worker-1', state: 'READY', maxSessions: this.capacity, sessions: this.sessions.size, isolation: 'none' }];
  }
}

// ---- an in-process MCP client over the fake, for unit tests -------------------------------


export interface InProcessMcp {
  client: Client;
  port: FakeCoordinatorPort;
  /** Closes the client and the server; resolves once the default session is cleaned up. */
  close(): Promise<void>;
}

export async function connectInProcess(port: FakeCoordinatorPort = new FakeCoordinatorPort(), options: Partial<McpOptions> & { connectionId?: string } = {}): Promise<InProcessMcp> {
  const { server, close } = createMcpServer({
    coordinator: port,
    logger: silentLogger(),
    waitLimitMs: 5_000,
    legacyToolNames: false,
    defaultSessionGraceMs: 0,
    ...options,
    connectionId: options.connectionId ?? `test-${Math.random().toString(36).slice(2)}`,
  });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: 'unit-test', version: '1.0.0' }, { capabilities: {} });
  await server.connect(serverSide);
  await client.connect(clientSide);
  return {
    client,
    port,
    close: async () => {
      await client.close();
      await close();
    },
  };
}
