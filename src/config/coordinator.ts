import path from 'node:path';
import { z } from 'zod';
import { clientKeysFileIn, clientTokenFileIn, defaultStateDir, workerTokenFileIn } from '../auth/secrets.js';
import type { TenantQuotas } from '../runtime/tenancy.js';
import { bool, inspectUrl, list, logLevel, parseConfig, port, positiveInt, seconds } from './load.js';
import { tlsFiles, type TlsFiles } from './tls.js';

/** The coordinator's variables (the guide's names), with their defaults. */
export const CoordinatorEnv = z.object({
  GRPC_PORT: port(50051),
  /** gRPC listens on every interface by default: workers on other hosts dial in. */
  GRPC_HOST: z.string().default('0.0.0.0'),
  HTTP_PORT: port(8080),
  /** MCP over HTTP stays on loopback unless told otherwise. */
  HTTP_HOST: z.string().default('127.0.0.1'),
  /** false disables the MCP HTTP front door. */
  HTTP_ENABLED: bool(true),
  LOG_LEVEL: logLevel,
  /** Where generated credentials live (default $XDG_STATE_HOME/codegen-mcp or ~/.local/state/codegen-mcp). */
  CODEGEN_STATE_DIR: z.string().default(''),
  /** The default tenant's shared token (admin role). Unset: read from CLIENT_TOKEN_FILE, made there at first start. */
  CLIENT_TOKEN: z.string().default(''),
  CLIENT_TOKEN_FILE: z.string().default(''),
  /** Per-tenant API keys (`codegen-mcp keys add`), re-read when it changes. Default: client-keys.json in the state folder. */
  CLIENT_KEYS_FILE: z.string().default(''),
  /** Workers present it. Unset: read from WORKER_TOKEN_FILE, made there at first start. */
  WORKER_TOKEN: z.string().default(''),
  WORKER_TOKEN_FILE: z.string().default(''),
  /** The first version's MCP HTTP token: still accepted, as CLIENT_TOKEN when that is unset. */
  MCP_TOKEN: z.string().default(''),
  /** Per-tenant quotas (0: none). */
  TENANT_MAX_SESSIONS: z.coerce.number().int().min(0).default(100),
  TENANT_MAX_CONCURRENT_TASKS: z.coerce.number().int().min(0).default(64),
  /** MCP HTTP sessions held at once; an initialize beyond it answers 503. */
  MCP_MAX_SESSIONS: positiveInt(1000),
  /** MCP HTTP sessions one tenant may hold at once; an initialize beyond it answers 429. */
  MCP_MAX_SESSIONS_PER_TENANT: positiveInt(100),
  /** An MCP HTTP session with no open request for this long is closed (0: never). */
  MCP_SESSION_IDLE_SECONDS: seconds(1800),
  /** TLS for gRPC and MCP HTTP: the server's certificate chain and key (PEM files). */
  TLS_CERT: z.string().default(''),
  TLS_KEY: z.string().default(''),
  /** With it, clients (workers) must present a certificate signed by this CA: mutual TLS; a worker's id is then its certificate's. */
  TLS_CLIENT_CA: z.string().default(''),
  MCP_ALLOWED_HOSTS: list,
  MCP_ALLOWED_ORIGINS: list,
  MCP_WAIT_LIMIT_SECONDS: seconds(50),
  LEGACY_TOOL_NAMES: bool(false),
  SESSION_IDLE_TIMEOUT_SECONDS: seconds(900),
  HEARTBEAT_INTERVAL_SECONDS: z.coerce.number().positive().default(5),
  /** Missed heartbeats before a worker is declared lost. */
  HEARTBEAT_MISSES: positiveInt(3),
  SESSION_DRAIN_TIMEOUT_SECONDS: seconds(10),
  /** How long CreateSession waits for a worker to make the session READY. */
  SESSION_CREATE_TIMEOUT_SECONDS: z.coerce.number().positive().default(120),
  /** After a start, how long an unknown session id answers UNAVAILABLE ("recovering") instead of NOT_FOUND. */
  RECOVERY_GRACE_SECONDS: seconds(30),
  /** The checkpoint store's folder; default <CODEGEN_STATE_DIR>/checkpoints. */
  CHECKPOINT_DIR: z.string().default(''),
  /** Where checkpoints are kept: '' (CHECKPOINT_DIR) or s3://bucket/prefix. */
  CHECKPOINT_STORE: z
    .string()
    .default('')
    .refine((v) => v === '' || v.startsWith('s3://') || v.startsWith('file:'), { error: 'must be s3://bucket/prefix (or empty: the folder CHECKPOINT_DIR)' }),
  /** An S3-compatible server's URL (MinIO, Ceph…); '' for AWS. Credentials come from the AWS SDK's usual sources (AWS_ACCESS_KEY_ID…). */
  CHECKPOINT_S3_ENDPOINT: z.string().default(''),
  CHECKPOINT_S3_REGION: z.string().default(''),
  /** Checkpoints older than this are deleted, except the latest of each live session (0: kept forever). */
  CHECKPOINT_RETENTION_DAYS: z.coerce.number().min(0).default(7),
  /** A session that goes IDLE with changes since its latest checkpoint is checkpointed. */
  CHECKPOINT_ON_IDLE: bool(false),
  /** An idle session is checkpointed and evicted from its worker after this long without a task (0: never); its next task restores it. */
  SESSION_EVICT_AFTER_SECONDS: z.coerce.number().min(0).default(0),
  /** A lost worker's sessions with a checkpoint are restored on another worker when it is not back within this (0: never). */
  SESSION_RECOVERY_SECONDS: z.coerce.number().min(0).default(30),
  /** The most bytes the checkpoint store may hold (0: what its disk has). */
  CHECKPOINT_STORE_MAX_BYTES: z.coerce.number().int().min(0).default(0),
  /** Every actor of this process is sent, sanitised, to the Stately inspector here (ws://host:port; `codegen-mcp inspect` runs one). */
  STATELY_INSPECT_URL: inspectUrl,
  /** The audit log's JSON lines: a file path, or `stdout`; '' for none. */
  AUDIT_LOG: z.string().default(''),
});
export type CoordinatorEnv = z.infer<typeof CoordinatorEnv>;

export interface CoordinatorConfig {
  grpcHost: string;
  grpcPort: number;
  http: { enabled: boolean; host: string; port: number; allowedHosts: string[]; allowedOrigins: string[]; waitLimitMs: number; legacyToolNames: boolean; maxSessions: number; maxSessionsPerTenant: number; sessionIdleMs: number };
  logLevel: CoordinatorEnv['LOG_LEVEL'];
  stateDir: string;
  /** '' until resolved at start (auth/secrets.ts): then the configured or generated token. */
  clientToken: string;
  clientTokenFile: string;
  clientKeysFile: string;
  workerToken: string;
  workerTokenFile: string;
  quotas: TenantQuotas;
  tls: TlsFiles;
  idleTimeoutMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  drainTimeoutMs: number;
  createTimeoutMs: number;
  recoveryGraceMs: number;
  inspectUrl: string;
  auditLog: string;
  checkpoints: { dir: string; store: string; s3Endpoint: string; s3Region: string; maxBytes: number; retentionMs: number; onIdle: boolean; evictAfterMs: number; recoveryMs: number };
}

export function coordinatorConfig(env: Record<string, string | undefined>): CoordinatorConfig {
  const e = parseConfig(CoordinatorEnv, env);
  const heartbeatIntervalMs = Math.round(e.HEARTBEAT_INTERVAL_SECONDS * 1000);
  const stateDir = defaultStateDir({ ...env, CODEGEN_STATE_DIR: e.CODEGEN_STATE_DIR });
  return {
    grpcHost: e.GRPC_HOST,
    grpcPort: e.GRPC_PORT,
    http: {
      enabled: e.HTTP_ENABLED,
      host: e.HTTP_HOST,
      port: e.HTTP_PORT,
      allowedHosts: e.MCP_ALLOWED_HOSTS,
      allowedOrigins: e.MCP_ALLOWED_ORIGINS,
      waitLimitMs: Math.round(e.MCP_WAIT_LIMIT_SECONDS * 1000),
      legacyToolNames: e.LEGACY_TOOL_NAMES,
      maxSessions: e.MCP_MAX_SESSIONS,
      maxSessionsPerTenant: e.MCP_MAX_SESSIONS_PER_TENANT,
      sessionIdleMs: Math.round(e.MCP_SESSION_IDLE_SECONDS * 1000),
    },
    logLevel: e.LOG_LEVEL,
    stateDir,
    clientToken: e.CLIENT_TOKEN || e.MCP_TOKEN,
    clientTokenFile: e.CLIENT_TOKEN_FILE ? path.resolve(e.CLIENT_TOKEN_FILE) : clientTokenFileIn(stateDir),
    clientKeysFile: e.CLIENT_KEYS_FILE ? path.resolve(e.CLIENT_KEYS_FILE) : clientKeysFileIn(stateDir),
    workerToken: e.WORKER_TOKEN,
    workerTokenFile: e.WORKER_TOKEN_FILE ? path.resolve(e.WORKER_TOKEN_FILE) : workerTokenFileIn(stateDir),
    quotas: { maxSessions: e.TENANT_MAX_SESSIONS, maxConcurrentTasks: e.TENANT_MAX_CONCURRENT_TASKS },
    tls: tlsFiles(e, 'server'),
    idleTimeoutMs: Math.round(e.SESSION_IDLE_TIMEOUT_SECONDS * 1000),
    heartbeatIntervalMs,
    heartbeatTimeoutMs: heartbeatIntervalMs * e.HEARTBEAT_MISSES + 1000,
    drainTimeoutMs: Math.round(e.SESSION_DRAIN_TIMEOUT_SECONDS * 1000),
    createTimeoutMs: Math.round(e.SESSION_CREATE_TIMEOUT_SECONDS * 1000),
    recoveryGraceMs: Math.round(e.RECOVERY_GRACE_SECONDS * 1000),
    inspectUrl: e.STATELY_INSPECT_URL,
    auditLog: e.AUDIT_LOG,
    checkpoints: {
      dir: e.CHECKPOINT_DIR ? path.resolve(e.CHECKPOINT_DIR) : path.join(stateDir, 'checkpoints'),
      store: e.CHECKPOINT_STORE,
      s3Endpoint: e.CHECKPOINT_S3_ENDPOINT,
      s3Region: e.CHECKPOINT_S3_REGION || env['AWS_REGION'] || '',
      maxBytes: e.CHECKPOINT_STORE_MAX_BYTES,
      retentionMs: Math.round(e.CHECKPOINT_RETENTION_DAYS * 86_400_000),
      onIdle: e.CHECKPOINT_ON_IDLE,
      evictAfterMs: Math.round(e.SESSION_EVICT_AFTER_SECONDS * 1000),
      recoveryMs: Math.round(e.SESSION_RECOVERY_SECONDS * 1000),
    },
  };
}
