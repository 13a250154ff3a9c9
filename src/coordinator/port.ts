import type { SessionConfig, SessionView, WorkerView } from '../domain/sessions.js';
import type { TaskConstraints, TaskOutcome, TaskProgress, TaskState, TaskUpdate } from '../domain/tasks.js';
import type { ToolCall } from '../domain/tools.js';
import type { CoordinatorMessage, WorkerMessage__Output } from '../wire/messages.js';

/**
 * The one port every front door (gRPC, MCP, CLI) uses to reach the coordinator's actors.
 * It owns no state: each method sends an event into the actor system or reads what an
 * actor says. Methods reject with CodegenError (code from domain/errors.ts).
 */
export interface CoordinatorPort {
  createSession(input: CreateSessionInput): Promise<SessionView>;
  destroySession(sessionId: string, options?: { force?: boolean }): Promise<{ destroyed: boolean; artifacts: string[] }>;
  getSession(sessionId: string): SessionView;
  listSessions(): SessionView[];
  getMetadata(sessionId: string): Record<string, string>;
  /** merge: true adds to the metadata, false replaces it. Returns the complete metadata after the call. */
  putMetadata(sessionId: string, metadata: Record<string, string>, merge: boolean): Record<string, string>;

  /**
   * Accepts a task (or finds the first run of a repeated task_id/sequence) and streams its
   * updates to `onUpdate`: progress and logs while it runs, then exactly one outcome. A task
   * already finished gets its outcome at once. `detach` stops the stream without cancelling.
   */
  submitTask(input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle>;
  cancelTask(taskId: string, reason: string, sessionId?: string): Promise<{ cancelled: boolean; state: TaskState }>;
  getTask(taskId: string, sessionId?: string): TaskView;
  /** Resolves with the outcome, or with undefined when `timeoutMs` passes first. */
  waitTask(taskId: string, timeoutMs: number): Promise<TaskOutcome | undefined>;

  listWorkers(): WorkerView[];
}

export interface CreateSessionInput {
  workerId?: string;
  workspaceId?: string;
  userId?: string;
  config?: Partial<SessionConfig>;
  metadata?: Record<string, string>;
}

export interface SubmitTaskInput {
  taskId?: string;
  sessionId: string;
  call: ToolCall;
  constraints?: Partial<TaskConstraints>;
  sequence?: number;
}

export interface TaskHandle {
  taskId: string;
  /** True when this call attached to an earlier run of the same task_id or sequence. */
  duplicate: boolean;
  detach(): void;
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
 * The WorkerLifecycle front door's port (WorkerRegistry): registrations and heartbeats as
 * events into the coordinator root, and each worker's open task stream handed to the actors.
 * Methods throw CodegenError (NOT_FOUND: an unknown registration, the worker registers again).
 */
export interface WorkerLifecyclePort {
  register(input: RegisterWorkerInput): { registrationId: string; heartbeatIntervalMs: number; heartbeatTimeoutMs: number };
  heartbeat(workerId: string, registrationId: string): void;
  deregister(workerId: string, registrationId: string, reason: string): void;
  /** The worker opened its task stream: commands go down `stream`; the front door passes what comes up to the link, and closes it when the stream ends. */
  openStream(workerId: string, registrationId: string, stream: WorkerStream): WorkerStreamLink;
}

export interface RegisterWorkerInput { workerId: string; maxSessions: number; isolation: string; hostname: string }

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
