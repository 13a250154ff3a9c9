/**
 * make docker-test: the single-worker Compose stack, through the gRPC API.
 * Skips itself unless scripts/docker/run-compose-test.sh started the stack
 * (CODEGEN_DOCKER_E2E=1 and CODEGEN_DOCKER_GRPC_ADDR set).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWheel } from '../helpers/wheels.js';
import { unary } from '../../src/wire/client.js';
import { composeRestart, dockerEnv, GrpcDriver, probeImports, untilItWorks, type Session } from './docker-helpers.js';

describe.skipIf(!dockerEnv.enabled)('docker compose: coordinator + one worker', () => {
  let grpc: GrpcDriver;
  let session: Session;

  beforeAll(() => {
    grpc = new GrpcDriver(dockerEnv.grpcAddr);
    // The worker sees this folder as /wheels and pip installs only from it.
    buildWheel(dockerEnv.wheels, 'cgdemo_single', '1.2.3', 'single-from-wheel');
  });

  afterAll(async () => {
    if (session) await grpc.destroySession(session.session_id).catch(() => {});
    grpc?.close();
  });

  it('creates a session through gRPC, READY with its own Python 3.11 venv', async () => {
    session = await grpc.createSession({ test: 'docker-integration' });
    expect(session.session_id).toBeTruthy();
    expect(session.worker_id).toMatch(/^worker-1-/);
    expect(session.state).toBe('SESSION_STATE_READY');
    expect(session.workspace_path).toContain('/home/builder/workspaces/');

    const r = await grpc.runPython(
      session.session_id,
      'import json, os, sys\nprint(json.dumps({"venv": sys.prefix != sys.base_prefix, "prefix": sys.prefix, "version": list(sys.version_info[:2]), "cwd": os.getcwd()}))',
    );
    expect(r.exit_code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(info.venv).toBe(true);
    expect(info.prefix).toMatch(/\.venv$/);
    expect(info.version).toEqual([3, 11]);
  }, 240_000);

  it('installs a package from the local wheel folder and imports it', async () => {
    const install = await grpc.execute(session.session_id, { pkg_install: { packages: ['cgdemo_single'] } });
    expect(install.status, JSON.stringify(install.response)).toBe('STATUS_SUCCESS');
    const installed = (install.response?.installed ?? []) as Array<{ name: string; version: string }>;
    expect(installed.map((p) => [p.name.toLowerCase().replace(/-/g, '_'), p.version])).toContainEqual(['cgdemo_single', '1.2.3']);

    const r = await grpc.runPython(session.session_id, probeImports(['cgdemo_single']));
    expect(r.exit_code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ cgdemo_single: 'single-from-wheel' });

    // The persistent interpreter in the container's sandbox: state stays between calls.
    const first = await grpc.execute(session.session_id, { python_exec: { code: 'import cgdemo_single\nx = 41' } });
    expect(first.status, JSON.stringify(first.response)).toBe('STATUS_SUCCESS');
    const second = await grpc.execute(session.session_id, { python_exec: { code: 'x + 1' } });
    expect(second.response).toMatchObject({ result: '42', state_lost: false });
  }, 240_000);

  it('keeps the session, its files, packages and metadata across `docker compose restart worker-1`, then the coordinator', async () => {
    const id = session.session_id;
    await unary(grpc.clients.sessions, 'UpdateSessionMetadata', { session_id: id, metadata: { kept: 'yes' } });
    const write = await grpc.execute(id, { fs_write: { path: 'notes/kept.txt', contents: 'survives restarts', create_dirs: true } });
    expect(write.status).toBe('STATUS_SUCCESS');
    const check = async () => {
      const read = await grpc.execute(id, { fs_read: { path: 'notes/kept.txt' } });
      expect(read.response?.contents).toBe('survives restarts');
      const r = await grpc.runPython(id, probeImports(['cgdemo_single']));
      expect(JSON.parse(r.stdout.trim())).toEqual({ cgdemo_single: 'single-from-wheel' });
      const md = await unary(grpc.clients.sessions, 'GetSessionMetadata', { session_id: id });
      expect(md.metadata).toMatchObject({ test: 'docker-integration', kept: 'yes' });
    };

    composeRestart('worker-1');
    // Usable again once the restarted worker has adopted it (same container, same volume).
    await untilItWorks(() => grpc.runPython(id, 'print("back")').then((r) => expect(r.stdout).toBe('back\n')));
    await check();
    // The interpreter's memory did not survive, and the first python_exec says so.
    const exec = await grpc.execute(id, { python_exec: { code: '"x" in globals()' } });
    expect(exec.response).toMatchObject({ result: 'False', state_lost: true });
    expect(exec.response.state_lost_reason).toContain('worker restarted');
    const afterWorker = await unary(grpc.clients.sessions, 'GetSessionStatus', { session_id: id });
    expect(Number(afterWorker.info.restarted_at_ms)).toBeGreaterThan(0);
    expect(afterWorker.info.survival_note).toMatch(/files/);

    composeRestart('coordinator');
    // The new coordinator rebuilds its view from the worker's registration.
    await untilItWorks(() => grpc.runPython(id, 'print("again")').then((r) => expect(r.stdout).toBe('again\n')));
    await check();
    const listed = await unary(grpc.clients.sessions, 'ListSessions', {});
    expect(listed.sessions.map((x: { session_id: string }) => x.session_id)).toContain(id);
  }, 400_000);
});
