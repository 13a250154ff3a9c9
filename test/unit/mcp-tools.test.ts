import { afterEach, describe, expect, it } from 'vitest';
import { connectInProcess, type InProcessMcp } from '../helpers/fake-coordinator-port.js';

const apiTools = [
  'session_create', 'session_list', 'session_status', 'session_destroy', 'session_checkpoint', 'session_restore',
  'checkpoint_list', 'checkpoint_delete',
  'echo', 'fs_read', 'fs_write', 'fs_list', 'run_python', 'python_exec', 'python_reset', 'pkg_install', 'artifact_get',
  'task_status', 'task_result', 'task_cancel',
];

let mcp: InProcessMcp | undefined;
afterEach(async () => {
  await mcp?.close();
  mcp = undefined;
});

describe('the MCP tool registry', () => {
  it('lists exactly the tools of api.md, in snake_case, each with input and output schemas', async () => {
    mcp = await connectInProcess();
    const { tools } = await mcp.client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([...apiTools].sort());
    for (const t of tools) {
      expect(t.inputSchema.type).toBe('object');
      expect(t.outputSchema?.type).toBe('object');
      expect(t.description?.length).toBeGreaterThan(10);
      expect(t.annotations).toBeDefined();
    }
  });

  it('describes every session tool with an optional session_id', async () => {
    mcp = await connectInProcess();
    const { tools } = await mcp.client.listTools();
    for (const name of ['session_status', 'echo', 'fs_read', 'fs_write', 'fs_list', 'run_python', 'pkg_install', 'artifact_get']) {
      const t = tools.find((x) => x.name === name)!;
      expect(Object.keys(t.inputSchema.properties ?? {})).toContain('session_id');
      expect(t.inputSchema.required ?? []).not.toContain('session_id');
    }
  });

  it('gives annotations that tell the truth', async () => {
    mcp = await connectInProcess(undefined, { packageIndexReachable: false });
    const { tools } = await mcp.client.listTools();
    const a = (name: string) => tools.find((t) => t.name === name)!.annotations!;
    for (const name of ['fs_read', 'fs_list', 'session_list', 'session_status', 'task_status', 'task_result', 'artifact_get']) {
      expect(a(name).readOnlyHint, name).toBe(true);
    }
    for (const name of ['session_destroy', 'fs_write', 'run_python', 'task_cancel']) {
      expect(a(name).readOnlyHint, name).toBe(false);
      expect(a(name).destructiveHint, name).toBe(true);
    }
    expect(a('session_create').destructiveHint).toBe(false);
    expect(a('fs_write').idempotentHint).toBe(true);
    expect(a('run_python').idempotentHint).toBe(false);
    for (const t of tools) expect(t.annotations!.openWorldHint, t.name).toBe(false);
  });

  it('marks pkg_install open-world when a package index is reachable', async () => {
    mcp = await connectInProcess(undefined, { packageIndexReachable: true });
    const { tools } = await mcp.client.listTools();
    expect(tools.find((t) => t.name === 'pkg_install')!.annotations!.openWorldHint).toBe(true);
  });

  it('registers the dotted legacy names only when asked', async () => {
    mcp = await connectInProcess(undefined, { legacyToolNames: true });
    const names = (await mcp.client.listTools()).tools.map((t) => t.name);
    for (const n of ['fs.read', 'fs.write', 'fs.list', 'run.python', 'pkg.install', 'session.create', 'session.destroy', 'artifact.get', 'task.result']) {
      expect(names).toContain(n);
    }
    expect(names).toContain('fs_read');
    const res = await mcp.client.callTool({ name: 'run.python', arguments: { code: 'print legacy' } });
    expect(res.isError).toBeFalsy();
    expect((res.structuredContent as { stdout: string }).stdout).toBe('legacy\n');
  });

  it('answers structuredContent and the same JSON as text', async () => {
    mcp = await connectInProcess();
    const res = await mcp.client.callTool({ name: 'echo', arguments: { message: 'hi' } });
    expect(res.isError).toBeFalsy();
    const sc = res.structuredContent as Record<string, unknown>;
    expect(sc).toMatchObject({ message: 'hi', status: 'succeeded', done: true });
    expect(sc['task_id']).toMatch(/^task-/);
    const content = res.content as Array<{ type: string; text: string }>;
    expect(JSON.parse(content[0]!.text)).toEqual(sc);
  });

  it('writes, runs, reads back and lists files', async () => {
    mcp = await connectInProcess();
    const c = mcp.client;
    const w = await c.callTool({ name: 'fs_write', arguments: { path: 'hello.py', contents: 'print hello\nwrite out.txt done' } });
    expect(w.structuredContent).toMatchObject({ path: 'hello.py', bytes_written: 30 });
    const r = await c.callTool({ name: 'run_python', arguments: { file: 'hello.py' } });
    expect(r.structuredContent).toMatchObject({ stdout: 'hello\n', stderr: '', exit_code: 0, timed_out: false });
    const f = await c.callTool({ name: 'fs_read', arguments: { path: 'out.txt' } });
    expect(f.structuredContent).toMatchObject({ path: 'out.txt', contents: 'done', encoding: 'utf-8', size_bytes: 4 });
    const l = await c.callTool({ name: 'fs_list', arguments: { pattern: '*.py' } });
    expect(l.structuredContent).toMatchObject({ total_count: 1, files: [{ path: 'hello.py' }] });
  });

  it('accepts pkg_install packages as an array or one space-separated string', async () => {
    mcp = await connectInProcess();
    const a = await mcp.client.callTool({ name: 'pkg_install', arguments: { packages: ['alpha==2.0', 'beta'] } });
    expect(a.structuredContent).toMatchObject({ installed: [{ name: 'alpha', version: '2.0' }, { name: 'beta' }], failed: [], exit_code: 0 });
    const b = await mcp.client.callTool({ name: 'pkg_install', arguments: { packages: 'gamma  delta==3' } });
    const call = mcp.port.callsOf('submitTask').at(-1)!.args[0] as { call: { input: { packages: string[] } } };
    expect(call.call.input.packages).toEqual(['gamma', 'delta==3']);
    expect(b.isError).toBeFalsy();
  });

  it('passes run_python env and args to the task', async () => {
    mcp = await connectInProcess();
    await mcp.client.callTool({ name: 'run_python', arguments: { code: 'print x', env: { A: '1' }, args: ['--x'], timeout_seconds: 7 } });
    const input = (mcp.port.callsOf('submitTask').at(-1)!.args[0] as { call: { input: Record<string, unknown> } }).call.input;
    expect(input).toMatchObject({ code: 'print x', env_vars: { A: '1' }, args: ['--x'], timeout_seconds: 7 });
  });
});
