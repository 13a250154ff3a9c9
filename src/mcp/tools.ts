/**
 * The tool registry: one list of tool specs, registered on every MCP connection's server
 * (stdio and Streamable HTTP alike). Handlers never throw: every failure becomes an `isError`
 * result saying what to fix.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult, ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import type { z } from 'zod';
import { CodegenError } from '../domain/errors.js';
import type { SessionView } from '../domain/sessions.js';
import { isFinalTaskState } from '../domain/tasks.js';
import { CHECKPOINT_NOT_SAVED, type ToolName } from '../domain/tools.js';
import { toolCallFrom } from '../domain/tool-calls.js';
import type { McpConnection, ToolExtra } from './connection.js';
import type { CheckpointView } from '../runtime/port.js';
import { runTask, waitForTask, type TaskRun } from './long-work.js';
import { errorResult, okResult } from './results.js';
import * as s from './schemas.js';
import { runResult, sessionWasLost } from './task-results.js';

export interface ToolContext {
  conn: McpConnection;
  extra: ToolExtra;
}

export interface ToolSpec<I extends z.ZodObject = z.ZodObject, O extends z.ZodObject = z.ZodObject> {
  /** snake_case, as api.md names it. */
  name: string;
  /** The dotted name of the original design, registered with legacyToolNames. */
  legacyName?: string;
  title: string;
  description: string;
  input: I;
  output: O;
  annotations: ToolAnnotations;
  run(args: z.output<I>, ctx: ToolContext): Promise<CallToolResult>;
}

const defineTool = <I extends z.ZodObject, O extends z.ZodObject>(spec: ToolSpec<I, O>): ToolSpec<I, O> => spec;

export interface ToolRegistryOptions {
  /** Whether pkg_install can reach a package index (its openWorldHint). */
  packageIndexReachable: boolean;
}

const readOnly: ToolAnnotations = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

function summary(view: SessionView, ctx: ToolContext): s.SessionSummary {
  return {
    session_id: view.sessionId,
    worker_id: view.workerId,
    state: view.state,
    created_at_ms: view.createdAtMs,
    last_activity_ms: view.lastActivityMs,
    active_tasks: view.activeTasks,
    recent_tasks: view.recentTasks,
    metadata: view.metadata,
    is_default: ctx.conn.sessions.isDefault(view.sessionId),
    ...(view.failureReason ? { failure_reason: view.failureReason } : {}),
  };
}

function checkpointFields(c: CheckpointView): s.CheckpointInfoOut {
  return {
    checkpoint_id: c.checkpointId,
    name: c.name,
    session_id: c.sessionId,
    created_at_ms: c.createdAtMs,
    size_bytes: c.sizeBytes,
    storage_url: c.storageUrl,
    checksum_sha256: c.checksumSha256,
    file_count: c.fileCount,
    total_bytes: c.totalBytes,
    installed_packages: c.installedPackages,
    modified_files: c.modifiedFiles,
    not_saved: CHECKPOINT_NOT_SAVED,
  };
}

const isSessionNotFound = (err: unknown): boolean => err instanceof CodegenError && err.code === 'SESSION_NOT_FOUND';

/**
 * Runs one session tool as a task. A default session that vanished (destroyed from elsewhere)
 * is replaced once, transparently.
 */
async function runToolTask(tool: ToolName, wire: Record<string, unknown>, sessionArg: string | undefined, ctx: ToolContext): Promise<CallToolResult> {
  const call = toolCallFrom(tool, wire, 'arguments');
  const { conn } = ctx;
  for (let attempt = 0; ; attempt++) {
    const { sessionId } = await conn.sessions.resolve(sessionArg);
    let run: TaskRun;
    try {
      run = await runTask(conn, ctx.extra, sessionId, call);
    } catch (err) {
      // The connection's actor decides whether a lost session's call runs again.
      if (isSessionNotFound(err) && conn.sessions.lost(sessionId, attempt)) continue;
      throw err;
    }
    if (sessionWasLost(run) && conn.sessions.lost(sessionId, attempt)) continue;
    return runResult(run, conn.settings.waitLimitMs, call);
  }
}

function withoutReservedKeys(metadata: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata ?? {})) if (!k.startsWith('mcp.')) out[k] = v;
  return out;
}

export function toolSpecs(options: ToolRegistryOptions): ToolSpec[] {
  const specs = [
    defineTool({
      name: 'session_create',
      legacyName: 'session.create',
      title: 'Create a Python session',
      description:
        'Create an isolated Python session (its own workspace folder and virtual environment) and return its session_id. ' +
        "Optional: tools without session_id use this connection's default session, created on first use.",
      input: s.sessionCreateInput,
      output: s.sessionCreateOutput,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
      async run(args, { conn }) {
        const view = await conn.port.createSession({
          config: { env_vars: args.env ?? {}, allow_network: args.allow_network ?? false },
          metadata: { ...withoutReservedKeys(args.metadata), ...conn.sessions.labels(false) },
        });
        conn.sessions.remember(view.sessionId);
        return okResult({ session_id: view.sessionId, worker_id: view.workerId, state: view.state, created_at_ms: view.createdAtMs, metadata: view.metadata });
      },
    }),
    defineTool({
      name: 'session_list',
      legacyName: 'session.list',
      title: 'List sessions',
      description: "List the coordinator's sessions (other connections' default sessions are not shown).",
      input: s.sessionListInput,
      output: s.sessionListOutput,
      annotations: readOnly,
      async run(_args, ctx) {
        const views = (await ctx.conn.port.listSessions()).filter((v) => ctx.conn.sessions.visible(v));
        return okResult({ sessions: views.map((v) => summary(v, ctx)), count: views.length });
      },
    }),
    defineTool({
      name: 'session_status',
      legacyName: 'session.status',
      title: 'Session status',
      description: "State, worker, activity and recent tasks of a session (default: this connection's default session).",
      input: s.sessionStatusInput,
      output: s.sessionStatusOutput,
      annotations: readOnly,
      async run(args, ctx) {
        const { sessionId } = await ctx.conn.sessions.resolve(args.session_id);
        try {
          return okResult(summary(await ctx.conn.port.getSession(sessionId), ctx));
        } catch (err) {
          if (isSessionNotFound(err)) ctx.conn.sessions.forget(sessionId);
          throw err;
        }
      },
    }),
    defineTool({
      name: 'session_destroy',
      legacyName: 'session.destroy',
      title: 'Destroy a session',
      description: "Destroy a session: its running tasks are stopped and its workspace deleted. Without session_id, destroys this connection's default session.",
      input: s.sessionDestroyInput,
      output: s.sessionDestroyOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
      async run(args, { conn }) {
        let sessionId = args.session_id;
        if (sessionId === undefined) {
          sessionId = conn.sessions.defaultSessionId;
          if (!sessionId) throw new CodegenError('SESSION_NOT_FOUND', 'this connection has no default session yet: nothing to destroy');
        } else if (!conn.sessions.isDefault(sessionId)) {
          await conn.sessions.assertVisible(sessionId);
        }
        try {
          // An agent asking to destroy means it: running tasks are cancelled (gRPC clients choose with `force`).
          const res = await conn.port.destroySession(sessionId, { force: true, saveCheckpoint: args.save_checkpoint ?? false });
          conn.sessions.forget(sessionId);
          return okResult({ session_id: sessionId, destroyed: res.destroyed, artifacts: res.artifacts, ...(res.checkpointId ? { checkpoint_id: res.checkpointId } : {}) });
        } catch (err) {
          if (isSessionNotFound(err)) conn.sessions.forget(sessionId);
          throw err;
        }
      },
    }),
    defineTool({
      name: 'session_checkpoint',
      legacyName: 'session.checkpoint',
      title: 'Checkpoint a session',
      description:
        "Save the session's files (artifacts/ included), installed packages, env vars and metadata as a checkpoint, and return its checkpoint_id. " +
        'Checkpoint before a risky step (a big refactor, an upgrade, deleting files) and at milestones you may want to return to; session_restore goes back. ' +
        "A checkpoint waits for the session's running task; tasks sent meanwhile wait for it. Variables in the interpreter's memory are not saved.",
      input: s.sessionCheckpointInput,
      output: s.sessionCheckpointOutput,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
      async run(args, { conn }) {
        const { sessionId } = await conn.sessions.resolve(args.session_id);
        return okResult(checkpointFields(await conn.port.checkpointSession(sessionId, { name: args.name ?? '' })));
      },
    }),
    defineTool({
      name: 'session_restore',
      legacyName: 'session.restore',
      title: 'Restore a checkpoint',
      description:
        "Put a session's files and packages back as they were at a checkpoint. By default the checkpoint's own session goes back (its running tasks are cancelled); " +
        'with create_new_session, a new session is made from it. Every checksum is checked first: a damaged checkpoint changes nothing.',
      input: s.sessionRestoreInput,
      output: s.sessionRestoreOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
      async run(args, { conn }) {
        let createNew = args.create_new_session ?? false;
        if (!createNew) {
          // Its session is gone: an agent asking to go back gets a new session from it.
          const c = await conn.port.getCheckpoint(args.checkpoint_id);
          createNew = !(await conn.port.getSession(c.sessionId).then(() => true, () => false));
        }
        const r = await conn.port.restoreCheckpoint(args.checkpoint_id, { createNew });
        if (createNew) conn.sessions.remember(r.session.sessionId);
        return okResult({ session_id: r.session.sessionId, worker_id: r.session.workerId, state: r.session.state, restored_in_place: !createNew, checkpoint: checkpointFields(r.checkpoint) });
      },
    }),
    defineTool({
      name: 'checkpoint_list',
      title: 'List checkpoints',
      description: "List checkpoints (oldest first): one session's, or all you may see. Each has its id, name, time, size and what changed since the one before.",
      input: s.checkpointListInput,
      output: s.checkpointListOutput,
      annotations: readOnly,
      async run(args, { conn }) {
        const list = (await conn.port.listCheckpoints(args.session_id ?? '')).map(checkpointFields);
        return okResult({ checkpoints: list, count: list.length });
      },
    }),
    defineTool({
      name: 'checkpoint_delete',
      title: 'Delete a checkpoint',
      description: 'Delete a checkpoint for good (its files stay in the store only while another checkpoint shares them).',
      input: s.checkpointDeleteInput,
      output: s.checkpointDeleteOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
      async run(args, { conn }) {
        return okResult({ checkpoint_id: args.checkpoint_id, deleted: await conn.port.deleteCheckpoint(args.checkpoint_id) });
      },
    }),
    defineTool({
      name: 'echo',
      title: 'Echo',
      description: 'Send a message through a session and back: checks that the session and its worker answer.',
      input: s.echoInput,
      output: s.echoOutput,
      annotations: readOnly,
      run: (args, ctx) => runToolTask('echo', args, args.session_id, ctx),
    }),
    defineTool({
      name: 'fs_read',
      legacyName: 'fs.read',
      title: 'Read a file',
      description: 'Read a file of the session workspace. Text comes back as UTF-8; other bytes as base64 (encoding says which).',
      input: s.fsReadInput,
      output: s.fsReadOutput,
      annotations: readOnly,
      run: (args, ctx) => runToolTask('fs_read', args, args.session_id, ctx),
    }),
    defineTool({
      name: 'fs_write',
      legacyName: 'fs.write',
      title: 'Write a file',
      description: 'Write (create or overwrite) a file in the session workspace. Use encoding "base64" for bytes and create_dirs for new folders.',
      input: s.fsWriteInput,
      output: s.fsWriteOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
      run: (args, ctx) => runToolTask('fs_write', args, args.session_id, ctx),
    }),
    defineTool({
      name: 'fs_list',
      legacyName: 'fs.list',
      title: 'List files',
      description: 'List files and folders of the session workspace (optionally recursive, filtered by a glob pattern).',
      input: s.fsListInput,
      output: s.fsListOutput,
      annotations: readOnly,
      run: (args, ctx) => runToolTask('fs_list', args, args.session_id, ctx),
    }),
    defineTool({
      name: 'run_python',
      legacyName: 'run.python',
      title: 'Run Python',
      description:
        "Run Python code (or a .py file of the workspace) in the session's virtual environment, in the workspace folder. " +
        'Returns stdout, stderr and exit_code; a non-zero exit is an error result with the traceback in stderr. ' +
        'Output lines stream as log messages. A run longer than the wait limit returns a task_id to poll with task_result.',
      input: s.runPythonInput,
      output: s.runPythonOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
      run: (args, ctx) => runToolTask('run_python', { ...args, env_vars: args.env }, args.session_id, ctx),
    }),
    defineTool({
      name: 'python_exec',
      title: 'Run Python in the persistent interpreter',
      description:
        "Run Python code in the session's persistent interpreter, like a notebook cell: variables, imports and functions stay for the next call. " +
        "Returns stdout, stderr, the trailing expression's value as result, and rich outputs (matplotlib figures, objects with _repr_png_ or _repr_html_) as images and HTML. " +
        'An exception is an error result with error_name and traceback; the state is kept. state_lost: true means the interpreter was restarted and earlier variables are gone. ' +
        'Use run_python instead to run a script fresh (argv, exit code).',
      input: s.pythonExecInput,
      output: s.pythonExecOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
      run: (args, ctx) => runToolTask('python_exec', args, args.session_id, ctx),
    }),
    defineTool({
      name: 'python_reset',
      title: 'Reset the persistent interpreter',
      description: "Discard the session's persistent interpreter (all variables and imports); the next python_exec starts a fresh one. Files are kept.",
      input: s.pythonResetInput,
      output: s.pythonResetOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
      run: (args, ctx) => runToolTask('python_reset', {}, args.session_id, ctx),
    }),
    defineTool({
      name: 'pkg_install',
      legacyName: 'pkg.install',
      title: 'Install Python packages',
      description: "Install packages with pip into the session's virtual environment; answers the versions actually installed.",
      input: s.pkgInstallInput,
      output: s.pkgInstallOutput,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: options.packageIndexReachable },
      run: (args, ctx) => runToolTask('pkg_install', args, args.session_id, ctx),
    }),
    defineTool({
      name: 'artifact_get',
      legacyName: 'artifact.get',
      title: 'Get an artifact',
      description: "Fetch a file from the session's artifacts/ folder: its bytes come back as an embedded resource with a MIME type.",
      input: s.artifactGetInput,
      output: s.artifactGetOutput,
      annotations: readOnly,
      run: (args, ctx) => runToolTask('artifact_get', args, args.session_id, ctx),
    }),
    defineTool({
      name: 'task_status',
      legacyName: 'task.status',
      title: 'Task status',
      description: 'State, progress and elapsed time of a task (from a call that outlived its wait).',
      input: s.taskIdInput,
      output: s.taskStatusOutput,
      annotations: readOnly,
      async run(args, { conn }) {
        const view = await conn.port.getTask(args.task_id, args.session_id);
        return okResult({
          task_id: view.taskId,
          session_id: view.sessionId,
          tool: view.tool,
          status: view.state,
          done: isFinalTaskState(view.state),
          elapsed_ms: view.elapsedMs,
          ...(view.progress ? { progress: { stage: view.progress.stage, message: view.progress.message, percent: view.progress.percent } } : {}),
        });
      },
    }),
    defineTool({
      name: 'task_result',
      legacyName: 'task.result',
      title: 'Task result',
      description: "Wait for a task to finish (up to wait_seconds) and return the tool's result; if it is still running, returns its status again.",
      input: s.taskResultInput,
      output: s.taskResultOutput,
      annotations: readOnly,
      async run(args, ctx) {
        const { conn } = ctx;
        const view = await conn.port.getTask(args.task_id, args.session_id);
        const limit = conn.settings.waitLimitMs;
        const waitMs = args.wait_seconds === undefined ? limit : Math.min(limit, args.wait_seconds * 1000);
        const outcome = view.outcome ?? (waitMs > 0 ? await waitForTask(conn, ctx.extra, view.taskId, waitMs) : undefined);
        let run: TaskRun;
        if (outcome) {
          run = { kind: 'done', taskId: view.taskId, sessionId: view.sessionId, outcome };
        } else {
          const now = await conn.port.getTask(args.task_id, args.session_id);
          run = now.outcome
            ? { kind: 'done', taskId: now.taskId, sessionId: now.sessionId, outcome: now.outcome }
            : { kind: 'pending', taskId: now.taskId, sessionId: now.sessionId, state: now.state, elapsedMs: now.elapsedMs };
        }
        return runResult(run, waitMs, undefined, { extraFields: { tool: view.tool } });
      },
    }),
    defineTool({
      name: 'task_cancel',
      legacyName: 'task.cancel',
      title: 'Cancel a task',
      description: "Cancel a queued or running task: its Python process group is killed. Finished tasks are left as they are.",
      input: s.taskIdInput,
      output: s.taskCancelOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
      async run(args, { conn }) {
        const res = await conn.port.cancelTask(args.task_id, 'cancelled with the task_cancel tool', args.session_id);
        return okResult({ task_id: args.task_id, cancelled: res.cancelled, status: res.state });
      },
    }),
  ];
  return specs as unknown as ToolSpec[];
}

/** Registers the tools on one connection's server; with `legacy`, under their dotted names too. */
export function registerTools(server: McpServer, conn: McpConnection, specs: ToolSpec[], legacy: boolean): void {
  for (const spec of specs) {
    const names = legacy && spec.legacyName ? [spec.name, spec.legacyName] : [spec.name];
    for (const name of names) {
      const description = name === spec.name ? spec.description : `${spec.description} (Old name of ${spec.name}.)`;
      server.registerTool(
        name,
        { title: spec.title, description, inputSchema: spec.input, outputSchema: spec.output, annotations: { title: spec.title, ...spec.annotations } },
        async (args: unknown, extra: ToolExtra): Promise<CallToolResult> => {
          try {
            return await spec.run(args as never, { conn, extra });
          } catch (err) {
            if (!(err instanceof CodegenError)) conn.logger.error({ err, tool: name }, 'tool handler failed');
            return errorResult(err);
          }
        },
      );
    }
  }
}
