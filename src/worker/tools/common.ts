import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { CodegenError, invalidArgument } from '../../domain/errors.js';
import type { TaskStatus } from '../../domain/tasks.js';
import type { LaunchResult, LaunchSpec } from '../../sandbox/launch.js';
import type { ToolContext } from './types.js';

/** Files larger than this are not read into memory (fs_read, artifact_get). */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_OUTPUT_BYTES = 1024 * 1024;
export const DEFAULT_TIMEOUT_SECONDS = 300;
export const MAX_TIMEOUT_SECONDS = 3600;

/** <workspace>/.venv from <workspace>/.venv/bin/python. */
export const venvDirOf = (venvPython: string): string => path.dirname(path.dirname(venvPython));

/** The scrubbed environment every program in a session starts from. */
export function baseEnv(ctx: ToolContext): Record<string, string> {
  const venv = venvDirOf(ctx.venvPython);
  return {
    PATH: `${venv}/bin:/usr/local/bin:/usr/bin:/bin`,
    HOME: ctx.workspace,
    VIRTUAL_ENV: venv,
    PYTHONUNBUFFERED: '1',
    LANG: 'C.UTF-8',
    TMPDIR: '/tmp',
  };
}

/** The sandbox part of a launch spec for this session. */
export function sandboxFor(ctx: ToolContext, allowNetwork: boolean, readOnly: string[] = []): NonNullable<LaunchSpec['sandbox']> {
  const memory = ctx.constraints.max_memory_bytes;
  return {
    workspace: ctx.workspace,
    hide: ctx.hidePaths ?? [path.dirname(ctx.workspace)],
    readOnly,
    allowNetwork,
    memoryBytes: memory > 0 ? memory : undefined,
    maxProcesses: ctx.sandboxLimits?.maxProcesses,
    maxFileBytes: ctx.sandboxLimits?.maxFileBytes,
    cpuSeconds: ctx.sandboxLimits?.cpuSeconds,
    // The session's cgroup: every process of the session counts against its limits together.
    sessionId: ctx.sessionId,
    ...(ctx.sessionLimits ? { limits: ctx.sessionLimits } : {}),
  };
}

/** A program the kernel stopped at one of the session's limits: the task ends LIMIT_EXCEEDED, naming it. */
export function throwIfLimitExceeded(result: LaunchResult): void {
  if (!result.limitExceeded) return;
  const tail = (s: string) => s.slice(-2_000);
  throw new CodegenError('LIMIT_EXCEEDED', result.limitExceeded.message, { details: [tail(result.stdout), tail(result.stderr)].filter(Boolean).join('\n') });
}

/** Send a log line without letting a listener's failure break the tool. */
export function emitLog(ctx: ToolContext, stream: 'stdout' | 'stderr' | 'system', line: string): void {
  try {
    ctx.onLog({ stream, line, timestampMs: Date.now() });
  } catch {
    // listeners must not throw; if one does, the run goes on
  }
}

export function emitProgress(ctx: ToolContext, stage: string, message: string, percent: number, startedAt: number): void {
  try {
    ctx.onProgress({ stage, message, percent, elapsedMs: Date.now() - startedAt });
  } catch {
    // as above
  }
}

/** A finished program's status: cancel wins over timeout, then the exit code decides. */
export function statusOf(result: LaunchResult, ctx: ToolContext): TaskStatus {
  if (result.cancelled) return 'CANCELLED';
  if (result.timedOut) return 'TIMEOUT';
  return result.exitCode === 0 ? 'SUCCESS' : 'FAILURE';
}

/** Seconds → milliseconds for a program: the request's, else the task's, else the default; capped. */
export function timeoutMsOf(requested: number | undefined, ctx: ToolContext, fallbackSeconds = DEFAULT_TIMEOUT_SECONDS): number {
  const req = requested ?? 0;
  if (!Number.isFinite(req) || req < 0) throw invalidArgument('timeout_seconds', 'must be zero (the default) or a positive number of seconds');
  const seconds = req || ctx.constraints.timeout_seconds || fallbackSeconds;
  return Math.min(seconds, MAX_TIMEOUT_SECONDS) * 1000;
}

export const outputCapOf = (ctx: ToolContext): number => (ctx.constraints.max_output_bytes > 0 ? ctx.constraints.max_output_bytes : DEFAULT_OUTPUT_BYTES);

const MAX_ARTIFACT_SCAN = 2000;

/** path under artifacts/ → "mtime:size", to tell which artifacts a run made or changed. */
export async function snapshotArtifacts(workspace: string): Promise<Map<string, string>> {
  const root = path.join(workspace, 'artifacts');
  const seen = new Map<string, string>();
  const walk = async (dir: string, prefix: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (seen.size >= MAX_ARTIFACT_SCAN) return;
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      const abs = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(abs, rel);
      else if (entry.isFile()) {
        const info = await lstat(abs).catch(() => null);
        if (info) seen.set(rel, `${info.mtimeMs}:${info.size}`);
      }
    }
  };
  await walk(root, '');
  return seen;
}

/** Artifact ids (paths relative to artifacts/) that are new or changed between two snapshots, sorted. */
export function changedArtifacts(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [rel, sig] of after) if (before.get(rel) !== sig) out.push(rel);
  return out.sort();
}

/** NOT_FOUND naming the path. */
export const notFound = (field: string, userPath: string, extra = ''): CodegenError =>
  new CodegenError('NOT_FOUND', `${field} ${JSON.stringify(userPath)}: no such file or directory${extra}`);
