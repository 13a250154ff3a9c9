import path from 'node:path';
import { fromCallback, fromPromise } from 'xstate';
import { toErrorInfo } from '../domain/errors.js';
import type { SessionConfig } from '../domain/sessions.js';
import type { TaskSpec, TaskUpdate } from '../domain/tasks.js';
import { sessionChildId, type SessionActor } from '../../machines/session.machine.js';
import type { ExecutorEvent, TaskEvent } from '../../machines/task.machine.js';
import { WarmPythonRegistry, type WarmLog } from '../sandbox/warm/sessions.js';
import { runTool as defaultRunTool } from './tools/index.js';
import type { ToolContext, ToolRunner } from './tools/types.js';
import { createWorkspace, removeWorkspace, type VenvSource } from './workspace.js';
import type { WorkspaceLedger } from './workspace-ledger.js';

export interface SessionEffectsOptions {
  workerId: string;
  baseWorkspace: string;
  checkpointDir: string;
  pool: VenvSource;
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
  /** Records which workspaces this worker made, so its next start can remove what it lost. */
  ledger?: WorkspaceLedger;
}

/** The worker's session effects: workspaces with venvs, and tools run in the sandbox. */
export function workerSessionActors(opts: SessionEffectsOptions) {
  const runTool = opts.runTool ?? defaultRunTool;
  const warm = opts.warmPython
    ? new WarmPythonRegistry({ root: opts.warmRoot ?? path.join(opts.baseWorkspace, '.warm', opts.workerId), ...(opts.warmLog ? { log: opts.warmLog } : {}) })
    : undefined;

  const prepareWorkspace = fromPromise<{ workspacePath: string }, { sessionId: string; workerId: string; config: SessionConfig }>(async ({ input }) => {
    await opts.ledger?.record(input.sessionId);
    return { workspacePath: await createWorkspace(opts.baseWorkspace, input.sessionId, opts.pool) };
  });

  const releaseWorkspace = fromPromise<void, { sessionId: string; workerId: string; remove: boolean; force: boolean }>(async ({ input }) => {
    await warm?.release(input.sessionId);
    if (!input.remove) return; // a drain keeps the files; the ledger still names them for the next start
    await removeWorkspace(opts.baseWorkspace, input.sessionId);
    await opts.ledger?.forget(input.sessionId);
  });

  const executor = fromCallback<ExecutorEvent, { spec: TaskSpec; workerId: string }>(({ input, sendBack, receive, system }) => {
    const back = (e: TaskEvent) => sendBack(e);
    const { spec } = input;
    const session = system.get(sessionChildId(spec.sessionId)) as SessionActor | undefined;
    const config = session?.getSnapshot().context.config ?? { env_vars: {}, allow_network: false, language: 'python' };
    const workspace = path.join(opts.baseWorkspace, spec.sessionId);
    const abort = new AbortController();
    const startedAtMs = Date.now();
    const ctx: ToolContext = {
      sessionId: spec.sessionId,
      workspace,
      venvPython: path.join(workspace, '.venv', 'bin', 'python'),
      sessionEnv: config.env_vars,
      allowNetwork: config.allow_network || spec.constraints.allow_network,
      constraints: spec.constraints,
      signal: abort.signal,
      onLog: (log) => back({ type: 'task.logged', log }),
      onProgress: (progress) => back({ type: 'task.progressed', progress }),
      hidePaths: [opts.baseWorkspace, opts.checkpointDir],
      ...(opts.basePython ? { basePython: opts.basePython } : {}),
      ...(warm ? { warm: warm.forSession(spec.sessionId) } : {}),
    };
    runTool(spec.call, ctx).then(
      (done) => {
        const finishedAtMs = Date.now();
        back({
          type: 'task.finished',
          outcome: {
            type: 'result',
            status: done.status,
            reply: done.reply,
            artifacts: done.artifacts ?? [],
            metadata: { workerId: input.workerId, startedAtMs, finishedAtMs, durationMs: finishedAtMs - startedAtMs, queuedMs: 0 },
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
  const emitUpdate = ({ context }: { context: { spec: TaskSpec } }, params: { taskId: string; update: TaskUpdate }) => {
    opts.report(context.spec.sessionId, params.taskId, params.update);
  };

  /** On worker stop: end every warm interpreter still running (released sessions have none). */
  const stop = async (): Promise<void> => {
    await warm?.stopAll();
  };

  return { prepareWorkspace, releaseWorkspace, executor, emitUpdate, stop };
}
