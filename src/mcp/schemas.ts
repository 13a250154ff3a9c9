/**
 * Input and output schemas of the MCP tools (zod 4). Inputs are strict objects, so a misspelt
 * argument is an error that names it rather than a silently ignored field. Outputs describe
 * `structuredContent`; tools that run as tasks share the task fields, and their result fields
 * are present once the task has finished (a call that outlives its wait answers with the task
 * fields only, to be polled with task_status / task_result).
 */
import { z } from 'zod';
import { MAX_TIMEOUT_SECONDS } from '../domain/tool-calls.js';

const sessionId = z
  .string()
  .min(1)
  .optional()
  .describe("Session to use. Omit it to use this connection's own default session, created on first use.");
const stringMap = z.record(z.string(), z.string());

// ---- inputs -------------------------------------------------------------------------------

export const sessionCreateInput = z.strictObject({
  metadata: stringMap.optional().describe('Labels to keep with the session (string to string).'),
  env: stringMap.optional().describe('Environment variables for every Python run in the session.'),
  allow_network: z.boolean().optional().describe('Let code in the session reach the network (default false).'),
});
export const sessionListInput = z.strictObject({});
export const sessionStatusInput = z.strictObject({ session_id: sessionId });
export const sessionDestroyInput = z.strictObject({
  session_id: z
    .string()
    .min(1)
    .optional()
    .describe("Session to destroy. Omit it to destroy this connection's default session (a new one is made on next use)."),
  save_checkpoint: z.boolean().optional().describe('Save a checkpoint first (its checkpoint_id is in the result); if the checkpoint fails, the session is not destroyed.'),
});
export const sessionCheckpointInput = z.strictObject({
  session_id: sessionId,
  name: z.string().optional().describe('A name for the checkpoint (letters, digits, spaces, "_.:@+-"; at most 128).'),
});
export const sessionRestoreInput = z.strictObject({
  checkpoint_id: z.string().min(1).describe('The checkpoint to restore (checkpoint_list shows them).'),
  create_new_session: z
    .boolean()
    .optional()
    .describe("true: restore into a new session (the checkpoint's session is left alone). Default: the checkpoint's own session goes back to it (its running tasks are cancelled), or a new session when that one no longer exists."),
});
export const checkpointListInput = z.strictObject({
  session_id: z.string().min(1).optional().describe('Only this session\'s checkpoints. Omit it for all the checkpoints you may see.'),
});
export const checkpointDeleteInput = z.strictObject({
  checkpoint_id: z.string().min(1).describe('The checkpoint to delete.'),
});

export const echoInput = z.strictObject({
  message: z.string().describe('Text to send back.'),
  session_id: sessionId,
});
export const fsReadInput = z.strictObject({
  path: z.string().min(1).describe('File path relative to the session workspace.'),
  session_id: sessionId,
});
export const fsWriteInput = z.strictObject({
  path: z.string().min(1).describe('File path relative to the session workspace.'),
  contents: z.string().describe('The file contents: text, or base64 when encoding is "base64".'),
  create_dirs: z.boolean().optional().describe('Create missing parent folders (default false).'),
  encoding: z.enum(['utf-8', 'utf8', 'base64']).optional().describe('"utf-8" (default) or "base64" for bytes.'),
  session_id: sessionId,
});
export const fsListInput = z.strictObject({
  path: z.string().optional().describe('Folder relative to the workspace (default: the workspace root).'),
  recursive: z.boolean().optional().describe('Include sub-folders (default false).'),
  pattern: z.string().optional().describe('Glob. Without a slash it matches names at any depth ("*.py"); with one, the path from the listed folder ("pkg/*.py", "**/test_*.py").'),
  session_id: sessionId,
});
/** A call's timeout in whole seconds: what happens at it, then the default and the bound. */
const timeoutSeconds = (what: string) =>
  z
    .number()
    .int()
    .min(0)
    .max(MAX_TIMEOUT_SECONDS)
    .optional()
    .describe(`${what} (0 or omitted: the worker's default; at most ${MAX_TIMEOUT_SECONDS}).`);

export const runPythonInput = z.strictObject({
  code: z.string().optional().describe('Python source to run. Set exactly one of code and file.'),
  file: z.string().optional().describe('A .py file in the workspace to run. Set exactly one of code and file.'),
  args: z.array(z.string()).optional().describe('Command-line arguments (sys.argv[1:]).'),
  env: stringMap.optional().describe('Extra environment variables for this run.'),
  timeout_seconds: timeoutSeconds('Kill the run after this many seconds'),
  session_id: sessionId,
});
export const pkgInstallInput = z.strictObject({
  packages: z
    .union([z.array(z.string()).min(1), z.string().min(1)])
    .describe('Requirement specifiers: an array, or one space-separated string, e.g. "numpy pandas==2.2".'),
  upgrade: z.boolean().optional().describe('Upgrade packages that are already installed.'),
  index_url: z.string().optional().describe('Package index URL (http(s) or file:) instead of the default.'),
  no_deps: z.boolean().optional().describe('Do not install dependencies.'),
  session_id: sessionId,
});
export const pythonExecInput = z.strictObject({
  code: z.string().min(1).describe("Python source to run in the session's persistent interpreter. A trailing expression's value comes back as result."),
  timeout_seconds: timeoutSeconds('Interrupt the code (KeyboardInterrupt) after this many seconds; if it does not stop, the interpreter is restarted and its state lost'),
  session_id: sessionId,
});
export const pythonResetInput = z.strictObject({ session_id: sessionId });
export const artifactGetInput = z.strictObject({
  artifact_id: z.string().min(1).describe("Path of a file under the session's artifacts/ folder."),
  session_id: sessionId,
});
export const taskIdInput = z.strictObject({
  task_id: z.string().min(1).describe('A task_id from a tool call that outlived its wait.'),
  session_id: z.string().min(1).optional().describe('The session the task belongs to (optional).'),
});
export const taskResultInput = taskIdInput.extend({
  wait_seconds: z
    .number()
    .min(0)
    .optional()
    .describe('How long to wait for the task to finish before answering with its status (default and maximum: the server wait limit).'),
});

// ---- outputs ------------------------------------------------------------------------------

export const taskStateSchema = z.enum(['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'errored']);

/** Fields every task-backed tool answers with. */
const taskFields = {
  task_id: z.string().describe('The task that ran (or still runs) this call.'),
  session_id: z.string(),
  status: taskStateSchema.describe('queued or running: still going (poll task_result); anything else is final.'),
  done: z.boolean().describe('False when the call outlived its wait; the result fields are then absent.'),
  message: z.string().optional().describe('What to do next when the task is still running.'),
};

const sessionSummary = z.object({
  session_id: z.string(),
  worker_id: z.string(),
  state: z.string(),
  created_at_ms: z.number(),
  last_activity_ms: z.number(),
  active_tasks: z.number(),
  recent_tasks: z.array(z.string()),
  metadata: stringMap,
  is_default: z.boolean().describe("True for this connection's default session."),
  failure_reason: z.string().optional(),
});
export type SessionSummary = z.infer<typeof sessionSummary>;

export const sessionCreateOutput = z.object({
  session_id: z.string(),
  worker_id: z.string(),
  state: z.string(),
  created_at_ms: z.number(),
  metadata: stringMap,
});
export const sessionListOutput = z.object({ sessions: z.array(sessionSummary), count: z.number() });
export const sessionStatusOutput = sessionSummary;
export const sessionDestroyOutput = z.object({
  session_id: z.string(),
  destroyed: z.boolean(),
  artifacts: z.array(z.string()),
  checkpoint_id: z.string().optional(),
});
const checkpointInfo = z.object({
  checkpoint_id: z.string(),
  name: z.string(),
  session_id: z.string(),
  created_at_ms: z.number(),
  size_bytes: z.number(),
  storage_url: z.string(),
  checksum_sha256: z.string(),
  file_count: z.number(),
  total_bytes: z.number(),
  installed_packages: z.array(z.string()),
  modified_files: z.array(z.string()),
  not_saved: z.string().describe('What the checkpoint does not hold: the interpreter memory of python_exec.'),
});
export type CheckpointInfoOut = z.infer<typeof checkpointInfo>;
export const sessionCheckpointOutput = checkpointInfo;
export const sessionRestoreOutput = z.object({ session_id: z.string(), worker_id: z.string(), state: z.string(), restored_in_place: z.boolean(), checkpoint: checkpointInfo });
export const checkpointListOutput = z.object({ checkpoints: z.array(checkpointInfo), count: z.number() });
export const checkpointDeleteOutput = z.object({ checkpoint_id: z.string(), deleted: z.boolean() });

export const echoOutput = z.object({ ...taskFields, message: z.string().optional() });
export const fsReadOutput = z.object({
  ...taskFields,
  path: z.string().optional(),
  contents: z.string().optional(),
  size_bytes: z.number().optional(),
  encoding: z.enum(['utf-8', 'base64']).optional(),
});
export const fsWriteOutput = z.object({ ...taskFields, path: z.string().optional(), bytes_written: z.number().optional() });
const fileInfo = z.object({
  path: z.string(),
  name: z.string(),
  size_bytes: z.number(),
  is_directory: z.boolean(),
  modified_time_ms: z.number(),
});
export const fsListOutput = z.object({
  ...taskFields,
  path: z.string().optional(),
  files: z.array(fileInfo).optional(),
  total_count: z.number().optional(),
});
export const runPythonOutput = z.object({
  ...taskFields,
  stdout: z.string().optional(),
  stderr: z.string().optional(),
  exit_code: z.number().optional(),
  duration_ms: z.number().optional(),
  timed_out: z.boolean().optional(),
});
export const pkgInstallOutput = z.object({
  ...taskFields,
  installed: z.array(z.object({ name: z.string(), version: z.string(), location: z.string() })).optional(),
  failed: z.array(z.string()).optional(),
  output: z.string().optional(),
  exit_code: z.number().optional(),
});
export const pythonExecOutput = z.object({
  ...taskFields,
  stdout: z.string().optional(),
  stderr: z.string().optional(),
  result: z.string().optional().describe("text/plain of the code's trailing expression ('' when none)."),
  outputs: z
    .array(z.object({ mime_type: z.string(), size_bytes: z.number() }))
    .optional()
    .describe('Rich outputs (images, HTML): each is also a content item of the result (PNG and JPEG as images).'),
  error_name: z.string().optional(),
  error_value: z.string().optional(),
  traceback: z.string().optional(),
  duration_ms: z.number().optional(),
  state_lost: z.boolean().optional().describe('The interpreter was restarted: variables and imports from earlier calls are gone.'),
  state_lost_reason: z.string().optional(),
  execution_count: z.number().optional(),
});
export const pythonResetOutput = z.object({ ...taskFields, reset: z.boolean().optional() });
export const artifactGetOutput = z.object({
  ...taskFields,
  artifact_id: z.string().optional(),
  size_bytes: z.number().optional(),
  content_type: z.string().optional(),
  uri: z.string().optional().describe('The embedded resource holding the bytes.'),
});

export const taskStatusOutput = z.object({
  task_id: z.string(),
  session_id: z.string(),
  tool: z.string(),
  status: taskStateSchema,
  done: z.boolean(),
  elapsed_ms: z.number(),
  progress: z.object({ stage: z.string(), message: z.string(), percent: z.number() }).optional(),
});
// Flat, like the direct call: once done, the tool's own fields (stdout, exit_code, files…) sit beside
// these, so a client parses one shape whether the call answered at once or through task_result.
export const taskResultOutput = z.looseObject({
  ...taskFields,
  tool: z.string().describe("The task's tool; once done, that tool's own result fields follow, as the direct call answers them."),
});
export const taskCancelOutput = z.object({ task_id: z.string(), cancelled: z.boolean(), status: z.string() });
