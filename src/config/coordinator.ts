import { z } from 'zod';
import { bool, list, logLevel, parseConfig, port, positiveInt, seconds } from './load.js';

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
  WORKER_TOKEN: z.string().default(''),
  MCP_TOKEN: z.string().default(''),
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
});
export type CoordinatorEnv = z.infer<typeof CoordinatorEnv>;

export interface CoordinatorConfig {
  grpcHost: string;
  grpcPort: number;
  http: { enabled: boolean; host: string; port: number; token: string; allowedHosts: string[]; allowedOrigins: string[]; waitLimitMs: number; legacyToolNames: boolean };
  logLevel: CoordinatorEnv['LOG_LEVEL'];
  workerToken: string;
  idleTimeoutMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  drainTimeoutMs: number;
  createTimeoutMs: number;
  recoveryGraceMs: number;
}

export function coordinatorConfig(env: Record<string, string | undefined>): CoordinatorConfig {
  const e = parseConfig(CoordinatorEnv, env);
  const heartbeatIntervalMs = Math.round(e.HEARTBEAT_INTERVAL_SECONDS * 1000);
  return {
    grpcHost: e.GRPC_HOST,
    grpcPort: e.GRPC_PORT,
    http: {
      enabled: e.HTTP_ENABLED,
      host: e.HTTP_HOST,
      port: e.HTTP_PORT,
      token: e.MCP_TOKEN,
      allowedHosts: e.MCP_ALLOWED_HOSTS,
      allowedOrigins: e.MCP_ALLOWED_ORIGINS,
      waitLimitMs: Math.round(e.MCP_WAIT_LIMIT_SECONDS * 1000),
      legacyToolNames: e.LEGACY_TOOL_NAMES,
    },
    logLevel: e.LOG_LEVEL,
    workerToken: e.WORKER_TOKEN,
    idleTimeoutMs: Math.round(e.SESSION_IDLE_TIMEOUT_SECONDS * 1000),
    heartbeatIntervalMs,
    heartbeatTimeoutMs: heartbeatIntervalMs * e.HEARTBEAT_MISSES + 1000,
    drainTimeoutMs: Math.round(e.SESSION_DRAIN_TIMEOUT_SECONDS * 1000),
    createTimeoutMs: Math.round(e.SESSION_CREATE_TIMEOUT_SECONDS * 1000),
    recoveryGraceMs: Math.round(e.RECOVERY_GRACE_SECONDS * 1000),
  };
}
