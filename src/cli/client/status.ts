/**
 * `status`: is the fleet healthy? The coordinator's gRPC health, its workers (ListWorkers) and,
 * under each, the caller's own sessions. Exits 1 when no worker is online or the coordinator is
 * not SERVING (e.g. draining).
 */
import { CodegenError } from '../../domain/errors.js';
import { checkHealth } from '../health.js';
import type { Client } from './connection.js';
import { age, table, type Output } from './output.js';
import { sessionJson } from './sessions.js';
import type { SessionView } from '../../domain/sessions.js';

export async function showStatus(client: Client, out: Output): Promise<number> {
  const health = await checkHealth(client.address, '', 5_000, client.tls).catch((err: unknown) => {
    throw new CodegenError('UNAVAILABLE', `cannot reach the coordinator at ${client.address}: ${(err as Error).message.replace(`${client.address}: `, '')}`);
  });
  // The fleet is an operator's view: a tenant's key sees the coordinator's health and its own sessions.
  const listed = await client.port.listWorkers().catch((err: unknown) => {
    if (err instanceof CodegenError && err.code === 'PERMISSION_DENIED') return undefined;
    throw err;
  });
  const sessions = await client.port.listSessions();
  if (!listed) return tenantStatus(client, out, health, sessions);
  const workers = listed;
  workers.sort((a, b) => a.workerId.localeCompare(b.workerId));
  const online = workers.filter((w) => w.state === 'online').length;
  const healthy = health === 'SERVING' && online > 0;
  const reason = health !== 'SERVING' ? `the coordinator is ${health}` : online === 0 ? (workers.length ? `no worker is online (${workers.length} offline)` : 'no worker has registered') : '';
  const mine = (workerId: string) => sessions.filter((s) => s.workerId === workerId);
  const orphans = sessions.filter((s) => !workers.some((w) => w.workerId === s.workerId));
  if (out.json) {
    out.doc({
      coordinator: { address: client.address, health },
      healthy,
      ...(reason ? { reason } : {}),
      workers: workers.map((w) => ({ worker_id: w.workerId, state: w.state, max_sessions: w.maxSessions, sessions: w.sessions, your_sessions: mine(w.workerId).map((s) => sessionJson(s)) })),
      ...(orphans.length ? { sessions_elsewhere: orphans.map((s) => sessionJson(s)) } : {}),
    });
  } else {
    out.say(`coordinator ${client.address}: ${health}`);
    const rows: string[][] = [['WORKER', 'STATE', 'SESSIONS', 'YOURS']];
    for (const w of workers) {
      rows.push([w.workerId, w.state, `${w.sessions}/${w.maxSessions}`, String(mine(w.workerId).length)]);
      for (const s of mine(w.workerId)) rows.push([`  ${s.sessionId}`, s.state, age(s.createdAtMs), s.activeTasks ? `${s.activeTasks} task(s)` : '']);
    }
    if (workers.length) out.say(table(rows));
    for (const s of orphans) out.say(`session ${s.sessionId} (${s.state}) is on worker ${s.workerId || '?'}, which is not registered`);
    if (healthy) out.say(`healthy: ${online} of ${workers.length} worker(s) online`);
  }
  if (!healthy) out.note(`codegen-mcp: unhealthy: ${reason}${online === 0 && health === 'SERVING' ? '; start one with "codegen-mcp worker" (COORDINATOR_ADDR pointing at this coordinator)' : ''}`);
  return healthy ? 0 : 1;
}

/** What a tenant's key may see: the coordinator's health and the caller's sessions (workers need an admin credential). */
function tenantStatus(client: Client, out: Output, health: string, sessions: SessionView[]): number {
  const healthy = health === 'SERVING';
  const note = 'the workers are listed to an admin credential only (CLIENT_TOKEN, or a key made with --admin)';
  if (out.json) {
    out.doc({ coordinator: { address: client.address, health }, healthy, workers: null, workers_note: note, your_sessions: sessions.map((s) => sessionJson(s)) });
  } else {
    out.say(`coordinator ${client.address}: ${health}`);
    out.say(`workers: ${note}`);
    const rows: string[][] = [['SESSION', 'STATE', 'WORKER', 'AGE']];
    for (const s of sessions) rows.push([s.sessionId, s.state, s.workerId, age(s.createdAtMs)]);
    if (sessions.length) out.say(table(rows));
  }
  if (!healthy) out.note(`codegen-mcp: unhealthy: the coordinator is ${health}`);
  return healthy ? 0 : 1;
}
