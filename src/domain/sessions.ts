/** The guide's session states, as the wire names them (without the SESSION_STATE_ prefix). */
export type SessionState =
  | 'INITIALIZING' | 'READY' | 'BUSY' | 'IDLE' | 'DRAINING' | 'CHECKPOINTING' | 'FAILED' | 'TERMINATED';

export interface SessionConfig {
  env_vars: Record<string, string>;
  allow_network: boolean;
  language: string;
}

/** What front doors show of a session. */
export interface SessionView {
  sessionId: string;
  workerId: string;
  workspaceId: string;
  workspacePath: string;
  state: SessionState;
  createdAtMs: number;
  lastActivityMs: number;
  activeTasks: number;
  recentTasks: string[];
  metadata: Record<string, string>;
  /** Why the session FAILED, when it did. */
  failureReason: string;
}

export interface WorkerView {
  workerId: string;
  state: string;
  maxSessions: number;
  sessions: number;
  isolation: string;
}
