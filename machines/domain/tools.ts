/**
 * The typed tools a session runs, in the wire's snake_case shape (tools.proto), so the codecs
 * only turn oneofs into tagged unions and int64 strings into numbers.
 */
export interface EchoInput { message: string }
export interface EchoOutput { message: string }

export interface FsReadInput { path: string }
export interface FsReadOutput { contents: string; size_bytes: number; encoding: 'utf-8' | 'base64' }

export interface FsWriteInput { path: string; contents: string; create_dirs: boolean; encoding: 'utf-8' | 'base64' }
export interface FsWriteOutput { path: string; bytes_written: number }

export interface FsListInput { path: string; recursive: boolean; pattern: string }
export interface FileInfo { path: string; name: string; size_bytes: number; is_directory: boolean; modified_time_ms: number }
export interface FsListOutput { files: FileInfo[]; total_count: number }

export interface RunPythonInput {
  /** Exactly one of code and file is set. */
  code?: string;
  file?: string;
  args: string[];
  env_vars: Record<string, string>;
  /** 0 means the worker's default. */
  timeout_seconds: number;
}
export interface RunPythonOutput { stdout: string; stderr: string; exit_code: number; duration_ms: number; timed_out: boolean }

export interface PkgInstallInput { packages: string[]; upgrade: boolean; index_url: string; no_deps: boolean }
export interface PackageInfo { name: string; version: string; location: string }
export interface PkgInstallOutput { installed: PackageInfo[]; failed: string[]; output: string; exit_code: number }

export interface ArtifactGetInput { artifact_id: string }
/** `data` is bytes (a Node Buffer at run time). */
export interface ArtifactGetOutput { data: Uint8Array; artifact_id: string; size_bytes: number; content_type: string }

export interface PythonExecInput {
  code: string;
  /** 0 means the worker's default. */
  timeout_seconds: number;
}
/** `data` is bytes (a Node Buffer at run time). */
export interface RichOutput { mime_type: string; data: Uint8Array }
export interface PythonExecOutput {
  stdout: string;
  stderr: string;
  /** text/plain of a trailing expression, or ''. */
  result: string;
  outputs: RichOutput[];
  error_name: string;
  error_value: string;
  traceback: string;
  duration_ms: number;
  state_lost: boolean;
  execution_count: number;
  state_lost_reason: string;
}
/** What no checkpoint holds (CheckpointMetadata.not_saved): interpreter memory cannot be saved on these hosts. */
export const CHECKPOINT_NOT_SAVED = "the interpreter's memory: python_exec's variables, imports and threads (a checkpoint holds files, installed packages, environment variables and metadata)";

/** The error_name of a python_exec call whose interpreter ended under it (a crash, a limit, a kill). */
export const INTERPRETER_DIED = 'InterpreterDied';

export type PythonResetInput = Record<string, never>;
export interface PythonResetOutput { reset: boolean }

/**
 * The session's own operations, run as tasks in its queue so they wait for the running task and
 * later tasks wait for them; only the coordinator sends them (never a client's ExecuteTask).
 */
export interface CheckpointToolInput { checkpoint_id: string; previous_manifest_sha256: string }
export interface CheckpointToolOutput {
  manifest_sha256: string;
  added_bytes: number;
  file_count: number;
  total_bytes: number;
  installed_packages: string[];
  modified_files: string[];
  modified_count: number;
  python_version: string;
}
export interface RestoreToolInput { checkpoint_id: string; manifest_sha256: string }
export interface RestoreToolOutput { file_count: number; total_bytes: number }

export interface ToolInputs {
  checkpoint: CheckpointToolInput;
  restore: RestoreToolInput;
  echo: EchoInput;
  fs_read: FsReadInput;
  fs_write: FsWriteInput;
  fs_list: FsListInput;
  run_python: RunPythonInput;
  pkg_install: PkgInstallInput;
  artifact_get: ArtifactGetInput;
  python_exec: PythonExecInput;
  python_reset: PythonResetInput;
}
export interface ToolOutputs {
  checkpoint: CheckpointToolOutput;
  restore: RestoreToolOutput;
  echo: EchoOutput;
  fs_read: FsReadOutput;
  fs_write: FsWriteOutput;
  fs_list: FsListOutput;
  run_python: RunPythonOutput;
  pkg_install: PkgInstallOutput;
  artifact_get: ArtifactGetOutput;
  python_exec: PythonExecOutput;
  python_reset: PythonResetOutput;
}
export type ToolName = keyof ToolInputs;
export type InternalToolName = 'checkpoint' | 'restore';
export type ClientToolName = Exclude<ToolName, InternalToolName>;
/** The tools a client may call. */
export const toolNames: readonly ClientToolName[] = ['echo', 'fs_read', 'fs_write', 'fs_list', 'run_python', 'pkg_install', 'artifact_get', 'python_exec', 'python_reset'];
export const internalToolNames: readonly InternalToolName[] = ['checkpoint', 'restore'];
/** Tasks that put the session in CHECKPOINTING while they run. */
export const isCheckpointingTool = (tool: string): boolean => tool === 'checkpoint' || tool === 'restore';

/** A tool call: which tool, with its input. */
export type ToolCall = { [K in ToolName]: { tool: K; input: ToolInputs[K] } }[ToolName];
/** A tool's answer: which tool, with its output. */
export type ToolReply = { [K in ToolName]: { tool: K; output: ToolOutputs[K] } }[ToolName];
