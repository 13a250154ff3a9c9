/**
 * Watching a real system run: STATELY_INSPECT_URL sends every actor of the coordinator and of a
 * worker, sanitised, to a relay on 127.0.0.1 (the one `codegen-mcp inspect` runs), in the
 * @statelyai/inspect format; GET /metrics counts known work in Prometheus text; AUDIT_LOG
 * records who made sessions, ran tasks, took checkpoints and registered workers, never what was
 * in them. Credentials and Host checks guard /metrics like /mcp.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { WebSocket } from 'ws';
import { startRelay, type RunningRelay } from '../../src/inspection/relay.js';
import { spawnSync } from 'node:child_process';
import { python, replyOf, repoRoot, runTask, TestSystem, unary, until, type Wire } from '../helpers/system.js';

const SECRET = 'S3CR3T-observability-7f3a9c';
const GONE = `sess-${'0'.repeat(32)}`;
let sys: TestSystem;
let relay: RunningRelay;
let viewer: WebSocket;
const received: string[] = [];
let auditPath: string;
let sessionId: string;

beforeAll(async () => {
  relay = await startRelay({ port: 0 });
  viewer = new WebSocket(relay.wsUrl);
  viewer.on('message', (d) => received.push(d.toString()));
  await new Promise((r, j) => (viewer.once('open', r), viewer.once('error', j)));
  sys = new TestSystem({ label: 'observe' });
  auditPath = path.join(sys.root, 'audit', 'audit.jsonl');
  await sys.startUp(1, { STATELY_INSPECT_URL: relay.wsUrl, AUDIT_LOG: auditPath, HEARTBEAT_INTERVAL_SECONDS: '1', WARM_PYTHON: 'true' });
  const s = (await unary(sys.clients.sessions, 'CreateSession', { config: { env_vars: { API_TOKEN: SECRET } } })) as Wire;
  sessionId = s['session_id'] as string;
  await runTask(sys.clients, { session_id: sessionId, typed_request: { fs_write: { path: 'secret.txt', contents: SECRET } } });
  const printed = await runTask(sys.clients, python(sessionId, `print(open("secret.txt").read())`));
  expect(replyOf(printed, 'run_python')['stdout']).toContain(SECRET);
  // One program killed by its timeout, for codegen_sandbox_kills_total.
  await runTask(sys.clients, python(sessionId, 'import time; time.sleep(30)', {}, { constraints: { timeout_seconds: 1 } }));
  await unary(sys.clients.sessions, 'CheckpointSession', { session_id: sessionId, checkpoint_name: 'observed' });
}, 180_000);

afterAll(async () => {
  viewer?.close();
  await sys?.stop();
  await relay?.close();
}, 120_000);

const events = () => received.map((t) => JSON.parse(t) as Wire);

describe('the Stately inspector (STATELY_INSPECT_URL)', () => {
  it('gets @xstate.actor with definitions, @xstate.event and @xstate.snapshot from the coordinator and the worker', async () => {
    const machineOf = (e: Wire) => (e.type === '@xstate.actor' && e.definition ? (JSON.parse(e.definition) as Wire).id : undefined);
    const found = (es: Wire[]) => es.some((e) => machineOf(e) === 'session' && String(e.sessionId).startsWith('worker-1/'));
    // (until() prints its last value on failure: give it a count, not every event.)
    await until(async () => found(events()), (ok) => ok, 20_000, 200, "the worker's session actor");
    const es = events();
    for (const who of ['coordinator/', 'worker-1/']) {
      const mine = es.filter((e) => String(e.sessionId).startsWith(who));
      expect(mine.filter((e) => e.type === '@xstate.event').length, who).toBeGreaterThan(0);
      expect(mine.filter((e) => e.type === '@xstate.snapshot').length, who).toBeGreaterThan(0);
      for (const e of mine) expect(e._version, 'the package format').toMatch(/^\d+\.\d+/);
    }
    const proxy = es.find((e) => machineOf(e) === 'sessionProxy');
    expect(proxy, 'a session proxy registered').toBeDefined();
    expect(JSON.parse(proxy!.definition).id).toBe('sessionProxy');
    expect(String(proxy!.parentId)).toMatch(/^coordinator\//);
    const session = es.find((e) => machineOf(e) === 'session' && String(e.sessionId).startsWith('worker-1/'));
    expect(session!.name).toBe(`session:${sessionId}`);
    expect(JSON.parse(session!.definition).states).toHaveProperty('running');
    // The session went BUSY and back: its snapshots say so.
    const values = es.filter((e) => e.type === '@xstate.snapshot' && e.sessionId === session!.sessionId).map((e) => JSON.stringify(e.snapshot.value));
    expect(values.some((v) => v.includes('running'))).toBe(true);
  });

  it('never carries file contents, stdout, env values or tokens', () => {
    expect(received.length).toBeGreaterThan(50);
    const leaks = received.filter((t) => t.includes(SECRET) || t.includes(sys.clientToken));
    expect(leaks.length, `a leak: ${leaks[0]?.slice(0, 600)}`).toBe(0);
    // …but names and sizes do come through.
    expect(received.some((t) => t.includes('secret.txt'))).toBe(true);
  });
});

const metricsText = async (headers: Record<string, string> = { Authorization: `Bearer ${sys.clientToken}` }) => fetch(`http://127.0.0.1:${sys.httpPort}/metrics`, { headers });

/** The value of one sample: `name{a="x",b="y"} 3`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('GET /metrics', () => {
  it('counts the known work in Prometheus text', async () => {
    const res = await metricsText();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    expect((sample(text, 'codegen_sessions', { state: 'READY' }) ?? 0) + (sample(text, 'codegen_sessions', { state: 'IDLE' }) ?? 0)).toBe(1);
    // Every state has its series, 0 included.
    expect(sample(text, 'codegen_sessions', { state: 'FAILED' })).toBe(0);
    expect(sample(text, 'codegen_workers', { state: 'offline' })).toBe(0);
    expect(sample(text, 'codegen_workers', { state: 'online' })).toBe(1);
    expect(sample(text, 'codegen_tasks_total', { tool: 'fs_write', status: 'SUCCESS' })).toBe(1);
    expect(sample(text, 'codegen_tasks_total', { tool: 'run_python', status: 'SUCCESS' })).toBe(1);
    expect(sample(text, 'codegen_tasks_total', { tool: 'run_python', status: 'TIMEOUT' })).toBe(1);
    expect(sample(text, 'codegen_task_duration_seconds_count', { tool: 'run_python' })).toBe(2);
    expect(sample(text, 'codegen_task_duration_seconds_bucket', { tool: 'run_python', le: '+Inf' })).toBe(2);
    expect(sample(text, 'codegen_task_queue_depth')).toBe(0);
    expect(sample(text, 'codegen_checkpoint_bytes_total')).toBeGreaterThan(0);
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(text).toContain('nodejs_eventloop_lag_seconds');
  });

  it("sums the workers' sandbox kills from their heartbeats", async () => {
    const text = await until(async () => (await metricsText()).text(), (t) => (sample(t, 'codegen_sandbox_kills_total', { reason: 'timeout' }) ?? 0) >= 1, 15_000, 250, 'the timeout kill in a heartbeat');
    expect(sample(text, 'codegen_sandbox_kills_total', { reason: 'timeout' })).toBe(1);
    expect(sample(text, 'codegen_sandbox_kills_total', { reason: 'limit' })).toBe(0);
  });

  it('answers 401 without the credential, 401 with a wrong one, 403 for a foreign Host or Origin', async () => {
    expect((await metricsText({})).status).toBe(401);
    expect((await metricsText({ Authorization: 'Bearer nope' })).status).toBe(401);
    const foreign = await new Promise<number>((resolve, reject) => {
      // fetch will not send a Host of our choosing: a raw request does.
      import('node:http').then(({ request }) =>
        request({ host: '127.0.0.1', port: sys.httpPort, path: '/metrics', headers: { Host: 'evil.example', Authorization: `Bearer ${sys.clientToken}` } }, (r) => (r.resume(), resolve(r.statusCode ?? 0)))
          .on('error', reject)
          .end(),
      );
    });
    expect(foreign).toBe(403);
    expect((await metricsText({ Authorization: `Bearer ${sys.clientToken}`, Origin: 'http://evil.example' })).status).toBe(403);
  });
});

describe('codegen-mcp health --url (compose healthcheck)', () => {
  it('exits 0 on /healthz and /readyz with a worker online, 1 when nothing answers', () => {
    const cli = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
    for (const probe of ['healthz', 'readyz']) {
      const r = spawnSync(process.execPath, [cli, 'health', '--url', `http://127.0.0.1:${sys.httpPort}/${probe}`], { encoding: 'utf8', timeout: 10_000 });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('200');
    }
    const down = spawnSync(process.execPath, [cli, 'health', '--url', 'http://127.0.0.1:1/healthz'], { encoding: 'utf8', timeout: 10_000 });
    expect(down.status).toBe(1);
    expect(down.stderr).toContain('unhealthy');
  });
});

describe('AUDIT_LOG', () => {
  const records = () => readFileSync(auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Wire);

  it('records sessions, tasks, checkpoints and worker registrations with who did them, never contents', async () => {
    const all = await until(async () => records(), (rs) => rs.filter((r) => r.event === 'task').length >= 4, 10_000, 100, 'the task records');
    const text = readFileSync(auditPath, 'utf8');
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(sys.clientToken);
    for (const r of all) expect(Date.parse(r.time)).toBeGreaterThan(0);
    const create = all.find((r) => r.event === 'session.create');
    expect(create).toMatchObject({ ok: true, sessionId, who: { tenant: 'default', credential: 'CLIENT_TOKEN' } });
    expect(create!.who.peer).toMatch(/127\.0\.0\.1/);
    const tasks = all.filter((r) => r.event === 'task' && r.sessionId === sessionId);
    expect(tasks.map((t) => `${t.tool}:${t.status}`)).toEqual(expect.arrayContaining(['fs_write:SUCCESS', 'run_python:SUCCESS', 'run_python:TIMEOUT']));
    for (const t of tasks.filter((x) => x.tool !== 'checkpoint')) {
      expect(t.who).toMatchObject({ tenant: 'default', credential: 'CLIENT_TOKEN' });
      expect(t.durationMs).toBeGreaterThanOrEqual(0);
    }
    expect(all.find((r) => r.event === 'session.checkpoint')).toMatchObject({ ok: true, sessionId, who: { tenant: 'default' } });
    expect(all.find((r) => r.event === 'worker.register')).toMatchObject({ ok: true, who: { workerId: 'worker-1', credential: 'WORKER_TOKEN' } });
  });

  it('records a refused call with its error code', async () => {
    await expect(unary(sys.clients.sessions, 'DestroySession', { session_id: GONE })).rejects.toThrow();
    const refused = await until(async () => records(), (rs) => rs.some((r) => r.event === 'session.destroy' && r.sessionId === GONE), 5_000, 100, 'the refused destroy');
    expect(refused.find((r) => r.event === 'session.destroy' && r.sessionId === GONE)).toMatchObject({ ok: false, error: 'SESSION_NOT_FOUND' });
  });
});
