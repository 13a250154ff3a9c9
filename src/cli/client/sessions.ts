/** `sessions` (the caller's sessions), `session create` and `session rm`. */
import type { SessionView } from '../../domain/sessions.js';
import type { Client } from './connection.js';
import { CodegenError } from '../../domain/errors.js';
import { CliError, UsageError } from './errors.js';
import { age, bytes, table, type Output } from './output.js';

/** A session as --json shows it (the wire's snake_case names, state without its prefix). */
export function sessionJson(v: SessionView, now = Date.now()) {
  return {
    session_id: v.sessionId,
    state: v.state,
    worker_id: v.workerId,
    created_at_ms: v.createdAtMs,
    last_activity_ms: v.lastActivityMs,
    age_seconds: v.createdAtMs ? Math.max(0, Math.round((now - v.createdAtMs) / 1000)) : 0,
    active_tasks: v.activeTasks,
    usage: { memory_bytes: v.usage.memoryBytes, cpu_millicores: v.usage.cpuMillicores, disk_bytes: v.usage.diskBytes },
    metadata: v.metadata,
    worker_unreachable_since_ms: v.unreachableSinceMs,
    ...(v.failureReason ? { failure_reason: v.failureReason } : {}),
    ...(v.survivalNote ? { survival_note: v.survivalNote } : {}),
  };
}

export async function listSessions(client: Client, out: Output): Promise<number> {
  const views = (await client.port.listSessions()).sort((a, b) => a.createdAtMs - b.createdAtMs);
  if (out.json) {
    out.doc({ sessions: views.map((v) => sessionJson(v)) });
    return 0;
  }
  if (views.length === 0) {
    out.say('no sessions ("codegen-mcp session create" makes one)');
    return 0;
  }
  const now = Date.now();
  const rows = views.map((v) => [
    v.sessionId,
    v.unreachableSinceMs ? `${v.state} (worker unreachable)` : v.state,
    v.workerId || '-',
    age(v.createdAtMs, now),
    age(v.lastActivityMs, now),
    String(v.activeTasks),
    v.usage.memoryBytes ? bytes(v.usage.memoryBytes) : '-',
    `${v.usage.cpuMillicores}m`,
    v.usage.diskBytes ? bytes(v.usage.diskBytes) : '-',
  ]);
  out.say(table([['SESSION', 'STATE', 'WORKER', 'AGE', 'IDLE', 'TASKS', 'MEMORY', 'CPU', 'DISK'], ...rows]));
  return 0;
}

export interface CreateFlags {
  env: string[];
  metadata: string[];
  network: boolean;
  worker?: string;
}

/** KEY=VALUE pairs of a repeatable flag. */
export function keyValues(flag: string, pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`${flag} ${JSON.stringify(pair)}: write it as KEY=VALUE`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

export async function createSession(client: Client, out: Output, flags: CreateFlags): Promise<number> {
  const env = keyValues('--env', flags.env);
  const metadata = keyValues('--metadata', flags.metadata);
  const progress = out.progress('creating a session');
  let view: SessionView;
  try {
    view = await client.port.createSession({ ...(flags.worker ? { workerId: flags.worker } : {}), config: { env_vars: env, allow_network: flags.network }, metadata });
  } finally {
    progress.stop();
  }
  if (out.json) out.doc({ session_id: view.sessionId, worker_id: view.workerId, state: view.state, created_at_ms: view.createdAtMs });
  // The id alone, so that S=$(codegen-mcp session create) works.
  else out.say(view.sessionId);
  return 0;
}

export async function removeSessions(client: Client, out: Output, ids: string[], flags: { force: boolean; checkpoint: boolean }): Promise<number> {
  const removed = [];
  for (const id of ids) {
    const r = await client.port.destroySession(id, { force: flags.force, saveCheckpoint: flags.checkpoint }).catch((err: unknown) => {
      // The coordinator says "destroy with force": name the flag that does it here.
      if (err instanceof CodegenError && err.code === 'FAILED_PRECONDITION' && /with force/.test(err.message)) throw new CliError(`${err.message} ("codegen-mcp session rm --force ${id}")`, 1, err.code);
      throw err;
    });
    removed.push({ session_id: id, destroyed: r.destroyed, checkpoint_id: r.checkpointId, artifacts: r.artifacts });
    out.say(`removed ${id}${r.checkpointId ? ` (checkpoint ${r.checkpointId})` : ''}`);
  }
  if (out.json) out.doc({ removed });
  return 0;
}
