import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkerRegistry } from '../../src/coordinator/worker-registry.js';
import { CodegenError } from '../../src/domain/errors.js';
import type { TaskUpdate } from '../../src/domain/tasks.js';
import { openAccess } from '../../src/grpc/client-access.js';
import { RemoteCoordinatorPort } from '../../src/grpc/remote-port.js';
import { startGrpcServer, stopGrpcServer } from '../../src/grpc/server.js';
import { silentLogger } from '../../src/log/logger.js';
import { remoteError } from '../../src/wire/status.js';
import { connectInProcess, FakeCoordinatorPort } from '../helpers/fake-coordinator-port.js';

let fake: FakeCoordinatorPort;
let server: grpc.Server;
let remote: RemoteCoordinatorPort;
let address: string;

beforeAll(async () => {
  fake = new FakeCoordinatorPort();
  const started = await startGrpcServer({ host: '127.0.0.1', port: 0, access: openAccess(fake), registry: {} as WorkerRegistry, workerToken: 'unused', tls: { cert: '', key: '', clientCa: '' }, logger: silentLogger() });
  server = started.server;
  address = `127.0.0.1:${started.port}`;
  remote = new RemoteCoordinatorPort(address);
});
afterAll(async () => {
  remote.close();
  await stopGrpcServer(server, 1000);
});

const code = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => (e instanceof CodegenError ? e.code : `not a CodegenError: ${String(e)}`));

describe('the gRPC remote port', () => {
  it('creates, shows, lists and destroys sessions with their metadata', async () => {
    const v = await remote.createSession({ metadata: { a: '1' }, config: { env_vars: { X: 'y' }, allow_network: false } });
    expect(v).toMatchObject({ state: 'READY', workerId: 'worker-1', metadata: { a: '1' } });
    expect(await remote.getSession(v.sessionId)).toMatchObject({ sessionId: v.sessionId, metadata: { a: '1' }, state: 'READY' });
    expect((await remote.listSessions()).map((s) => s.sessionId)).toContain(v.sessionId);
    expect(await remote.putMetadata(v.sessionId, { b: '2' }, true)).toEqual({ a: '1', b: '2' });
    expect(await remote.putMetadata(v.sessionId, { c: '3' }, false)).toEqual({ c: '3' });
    expect(await remote.destroySession(v.sessionId)).toMatchObject({ destroyed: true });
    expect(await code(remote.getSession(v.sessionId))).toBe('SESSION_NOT_FOUND');
    expect(await code(remote.destroySession(v.sessionId))).toBe('SESSION_NOT_FOUND');
  });

  it('streams a task: logs while it runs, then its outcome with the typed reply', async () => {
    const s = await remote.createSession({});
    const updates: TaskUpdate[] = [];
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    const handle = await remote.submitTask({ sessionId: s.sessionId, call: { tool: 'run_python', input: { code: 'print a\neprint b', args: [], env_vars: {}, timeout_seconds: 0 } } }, (u) => {
      updates.push(u);
      if (u.type === 'outcome') resolveDone();
    });
    await done;
    expect(handle.taskId).toMatch(/^task-/);
    expect(updates.filter((u) => u.type === 'log').map((u) => (u.type === 'log' ? [u.log.stream, u.log.line] : []))).toEqual([['stdout', 'a'], ['stderr', 'b']]);
    const last = updates.at(-1)!;
    expect(last.type === 'outcome' && last.outcome.type === 'result' && last.outcome.reply).toMatchObject({ tool: 'run_python', output: { stdout: 'a\n', stderr: 'b\n', exit_code: 0 } });
  });

  it('maps refusals to the codes the coordinator meant', async () => {
    const noop = () => {};
    expect(await code(remote.submitTask({ sessionId: 'sess-missing', call: { tool: 'echo', input: { message: 'x' } } }, noop))).toBe('SESSION_NOT_FOUND');
    expect(await code(remote.getTask('task-missing'))).toBe('TASK_NOT_FOUND');
    expect(await code(remote.cancelTask('task-missing', 'r'))).toBe('TASK_NOT_FOUND');
    fake.capacity = 0;
    try {
      expect(await code(remote.createSession({}))).toBe('CAPACITY_EXHAUSTED');
    } finally {
      fake.capacity = 100;
    }
  });

  it('lets a detached task run on: waitTask follows it on the coordinator, getTask asks the coordinator', async () => {
    const s = await remote.createSession({});
    const handle = await remote.submitTask({ sessionId: s.sessionId, call: { tool: 'run_python', input: { code: 'sleep 700\nprint late', args: [], env_vars: {}, timeout_seconds: 0 } } }, () => {});
    handle.detach();
    expect((await remote.getTask(handle.taskId)).state).toMatch(/queued|running/);
    const outcome = await remote.waitTask(handle.taskId, 5000);
    expect(outcome?.type === 'result' && outcome.reply).toMatchObject({ output: { stdout: 'late\n' } });
    expect(fake.callsOf('cancelTask').map((c) => c.args[0])).not.toContain(handle.taskId);
    const view = await remote.getTask(handle.taskId);
    expect(view).toMatchObject({ state: 'succeeded', tool: 'run_python', sessionId: s.sessionId });
    expect(view.outcome?.type === 'result' && view.outcome.reply).toMatchObject({ output: { stdout: 'late\n' } });
  });

  it('follows tasks it did not start (WatchTask), and cancels them', async () => {
    const s = await fake.createSession({});
    const h = await fake.submitTask({ sessionId: s.sessionId, call: { tool: 'run_python', input: { code: 'sleep 5000', args: [], env_vars: {}, timeout_seconds: 0 } } }, () => {});
    expect(await remote.waitTask(h.taskId, 100)).toBeUndefined();
    expect(await remote.cancelTask(h.taskId, 'stop')).toMatchObject({ cancelled: true });
    const outcome = await remote.waitTask(h.taskId, 2000);
    expect(outcome).toMatchObject({ type: 'result', status: 'CANCELLED' });
  });

  it('serves the MCP tools over it', async () => {
    const mcp = await connectInProcess(fake, { coordinator: remote, waitLimitMs: 100 });
    try {
      const r = await mcp.client.callTool({ name: 'run_python', arguments: { code: 'print remote' } });
      expect(r.structuredContent).toMatchObject({ stdout: 'remote\n', exit_code: 0 });
      const pending = (await mcp.client.callTool({ name: 'run_python', arguments: { code: 'sleep 1000\nprint slow' } })).structuredContent as Record<string, any>;
      expect(pending).toMatchObject({ done: false });
      let res = (await mcp.client.callTool({ name: 'task_result', arguments: { task_id: pending['task_id'] } })).structuredContent as Record<string, any>;
      for (let i = 0; i < 20 && !res['done']; i++) res = (await mcp.client.callTool({ name: 'task_result', arguments: { task_id: pending['task_id'] } })).structuredContent as Record<string, any>;
      expect(res).toMatchObject({ done: true, stdout: 'slow\n' });
      const list = (await mcp.client.callTool({ name: 'session_list', arguments: {} })).structuredContent as { sessions: Array<{ is_default: boolean }> };
      expect(list.sessions.filter((x) => x.is_default)).toHaveLength(1);
    } finally {
      await mcp.close();
    }
  });
});

describe('remoteError', () => {
  const se = (c: grpc.status, details: string, sent?: string): grpc.ServiceError => {
    const e = new Error(`${c} ${details}`) as grpc.ServiceError;
    e.code = c;
    e.details = details;
    e.metadata = new grpc.Metadata();
    if (sent) e.metadata.set('codegen-error-code', sent);
    return e;
  };
  it('trusts the code the coordinator sent, then the status', () => {
    expect(remoteError(se(grpc.status.INVALID_ARGUMENT, 'path escapes', 'PATH_VIOLATION'), 'a').code).toBe('PATH_VIOLATION');
    // Session and task are told apart by the code the coordinator sends (toServiceError), never by the message.
    expect(remoteError(se(grpc.status.NOT_FOUND, 'session x not found', 'SESSION_NOT_FOUND'), 'a').code).toBe('SESSION_NOT_FOUND');
    expect(remoteError(se(grpc.status.NOT_FOUND, 'task x not found', 'TASK_NOT_FOUND'), 'a').code).toBe('TASK_NOT_FOUND');
    expect(remoteError(se(grpc.status.NOT_FOUND, 'session x not found'), 'a').code).toBe('NOT_FOUND');
    expect(remoteError(se(grpc.status.RESOURCE_EXHAUSTED, 'full'), 'a').code).toBe('CAPACITY_EXHAUSTED');
    expect(remoteError(se(grpc.status.FAILED_PRECONDITION, 'busy'), 'a').code).toBe('FAILED_PRECONDITION');
    expect(remoteError(se(grpc.status.UNIMPLEMENTED, 'later'), 'a').code).toBe('UNIMPLEMENTED');
    const down = remoteError(se(grpc.status.UNAVAILABLE, 'connection refused'), 'the coordinator at host:1');
    expect(down.code).toBe('UNAVAILABLE');
    expect(down.retriable).toBe(true);
    expect(down.message).toMatch(/cannot reach the coordinator at host:1/);
    const slow = remoteError(se(grpc.status.DEADLINE_EXCEEDED, 'deadline exceeded'), 'the coordinator at host:1');
    expect(slow.code).toBe('UNAVAILABLE');
    expect(slow.retriable).toBe(true);
    expect(slow.message).toMatch(/the coordinator at host:1 did not answer in time/);
    expect(remoteError(se(grpc.status.UNAVAILABLE, 'worker w1 is not connected', 'WORKER_LOST'), 'a').code).toBe('WORKER_LOST');
  });
});
