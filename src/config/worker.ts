import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { defaultStateDir, workerTokenFileIn } from '../auth/secrets.js';
import { isSafeId } from '../domain/ids.js';
import { tlsFiles, type TlsFiles } from './tls.js';
import { bool, bytes, inspectUrl, logLevel, parseConfig, port, positiveInt, seconds, ConfigError } from './load.js';

/** The worker's variables (the guide's names), with their defaults. */
export const WorkerEnv = z.object({
  /** `{hostname}` and `{pid}` are expanded, so scaled replicas get distinct ids. */
  WORKER_ID: z.string().default('worker-1'),
  COORDINATOR_ADDR: z.string().default('localhost:50051'),
  MAX_SESSIONS: positiveInt(5),
  BASE_WORKSPACE: z.string().default('./tmp/workspaces'),
  CHECKPOINT_DIR: z.string().default(''),
  /** Accepted for the guide's table; workers dial the coordinator and listen on nothing. */
  GRPC_PORT: port(50052),
  LOG_LEVEL: logLevel,
  /** The coordinator's worker token. Unset: read from WORKER_TOKEN_FILE (default: worker-token in the state folder, where a coordinator on this host makes it). */
  WORKER_TOKEN: z.string().default(''),
  WORKER_TOKEN_FILE: z.string().default(''),
  CODEGEN_STATE_DIR: z.string().default(''),
  /** TLS to the coordinator: the CA that signed its certificate; TLS_CERT/TLS_KEY: this worker's client certificate (mutual TLS). */
  TLS_CA: z.string().default(''),
  TLS_CERT: z.string().default(''),
  TLS_KEY: z.string().default(''),
  /** The name the coordinator's certificate is checked against (default: the host of COORDINATOR_ADDR). */
  TLS_SERVER_NAME: z.string().default(''),
  SANDBOX: z.enum(['auto', 'bwrap', 'none']).default('auto'),
  VENV_POOL_SIZE: z.coerce.number().int().min(0).max(64).default(2),
  PYTHON: z.string().default('python3'),
  /** run_python forks a warm interpreter per session (a fork server in a long-lived sandbox); false = a fresh sandbox and interpreter per task. */
  WARM_PYTHON: bool(true),
  TASK_TIMEOUT_SECONDS: seconds(300),
  /** Limits on every session, on by default (0: none); a session may ask for less (SessionConfig.limits), never more. */
  MAX_MEMORY_PER_SESSION: bytes(1024 ** 3),
  MAX_PROCESSES_PER_SESSION: z.coerce.number().int().min(0).default(256),
  MAX_CPU_SECONDS_PER_TASK: z.coerce.number().int().min(0).default(600),
  /** Each session's workspace is a filesystem of this size (a loop-mounted image) where the host allows it; 0: no quota. */
  MAX_DISK_PER_SESSION: bytes(1024 ** 3),
  DRAIN_TIMEOUT_SECONDS: seconds(10),
  RECONNECT_MAX_SECONDS: z.coerce.number().positive().default(30),
  /** Test hook: SIGUSR2 crashes every session actor (to show they are restarted from their descriptions). Never in production. */
  CODEGEN_TEST_FAULTS: bool(false),
  /** Every actor of this process is sent, sanitised, to the Stately inspector here (ws://host:port; `codegen-mcp inspect` runs one). */
  STATELY_INSPECT_URL: inspectUrl,
});
export type WorkerEnv = z.infer<typeof WorkerEnv>;

export interface WorkerConfig {
  workerId: string;
  coordinatorAddr: string;
  maxSessions: number;
  baseWorkspace: string;
  checkpointDir: string;
  logLevel: WorkerEnv['LOG_LEVEL'];
  workerToken: string;
  workerTokenFile: string;
  stateDir: string;
  tls: TlsFiles;
  sandbox: WorkerEnv['SANDBOX'];
  venvPoolSize: number;
  python: string;
  warmPython: boolean;
  taskTimeoutSeconds: number;
  limits: { memoryBytes: number; maxProcesses: number; cpuSecondsPerTask: number };
  maxDiskPerSession: number;
  drainTimeoutMs: number;
  reconnectMaxMs: number;
  testFaults: boolean;
  inspectUrl: string;
}

export function workerConfig(env: Record<string, string | undefined>): WorkerConfig {
  const e = parseConfig(WorkerEnv, env);
  const workerId = e.WORKER_ID.replaceAll('{hostname}', hostname()).replaceAll('{pid}', String(process.pid));
  if (!isSafeId(workerId)) throw new ConfigError([`WORKER_ID: ${JSON.stringify(workerId)} must be letters, digits, '.', '_' or '-' (at most 128)`]);
  const baseWorkspace = resolve(e.BASE_WORKSPACE);
  const stateDir = defaultStateDir({ ...env, CODEGEN_STATE_DIR: e.CODEGEN_STATE_DIR });
  return {
    workerId,
    coordinatorAddr: e.COORDINATOR_ADDR,
    maxSessions: e.MAX_SESSIONS,
    baseWorkspace,
    checkpointDir: e.CHECKPOINT_DIR ? resolve(e.CHECKPOINT_DIR) : resolve(baseWorkspace, '..', 'checkpoints'),
    logLevel: e.LOG_LEVEL,
    workerToken: e.WORKER_TOKEN,
    workerTokenFile: e.WORKER_TOKEN_FILE ? resolve(e.WORKER_TOKEN_FILE) : workerTokenFileIn(stateDir),
    stateDir,
    tls: tlsFiles(e, 'client'),
    sandbox: e.SANDBOX,
    venvPoolSize: e.VENV_POOL_SIZE,
    python: e.PYTHON,
    warmPython: e.WARM_PYTHON,
    taskTimeoutSeconds: e.TASK_TIMEOUT_SECONDS,
    limits: { memoryBytes: e.MAX_MEMORY_PER_SESSION, maxProcesses: e.MAX_PROCESSES_PER_SESSION, cpuSecondsPerTask: e.MAX_CPU_SECONDS_PER_TASK },
    maxDiskPerSession: e.MAX_DISK_PER_SESSION,
    drainTimeoutMs: Math.round(e.DRAIN_TIMEOUT_SECONDS * 1000),
    reconnectMaxMs: Math.round(e.RECONNECT_MAX_SECONDS * 1000),
    testFaults: e.CODEGEN_TEST_FAULTS,
    inspectUrl: e.STATELY_INSPECT_URL,
  };
}
