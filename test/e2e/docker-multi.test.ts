/**
 * make docker-test-multi: the two-worker Compose stack, through gRPC and
 * through MCP over Streamable HTTP. Skips itself unless
 * scripts/docker/run-compose-test.sh started the stack.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWheel } from '../helpers/wheels.js';
import { countBy, dockerEnv, GrpcDriver, McpDriver, probeImports, type Session } from './docker-helpers.js';
import { unary } from '../../src/wire/client.js';

const enabled = dockerEnv.enabled && dockerEnv.mode === 'multi' && Boolean(dockerEnv.mcpUrl);

describe.skipIf(!enabled)('docker compose: coordinator + two workers', () => {
  let grpc: GrpcDriver;
  let sessions: Session[] = [];
  const mcpSessions: string[] = [];
  let mcp: McpDriver | undefined;

  beforeAll(() => {
    grpc = new GrpcDriver(dockerEnv.grpcAddr);
    buildWheel(dockerEnv.wheels, 'cgdemo_alpha', '1.0.0', 'alpha-1');
    buildWheel(dockerEnv.wheels, 'cgdemo_alpha', '2.0.0', 'alpha-2');
    buildWheel(dockerEnv.wheels, 'cgdemo_beta', '1.0.0', 'beta-1');
    buildWheel(dockerEnv.wheels, 'cgdemo_gamma', '1.0.0', 'gamma-1');
  });

  afterAll(async () => {
    for (const id of mcpSessions) await mcp?.call('session_destroy', { session_id: id }).catch(() => {});
    await mcp?.close().catch(() => {});
    await Promise.all(sessions.map((s) => grpc.destroySession(s.session_id).catch(() => {})));
    grpc?.close();
  });

  it('places six sessions created at once three and three on the two workers', async () => {
    sessions = await Promise.all(Array.from({ length: 6 }, (_, i) => grpc.createSession({ test: 'docker-multi', n: String(i) })));
    for (const s of sessions) expect(s.state).toBe('SESSION_STATE_READY');
    expect(new Set(sessions.map((s) => s.session_id)).size).toBe(6);
    const perWorker = countBy(sessions, (s) => s.worker_id);
    const workers = Object.keys(perWorker).sort();
    expect(workers).toHaveLength(2);
    expect(workers[0]).toMatch(/^worker-1-/);
    expect(workers[1]).toMatch(/^worker-2-/);
    expect(Object.values(perWorker)).toEqual([3, 3]);
  }, 300_000);

  it('runs file operations of all six sessions concurrently, each seeing only its own files', async () => {
    const files = 5;
    await Promise.all(
      sessions.flatMap((s) =>
        Array.from({ length: files }, (_, i) =>
          grpc.execute(s.session_id, { fs_write: { path: `data/file-${i}.txt`, contents: `${s.session_id}:${i}\n`, create_dirs: true } }).then((r) => {
            expect(r.status, JSON.stringify(r.response)).toBe('STATUS_SUCCESS');
          }),
        ),
      ),
    );
    await Promise.all(
      sessions.map(async (s) => {
        const list = await grpc.execute(s.session_id, { fs_list: { path: 'data' } });
        expect(list.status).toBe('STATUS_SUCCESS');
        const names = (list.response?.files ?? []).map((f: { name: string }) => f.name).sort();
        expect(names).toEqual(Array.from({ length: files }, (_, i) => `file-${i}.txt`));

        const read = await grpc.execute(s.session_id, { fs_read: { path: 'data/file-3.txt' } });
        expect(read.response?.contents).toBe(`${s.session_id}:3\n`);

        const r = await grpc.runPython(
          s.session_id,
          'import glob\nprint("|".join(open(p).read().strip() for p in sorted(glob.glob("data/*.txt"))))',
        );
        expect(r.exit_code, r.stderr).toBe(0);
        expect(r.stdout.trim()).toBe(Array.from({ length: files }, (_, i) => `${s.session_id}:${i}`).join('|'));
      }),
    );
  }, 300_000);

  it('keeps installed packages apart between sessions (gRPC), on one worker and across workers', async () => {
    const w1 = sessions.filter((s) => s.worker_id.startsWith('worker-1-'));
    const w2 = sessions.filter((s) => s.worker_id.startsWith('worker-2-'));
    const [a, b, c] = [w1[0]!, w1[1]!, w2[0]!];

    const installs = await Promise.all([
      grpc.execute(a.session_id, { pkg_install: { packages: ['cgdemo_alpha==1.0.0'] } }),
      grpc.execute(b.session_id, { pkg_install: { packages: ['cgdemo_beta'] } }),
      grpc.execute(c.session_id, { pkg_install: { packages: ['cgdemo_alpha==2.0.0'] } }),
    ]);
    for (const r of installs) expect(r.status, JSON.stringify(r.response)).toBe('STATUS_SUCCESS');

    const probe = probeImports(['cgdemo_alpha', 'cgdemo_beta']);
    const seen = await Promise.all([a, b, c, w2[1]!].map((s) => grpc.runPython(s.session_id, probe)));
    for (const r of seen) expect(r.exit_code, r.stderr).toBe(0);
    expect(JSON.parse(seen[0]!.stdout)).toEqual({ cgdemo_alpha: 'alpha-1', cgdemo_beta: null });
    expect(JSON.parse(seen[1]!.stdout)).toEqual({ cgdemo_alpha: null, cgdemo_beta: 'beta-1' });
    expect(JSON.parse(seen[2]!.stdout)).toEqual({ cgdemo_alpha: 'alpha-2', cgdemo_beta: null });
    expect(JSON.parse(seen[3]!.stdout)).toEqual({ cgdemo_alpha: null, cgdemo_beta: null });
  }, 300_000);

  it('checkpoints a session on worker-1 and restores it on worker-2, files and package included', async () => {
    const a = sessions.filter((s) => s.worker_id.startsWith('worker-1-'))[0]!;
    const target = sessions.find((s) => s.worker_id.startsWith('worker-2-'))!.worker_id;
    const c: any = await unary(grpc.clients.sessions, 'CheckpointSession', { session_id: a.session_id, checkpoint_name: 'compose' }, { deadlineMs: 180_000 });
    expect(c.metadata.installed_packages).toContain('cgdemo_alpha==1.0.0');
    const r: any = await unary(grpc.clients.sessions, 'RestoreSession', { checkpoint_id: c.checkpoint_id, create_new_session: true, worker_id: target }, { deadlineMs: 180_000 });
    sessions.push({ session_id: r.session_id, worker_id: r.worker_id, workspace_path: '', state: r.state });
    expect(r.worker_id).toBe(target);
    const seen = await grpc.runPython(r.session_id, probeImports(['cgdemo_alpha']));
    expect(seen.exit_code, seen.stderr).toBe(0);
    expect(JSON.parse(seen.stdout)).toEqual({ cgdemo_alpha: 'alpha-1' });
    const file = await grpc.execute(r.session_id, { fs_read: { path: 'data/file-0.txt' } });
    expect(file.response.contents).toBe(`${a.session_id}:0\n`);
  }, 300_000);

  it('keeps installed packages apart between sessions over MCP (Streamable HTTP)', async () => {
    mcp = await McpDriver.connect(dockerEnv.mcpUrl);
    const tools = await mcp.client.listTools();
    expect(tools.tools.map((t) => t.name)).toEqual(expect.arrayContaining(['session_create', 'pkg_install', 'run_python', 'fs_write', 'fs_read']));

    const m1 = await mcp.call('session_create', { metadata: { test: 'docker-multi-mcp' } });
    const m2 = await mcp.call('session_create', { metadata: { test: 'docker-multi-mcp' } });
    mcpSessions.push(m1.session_id, m2.session_id);
    expect(m1.session_id).not.toBe(m2.session_id);
    for (const m of [m1, m2]) expect(m.worker_id).toMatch(/^worker-[12]-/);

    const installed = await mcp.call('pkg_install', { session_id: m1.session_id, packages: ['cgdemo_gamma'] });
    expect(JSON.stringify(installed)).toContain('cgdemo');

    await Promise.all([
      mcp.call('fs_write', { session_id: m1.session_id, path: 'who.txt', contents: 'm1' }),
      mcp.call('fs_write', { session_id: m2.session_id, path: 'who.txt', contents: 'm2' }),
    ]);
    expect((await mcp.call('fs_read', { session_id: m1.session_id, path: 'who.txt' })).contents).toBe('m1');
    expect((await mcp.call('fs_read', { session_id: m2.session_id, path: 'who.txt' })).contents).toBe('m2');

    const probe = probeImports(['cgdemo_gamma']);
    const r1 = await mcp.call('run_python', { session_id: m1.session_id, code: probe });
    const r2 = await mcp.call('run_python', { session_id: m2.session_id, code: probe });
    expect(JSON.parse(r1.stdout)).toEqual({ cgdemo_gamma: 'gamma-1' });
    expect(JSON.parse(r2.stdout)).toEqual({ cgdemo_gamma: null });

    // The gRPC sessions never saw the MCP session's package.
    const g = await grpc.runPython(sessions[0]!.session_id, probe);
    expect(JSON.parse(g.stdout)).toEqual({ cgdemo_gamma: null });
  }, 300_000);
});
