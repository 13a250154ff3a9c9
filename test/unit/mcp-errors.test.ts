import { afterEach, describe, expect, it } from 'vitest';
import { connectInProcess, FakeCoordinatorPort, type InProcessMcp } from '../helpers/fake-coordinator-port.js';
import { CodegenError } from '../../src/domain/errors.js';

let mcp: InProcessMcp | undefined;
afterEach(async () => {
  await mcp?.close();
  mcp = undefined;
});

const text = (r: { content: unknown }) => (r.content as Array<{ type: string; text?: string }>).map((c) => c.text ?? '').join('\n');
type R = { content: unknown; isError?: boolean; structuredContent?: Record<string, any> };
const call = async (name: string, args: Record<string, unknown>): Promise<R> => (await mcp!.client.callTool({ name, arguments: args })) as R;

describe('tool failures are isError results that say what to fix', () => {
  it('a Python exception keeps its structured result, with the traceback in stderr', async () => {
    mcp = await connectInProcess();
    const r = await call('run_python', { code: 'print before\nraise ZeroDivisionError: division by zero' });
    expect(r.isError).toBe(true);
    expect(r.structuredContent).toMatchObject({ exit_code: 1, stdout: 'before\n', status: 'failed', done: true });
    expect(r.structuredContent!['stderr']).toMatch(/ZeroDivisionError/);
    expect(text(r)).toMatch(/Traceback/);
    expect(text(r)).toMatch(/fix the code/);
  });

  it('a missing file names the problem and points to fs_list', async () => {
    mcp = await connectInProcess();
    const r = await call('fs_read', { path: 'nope.txt' });
    expect(r.isError).toBe(true);
    expect(r.structuredContent).toBeUndefined();
    expect(text(r)).toMatch(/NOT_FOUND: no such file: nope.txt/);
    expect(text(r)).toMatch(/fs_list/);
  });

  it('a path outside the workspace is refused', async () => {
    mcp = await connectInProcess();
    const r = await call('fs_write', { path: '../etc/passwd', contents: 'x' });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/PATH_VIOLATION/);
  });

  it('a failed install lists what failed', async () => {
    mcp = await connectInProcess();
    const r = await call('pkg_install', { packages: 'good missing-thing' });
    expect(r.isError).toBe(true);
    expect(r.structuredContent).toMatchObject({ failed: ['missing-thing'], exit_code: 1 });
    expect(text(r)).toMatch(/pip could not install the packages \(missing-thing\)/);
  });

  it('an unknown session says how to get one', async () => {
    mcp = await connectInProcess();
    const r = await call('echo', { message: 'x', session_id: 'sess-does-not-exist' });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/SESSION_NOT_FOUND/);
    expect(text(r)).toMatch(/session_create/);
    const s = await call('session_status', { session_id: 'sess-does-not-exist' });
    expect(s.isError).toBe(true);
  });

  it('an unknown task is an error, not a crash', async () => {
    mcp = await connectInProcess();
    for (const name of ['task_status', 'task_result', 'task_cancel']) {
      const r = await call(name, { task_id: 'task-nope' });
      expect(r.isError, name).toBe(true);
      expect(text(r)).toMatch(/TASK_NOT_FOUND/);
    }
  });

  it('bad arguments name the field', async () => {
    mcp = await connectInProcess();
    const both = await call('run_python', { code: 'print 1', file: 'a.py' });
    expect(both.isError).toBe(true);
    expect(text(both)).toMatch(/arguments.code \/ arguments.file: set exactly one/);
    const neither = await call('run_python', {});
    expect(text(neither)).toMatch(/set exactly one/);
    const typo = await call('fs_read', { path: 'a', sesion_id: 'x' });
    expect(typo.isError).toBe(true);
    expect(text(typo)).toMatch(/sesion_id/);
    const wrongType = await call('run_python', { code: 'print 1', timeout_seconds: 'soon' });
    expect(wrongType.isError).toBe(true);
    expect(text(wrongType)).toMatch(/timeout_seconds/);
    const option = await call('pkg_install', { packages: ['--index-url=http://evil'] });
    expect(text(option)).toMatch(/looks like a pip option/);
    const env = await call('run_python', { code: 'print 1', env: { 'BAD NAME': 'x' } });
    expect(text(env)).toMatch(/not a valid environment variable name/);
  });

  it('checkpoint tools with an unknown checkpoint say so, and DATA_LOSS says nothing was changed', async () => {
    const port = new FakeCoordinatorPort();
    mcp = await connectInProcess(port);
    for (const [name, args] of [['session_restore', { checkpoint_id: 'ckpt-none' }], ['checkpoint_delete', { checkpoint_id: 'ckpt-none' }]] as const) {
      const r = await call(name, args);
      expect(r.isError, name).toBe(true);
      expect(text(r)).toMatch(/NOT_FOUND: checkpoint_id: no checkpoint "ckpt-none"/);
    }
    port.restoreCheckpoint = async () => {
      throw new CodegenError('DATA_LOSS', 'checkpoint ckpt-1: file "a.txt": sha256 aa expected, the stored blob hashes to bb');
    };
    const r = await call('session_restore', { checkpoint_id: 'ckpt-1', create_new_session: true });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/DATA_LOSS: .*sha256 aa expected/);
    expect(text(r)).toMatch(/nothing was changed/);
  });

  it('checkpoints, lists, restores and deletes through the tools', async () => {
    const port = new FakeCoordinatorPort();
    mcp = await connectInProcess(port);
    await call('fs_write', { path: 'a.txt', contents: 'one' });
    const c = await call('session_checkpoint', { name: 'first' });
    expect(c.isError).toBeFalsy();
    const id = (c.structuredContent as { checkpoint_id: string }).checkpoint_id;
    const list = await call('checkpoint_list', {});
    expect((list.structuredContent as { count: number }).count).toBe(1);
    const restored = await call('session_restore', { checkpoint_id: id });
    expect(restored.structuredContent).toMatchObject({ restored_in_place: true, checkpoint: { checkpoint_id: id, name: 'first' } });
    const fresh = await call('session_restore', { checkpoint_id: id, create_new_session: true });
    expect(fresh.structuredContent).toMatchObject({ restored_in_place: false });
    const destroyed = await call('session_destroy', { save_checkpoint: true });
    expect((destroyed.structuredContent as { checkpoint_id: string }).checkpoint_id).toMatch(/^ckpt-/);
    const del = await call('checkpoint_delete', { checkpoint_id: id });
    expect(del.structuredContent).toEqual({ checkpoint_id: id, deleted: true });
  });

  it('no capacity says what to do', async () => {
    const port = new FakeCoordinatorPort();
    port.capacity = 0;
    mcp = await connectInProcess(port);
    const r = await call('echo', { message: 'x' });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/CAPACITY_EXHAUSTED/);
    expect(text(r)).toMatch(/session_destroy/);
  });

  it('a port that throws something unexpected still gives a result', async () => {
    const port = new FakeCoordinatorPort();
    port.runner = async () => {
      throw new TypeError('boom');
    };
    port.listSessions = () => {
      throw new Error('exploded');
    };
    mcp = await connectInProcess(port);
    const r = await call('echo', { message: 'x' });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/INTERNAL: boom/);
    const l = await call('session_list', {});
    expect(l.isError).toBe(true);
    expect(text(l)).toMatch(/INTERNAL: exploded/);
  });
});
