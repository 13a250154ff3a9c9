import type { DiskQuota } from './disk-quota.js';
import { releaseAllSessionLimits, releaseSessionLimits, sessionLimitsOf, type SessionLimits } from '../sandbox/enforcement.js';
import path from 'node:path';
import { HashCache, type BlobTransport } from '../checkpoints/snapshot.js';
import { restoreSnapshot } from '../checkpoints/restore.js';
import { fromCallback, fromPromise } from 'xstate';
import { CodegenError, errorInfo, toErrorInfo } from '../domain/errors.js';
import type { SessionDescription, SessionLimitsRequest } from '../domain/sessions.js';
import type { TaskUpdate } from '../domain/tasks.js';
import type { DescriptionSave, PreparedWorkspace, SessionActor, SessionEvent } from '../../machines/worker/session.machine.js';
import { sessionChildId } from '../../machines/worker/session.machine.js';
import type { ExecutorEvent, ExecutorInput, TaskEvent } from '../../machines/worker/task.machine.js';
import { reasonOf } from '../../machines/supervision.js';
import { WarmPythonRegistry, type WarmLog } from '../sandbox/warm/sessions.js';
import { InterpreterRegistry, type InterpreterLog } from '../sandbox/interpreter/sessions.js';
import type { SessionLocks } from './session-locks.js';
import type { SessionStore, StoredSession } from './session-store.js';
import { runTool as defaultRunTool } from './tools/index.js';
import type { ToolContext, ToolRunner } from './tools/types.js';
import { interpreterActor, warmInterpreterActor } from './interpreter-actors.js';
import { createWorkspace, removeWorkspace, type VenvSource } from './workspace.js';
import { snapshotArtifacts } from './tools/common.js';

export interface SessionEffectsOptions {
  workerId: string;
  baseWorkspace: string;
  checkpointDir: string;
  /** The coordinator's checkpoint store, for the checkpoint and restore tasks. */
  checkpoints?: BlobTransport;
  /** Folders user code must never see (the state folder with the credentials). */
  secretDirs?: string[];
  /** The worker's limits for every session (absent: the sandbox's defaults). */
  sessionLimits?: Partial<SessionLimits>;
  /** Each session's workspace as a filesystem of its own (absent: none). */
  diskQuota?: DiskQuota;
  pool: VenvSource;
  /** Each session's description, beside the workspaces. */
  store: SessionStore;
  /** The per-session locks this process holds (a session is adopted by exactly one worker). */
  locks: SessionLocks;
  basePython?: string;
  /** Where every task update goes (the task stream). */
  report: (sessionId: string, taskId: string, update: TaskUpdate) => void;
  runTool?: ToolRunner;
  /** WARM_PYTHON: run_python forks a warm interpreter per session (default false here; the worker's config defaults to true). */
  warmPython?: boolean;
  /** Where the warm interpreters keep their control folders (default BASE_WORKSPACE/.warm/<workerId>); cleared at start. */
  warmRoot?: string;
  /** Problems of warm interpreters (the task falls back to a fresh sandbox). */
  warmLog?: WarmLog;
  /** Problems of the stateful interpreters (python_exec). */
  interpreterLog?: InterpreterLog;
  /** Problems saving a description (the session goes on; the next save tries again). */
  saveLog?: (err: unknown, sessionId: string) => void;
}

export const toStored = (d: SessionDescription): StoredSession => ({ version: 1, ...d });
export const fromStored = (s: StoredSession): SessionDescription => {
  const { version: _version, ...d } = s;
  return d;
};

/**
 * Writes each session's descriptions in order, one at a time, so a later save never loses to an
 * earlier one; a destroyed session's writer is closed first, so nothing writes it back.
 */
class DescriptionWriter {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly closed = new Set<string>();

  constructor(
    private readonly store: SessionStore,
    private readonly onError: (err: unknown, sessionId: string) => void,
  ) {}

  open(sessionId: string): void {
    this.closed.delete(sessionId);
  }

  /** Resolves to the error when the write failed (it is logged too); a closed session's saves are skipped. */
  save(d: SessionDescription): Promise<unknown> {
    const id = d.sessionId;
    if (this.closed.has(id)) return Promise.resolve(undefined);
    const next = (this.chains.get(id) ?? Promise.resolve()).then(async () => {
      if (this.closed.has(id)) return undefined;
      return this.store.write(toStored(d)).then(
        () => undefined,
        (err: unknown) => {
          this.onError(err, id);
          return err ?? new Error('write failed');
        },
      );
    });
    this.chains.set(id, next);
    void next.then(() => {
      if (this.chains.get(id) === next) this.chains.delete(id);
    });
    return next;
  }

  /** No more writes for this session; resolves when the ones under way are done. */
  async close(sessionId: string): Promise<void> {
    this.closed.add(sessionId);
    await this.chains.get(sessionId);
  }
}

/** The worker's session effects: workspaces with venvs and saved descriptions, and tools run in the sandbox. */
/** A session's limits: what it asked for (SessionConfig.limits), never more than the worker's maximum. */
export function limitsFor(worker: Partial<SessionLimits> | undefined, asked: SessionLimitsRequest | undefined): Partial<SessionLimits> {
  const max = sessionLimitsOf(worker);
  const capped = (want: number | undefined, most: number) => (want && want > 0 ? (most > 0 ? Math.min(want, most) : want) : most);
  return { ...max, memoryBytes: capped(asked?.max_memory_bytes, max.memoryBytes), cpuMillicores: capped(asked?.max_cpu_millicores, max.cpuMillicores) };
}

export function workerSessionActors(opts: SessionEffectsOptions) {
  const runTool = opts.runTool ?? defaultRunTool;
  const warm = opts.warmPython
    ? new WarmPythonRegistry({ root: opts.warmRoot ?? path.join(opts.baseWorkspace, '.warm', opts.workerId), ...(opts.warmLog ? { log: opts.warmLog } : {}) })
    : undefined;
  // Markers beside the workspaces (hidden from the sandbox with BASE_WORKSPACE): a restarted worker knows which sessions had interpreter state.
  const interpreters = new InterpreterRegistry({ markerDir: path.join(opts.baseWorkspace, '.interpreters'), ...(opts.interpreterLog ? { log: opts.interpreterLog } : {}) });
  const writer = new DescriptionWriter(opts.store, opts.saveLog ?? (() => {}));
  const hashCache = new HashCache();

  // A new session takes its lock, then its description is written; an adopted or restarted one
  // already holds its lock and has its description on disk, which wins (it has the latest metadata).
  const prepareWorkspace = fromPromise<PreparedWorkspace, { description: SessionDescription; origin: 'create' | 'adopt'; restarts: number }>(async ({ input }) => {
    const id = input.description.sessionId;
    if (!(await opts.locks.tryLock(id))) throw new CodegenError('FAILED_PRECONDITION', `session ${id} is held by another worker process (its lock in ${opts.store.dir} is taken)`);
    writer.open(id);
    const onDisk = await opts.store.read(id);
    const { restoreFrom, ...asked } = input.description;
    let description: SessionDescription = asked;
    // Files already here (a shared BASE_WORKSPACE) are newer than any checkpoint: they win.
    const restore = onDisk ? undefined : restoreFrom;
    if (onDisk) description = fromStored(onDisk);
    else if (!restore) await writer.save(description);
    // The session's own filesystem first, so its venv and files are inside the quota.
    await opts.diskQuota?.attach(id, path.join(opts.baseWorkspace, id));
    const workspacePath = await createWorkspace(opts.baseWorkspace, id, opts.pool);
    if (restore) {
      // Made from a checkpoint: its description is written once the files are back (a crash before leaves no session that looks whole).
      if (!opts.checkpoints) throw new CodegenError('UNIMPLEMENTED', 'this worker has no checkpoint store to restore from');
      await restoreSnapshot({ workspace: workspacePath, transport: opts.checkpoints, checkpointId: restore.checkpointId, manifestSha256: restore.manifestSha256 });
      await interpreters.forSession(id).discard(`the session was made from checkpoint ${restore.checkpointId}, which holds files and packages but not the interpreter's memory: variables and imports from before are lost`, true);
      const atMs = Date.now();
      description = { ...description, restartedAtMs: atMs, survivalNote: restore.note, lastActivityMs: atMs };
      await writer.save(description);
    }
    return { workspacePath, description, atMs: Date.now() };
  });

  // A destroy removes the files, the description and the lock.
  async function removeSession(sessionId: string): Promise<void> {
    hashCache.forget(sessionId);
    await writer.close(sessionId);
    await opts.diskQuota?.remove(sessionId, path.join(opts.baseWorkspace, sessionId));
    await removeWorkspace(opts.baseWorkspace, sessionId);
    await opts.store.remove(sessionId);
    await opts.locks.unlock(sessionId, { removeFile: true });
  }

  // A drain keeps everything for the next start.
  const releaseWorkspace = fromPromise<{ removedArtifacts: string[] }, { sessionId: string; remove: boolean }>(async ({ input }) => {
    await warm?.release(input.sessionId);
    await interpreters.release(input.sessionId, input.remove);
    await releaseSessionLimits(input.sessionId);
    // A drain leaves the session's filesystem mounted: its files stay where they were, for people and the next start.
    if (!input.remove) return { removedArtifacts: [] };
    // Listed once nothing runs in the session any more: DestroySession answers what went.
    const removedArtifacts = [...(await snapshotArtifacts(path.join(opts.baseWorkspace, input.sessionId))).keys()].sort();
    await removeSession(input.sessionId);
    return { removedArtifacts };
  });

  // A destroy of a session whose actor is not running (restarting, or given up on): the same removal, without it.
  const discardSession = fromPromise<void, { sessionId: string }>(async ({ input }) => {
    await warm?.release(input.sessionId);
    await interpreters.release(input.sessionId, true);
    await releaseSessionLimits(input.sessionId);
    await removeSession(input.sessionId);
  });

  const persist = fromCallback<DescriptionSave, { sessionId: string }>(({ receive, sendBack }) => {
    receive((e) => {
      if (e.type !== 'description.save') return;
      void writer.save(e.description).then((err) => {
        if (e.requestIds.length === 0) return;
        const error = err === undefined ? null : errorInfo('INTERNAL', `the session's description could not be saved: ${reasonOf(err)}`);
        sendBack({ type: 'description.saved', requestIds: e.requestIds, error } satisfies SessionEvent);
      });
    });
  });

  const executor = fromCallback<ExecutorEvent, ExecutorInput>(({ input, sendBack, receive, system }) => {
    const back = (e: TaskEvent) => sendBack(e);
    const { spec } = input;
    const session = system.get(sessionChildId(spec.sessionId)) as SessionActor | undefined;
    const config = session?.getSnapshot().context.description.config ?? { env_vars: {}, allow_network: false, language: 'python' };
    const workspace = path.join(opts.baseWorkspace, spec.sessionId);
    const abort = new AbortController();
    const startedAtMs = Date.now();
    const ctx: ToolContext = {
      sessionId: spec.sessionId,
      workspace,
      venvPython: path.join(workspace, '.venv', 'bin', 'python'),
      sessionEnv: config.env_vars,
      // A task's constraints only narrow: the coordinator refuses one that asks for network in a session without it.
      allowNetwork: config.allow_network,
      constraints: spec.constraints,
      signal: abort.signal,
      onLog: (log) => back({ type: 'task.logged', log }),
      onProgress: (progress) => back({ type: 'task.progressed', progress }),
      hidePaths: [opts.baseWorkspace, opts.checkpointDir, ...(opts.secretDirs ?? [])],
      sessionLimits: limitsFor(opts.sessionLimits, config.limits),
      ...(opts.basePython ? { basePython: opts.basePython } : {}),
      // The session's warm interpreter when its actor runs one; else a fresh interpreter per task.
      ...(warm?.current(spec.sessionId) ? { warm: warm.current(spec.sessionId)! } : {}),
      // The session's stateful interpreter while its actor runs (python_exec, python_reset; a restore discards its state).
      ...(interpreters.current(spec.sessionId) ? { interpreter: interpreters.current(spec.sessionId)! } : {}),
      ...(opts.checkpoints ? { checkpoints: opts.checkpoints, hashes: hashCache.of(spec.sessionId) } : {}),
    };
    runTool(spec.call, ctx).then(
      (done) => {
        const finishedAtMs = Date.now();
        back({
          type: 'task.finished',
          outcome: {
            type: 'result',
            status: done.status,
            ...(done.reply ? { reply: done.reply } : {}),
            artifacts: done.artifacts ?? [],
            metadata: { workerId: input.workerId, startedAtMs, finishedAtMs, durationMs: finishedAtMs - startedAtMs, queuedMs: Math.max(0, (input.startedAtMs || startedAtMs) - input.enqueuedAtMs) },
          },
        });
      },
      (err) => back({ type: 'task.finished', outcome: { type: 'error', error: toErrorInfo(err) } }),
    );
    receive((e) => {
      if (e.type === 'executor.cancel') abort.abort(e.reason);
    });
    // Stopping the task actor kills whatever it started.
    return () => abort.abort('task actor stopped');
  });

  /** The task's emitted updates (progress, logs, the one outcome) go up the task stream. */
  const emitUpdate = ({ context }: { context: { sessionId: string; taskId: string } }, params: { update: TaskUpdate }) => {
    opts.report(context.sessionId, context.taskId, params.update);
  };

  /** On worker stop: end every warm interpreter still running (released sessions have none). */
  const stop = async (): Promise<void> => {
    await warm?.stopAll();
    await interpreters.stopAll();
    await releaseAllSessionLimits();
  };

  const warmInterpreter = warm ? warmInterpreterActor(warm) : undefined;

  return { prepareWorkspace, releaseWorkspace, discardSession, persist, executor, emitUpdate, warmInterpreter, interpreter: interpreterActor(interpreters), stop };
}
