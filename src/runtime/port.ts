import type { SessionConfig, SessionReport, SessionView, WorkerView } from '../domain/sessions.js';
import type { TaskConstraints, TaskOutcome, TaskProgress, TaskState, TaskUpdate } from '../domain/tasks.js';
import type { ToolCall } from '../domain/tools.js';
import type { CoordinatorMessage, WorkerMessage__Output } from '../wire/messages.js';
import type { WorkerFigures } from '../metrics/coordinator-metrics.js';

/**
 * The one port every front door (gRPC, MCP, the command line) uses to reach the coordinator:
 * the in-process actor system (coordinator/actor-port.ts) and a coordinator in another process
 * (grpc/remote-port.ts) both implement it. It owns no state and decides nothing: each method
 * sends an event into the actors and answers with what they say. Methods reject with
 * CodegenError (code from domain/errors.ts).
 */
export interface CoordinatorPort {
  createSession(input: CreateSessionInput): Promise<SessionView>;
  /** saveCheckpoint: a checkpoint first (its id in the answer); the session stays when it fails. */
  destroySession(sessionId: string, options?: { force?: boolean; saveCheckpoint?: boolean }): Promise<{ destroyed: boolean; artifacts: string[]; checkpointId: string }>;
  getSession(sessionId: string): Promise<SessionView>;
  listSessions(): Promise<SessionView[]>;
  getMetadata(sessionId: string): Promise<Record<string, string>>;
  /** merge: true adds to the metadata, false replaces it. Resolves with the complete metadata after the call. */
  putMetadata(sessionId: string, metadata: Record<string, string>, merge: boolean): Promise<Record<string, string>>;

  /**
   * Accepts a task (or finds the first run of a repeated task_id/sequence) and streams its
   * updates to `onUpdate`: progress and logs while it runs, then exactly one outcome. A task
   * already finished gets its outcome at once.
   */
  submitTask(input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle>;
  /** Follows a task by id, whoever started it: its further updates, then one outcome (at once when it has ended). */
  watchTask(taskId: string, sessionId: string | undefined, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<{ detach(): void }>;
  cancelTask(taskId: string, reason: string, sessionId?: string): Promise<{ cancelled: boolean; state: TaskState }>;
  getTask(taskId: string, sessionId?: string): Promise<TaskView>;
  /** Resolves with the outcome, or with undefined when `timeoutMs` passes first. */
  waitTask(taskId: string, timeoutMs: number): Promise<TaskOutcome | undefined>;

  listWorkers(): Promise<WorkerView[]>;

  /** The session's files, packages, env vars, metadata and config to the checkpoint store; waits behind the running task. */
  checkpointSession(sessionId: string, options?: { name?: string }): Promise<CheckpointView>;
  /**
   * createNew: a new session from the checkpoint (on workerId, or the least-loaded worker);
   * otherwise the checkpoint's own session goes back to it (its tasks cancelled first).
   * DATA_LOSS (nothing changed, no session left behind) when a checksum does not match.
   */
  restoreCheckpoint(checkpointId: string, options?: { workerId?: string; createNew?: boolean }): Promise<{ session: SessionView; checkpoint: CheckpointView }>;
  getCheckpoint(checkpointId: string): Promise<CheckpointView>;
  /** One session's checkpoints (all when sessionId is empty), oldest first. */
  listCheckpoints(sessionId?: string): Promise<CheckpointView[]>;
  deleteCheckpoint(checkpointId: string): Promise<boolean>;
}

export interface CheckpointView {
  checkpointId: string;
  name: string;
  sessionId: string;
  workspaceId: string;
  tenant: string;
  createdAtMs: number;
  /** What the checkpoint added to the store. */
  sizeBytes: number;
  storageUrl: string;
  /** The manifest's sha256: covers every file's size and sha256. */
  checksumSha256: string;
  envVars: Record<string, string>;
  installedPackages: string[];
  modifiedFiles: string[];
  fileCount: number;
  totalBytes: number;
  /** The session's task that took it ('' when not known). */
  taskId?: string;
}

export interface CreateSessionInput {
  workerId?: string;
  workspaceId?: string;
  userId?: string;
  /** The owning tenant (the tenancy layer sets it from the caller's credential). */
  tenant?: string;
  config?: Partial<SessionConfig>;
  metadata?: Record<string, string>;
}

export interface SubmitTaskInput {
  taskId?: string;
  sessionId: string;
  call: ToolCall;
  constraints?: Partial<TaskConstraints>;
  sequence?: number;
  /** Who submitted it (the audit log's "who", opaque to the actors). */
  origin?: string;
}

export interface TaskHandle {
  taskId: string;
  /** True when this call attached to an earlier run of the same task_id or sequence. */
  duplicate: boolean;
  /** Stop receiving updates; the task goes on. */
  detach(): void;
  /** The caller went away: stop receiving updates, and the task is cancelled when this caller started it. */
  abandon(reason: string): void;
}

export interface TaskView {
  taskId: string;
  sessionId: string;
  tool: string;
  state: TaskState;
  progress?: TaskProgress;
  elapsedMs: number;
  outcome?: TaskOutcome;
}

/**
 * The WorkerLifecycle front door's port (coordinator/worker-registry.ts): registrations and
 * heartbeats as events into the coordinator's root, and each worker's open task stream handed
 * to its connection actor. Methods throw CodegenError (NOT_FOUND: an unknown registration, the
 * worker registers again).
 */
export interface WorkerLifecyclePort {
  register(input: RegisterWorkerInput): { registrationId: string; heartbeatIntervalMs: number; heartbeatTimeoutMs: number };
  heartbeat(workerId: string, registrationId: string, figures?: WorkerFigures): void;
  deregister(workerId: string, registrationId: string, reason: string): void;
  /** The worker opened its task stream: commands go down `stream`; the front door passes what comes up to the link, and closes it when the stream ends. */
  openStream(workerId: string, registrationId: string, stream: WorkerStream): WorkerStreamLink;
}

export interface RegisterWorkerInput {
  workerId: string;
  instanceId: string;
  maxSessions: number;
  isolation: string;
  hostname: string;
  /** Every session the worker holds now. */
  sessions: SessionReport[];
}

/** The coordinator's end of a worker's TaskStream call, as the actors write to it. */
export interface WorkerStream {
  write(msg: CoordinatorMessage): void;
  end(): void;
}

/** What the front door tells the actors about an open task stream. */
export interface WorkerStreamLink {
  /** A message from the worker (after its hello). */
  receive(msg: WorkerMessage__Output): void;
  close(reason: string): void;
}
