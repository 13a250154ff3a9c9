/** The guide's session states, as the wire names them (without the SESSION_STATE_ prefix). */
export type SessionState = 'INITIALIZING' | 'READY' | 'BUSY' | 'IDLE' | 'DRAINING' | 'CHECKPOINTING' | 'FAILED' | 'TERMINATED' | 'EVICTED';

export const sessionStates: readonly SessionState[] = ['INITIALIZING', 'READY', 'BUSY', 'IDLE', 'DRAINING', 'CHECKPOINTING', 'FAILED', 'TERMINATED', 'EVICTED'];

/** A checkpoint a session is made from (after an eviction, or a recovery from a lost worker). */
export interface CheckpointRestore {
  checkpointId: string;
  manifestSha256: string;
  /** The survival note the session carries once restored. */
  note: string;
}

export interface SessionConfig {
  env_vars: Record<string, string>;
  allow_network: boolean;
  language: string;
  /** Less than the worker's maximum for this session (0 or absent: the worker's limit). */
  limits?: SessionLimitsRequest;
}

/** SessionConfig.limits as the client asked (bytes, millicores); the worker caps each at its own maximum. */
export interface SessionLimitsRequest {
  max_memory_bytes: number;
  max_cpu_millicores: number;
}

/**
 * What a session is, as its worker keeps it beside the workspace (BASE_WORKSPACE/.sessions/) and
 * reports it: enough to bring the session back after any restart.
 */
export interface SessionDescription {
  sessionId: string;
  workspaceId: string;
  userId: string;
  /** The tenant that owns it (its creator's credential names it). */
  tenant: string;
  config: SessionConfig;
  metadata: Record<string, string>;
  /** Bumped by every metadata change: the newest version wins when reports and updates cross. */
  metadataVersion: number;
  createdAtMs: number;
  lastActivityMs: number;
  /** When the session last came back from a restart (0: never), and what survived it. */
  restartedAtMs: number;
  survivalNote: string;
  /** READY → IDLE after this long without tasks; 0: never. */
  idleTimeoutMs: number;
  /** Only in a create: make the session from this checkpoint (never kept on disk). */
  restoreFrom?: CheckpointRestore;
}

/** A worker's report on one of its sessions: sent on every state change, and listed at registration. */
export interface SessionReport {
  description: SessionDescription;
  state: SessionState;
  workspacePath: string;
  failureReason: string;
  /** The worker no longer holds the session (destroyed, or lost with its workspace). */
  gone: boolean;
  /**
   * Which run of the session's actor made the report (the worker process and the restart count):
   * a new one means the previous run, and every task it had, are gone. '' when unknown.
   */
  incarnation: string;
  /**
   * The worker is destroying the session (DRAINING on its way to removal): when a later
   * registration does not list it, the destroy finished, and its last report may have been lost.
   */
  removing?: boolean;
  /** In the last report of a destroy: the artifacts (paths under artifacts/) whose files it removed. */
  removedArtifacts?: string[];
  /** What the session's processes used, as of this report (the worker adds it as it sends the report). */
  usage?: ResourceUsageView;
  /** The limits its worker enforces on it (0: none), as of this report. */
  limits?: SessionLimitsView;
}

/** SessionInfo.limits: what is enforced on the session (0: not enforced here). */
export interface SessionLimitsView {
  memoryBytes: number;
  maxProcesses: number;
  cpuSecondsPerTask: number;
  cpuMillicores: number;
  diskBytes: number;
}

/** SessionInfo.usage: memory in use now, CPU in millicores averaged since the previous report, disk (0: not measured). */
export interface ResourceUsageView {
  memoryBytes: number;
  cpuMillicores: number;
  diskBytes: number;
}

/** What front doors show of a session. */
export interface SessionView {
  sessionId: string;
  workerId: string;
  workspaceId: string;
  userId: string;
  tenant: string;
  workspacePath: string;
  state: SessionState;
  createdAtMs: number;
  lastActivityMs: number;
  activeTasks: number;
  recentTasks: string[];
  metadata: Record<string, string>;
  /** Why the session FAILED, when it did. */
  failureReason: string;
  restartedAtMs: number;
  survivalNote: string;
  /** Since when its worker has been unreachable; 0 while it is connected. */
  unreachableSinceMs: number;
  usage: ResourceUsageView;
  limits: SessionLimitsView;
}

export interface WorkerView {
  workerId: string;
  state: string;
  maxSessions: number;
  sessions: number;
  isolation: string;
}
