import { afterEach, describe, expect, it } from 'vitest';
import { CallToolResultSchema, LoggingMessageNotificationSchema, type Progress } from '@modelcontextprotocol/sdk/types.js';
import { connectInProcess, FakeCoordinatorPort, type InProcessMcp } from '../helpers/fake-coordinator-port.js';

let mcp: InProcessMcp | undefined;
afterEach(async () => {
  await mcp?.close();
  mcp = undefined;
});

const sc = (r: unknown) => (r as { structuredContent: Record<string, any> }).structuredContent;
const waitFor = async (cond: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('long work', () => {
  it('sends progress notifications on every update and on a heartbeat when the client sent a token', async () => {
    mcp = await connectInProcess(undefined, { heartbeatMs: 50 });
    const seen: Progress[] = [];
    const res = await mcp.client.callTool(
      { name: 'run_python', arguments: { code: 'progress 10 loading\nsleep 260\nprogress 90 almost\nprint done' } },
      CallToolResultSchema,
      { onprogress: (p) => seen.push(p) },
    );
    expect(res.isError).toBeFalsy();
    expect(seen.length).toBeGreaterThanOrEqual(5);
    const values = seen.map((p) => p.progress);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    expect(new Set(values).size).toBe(values.length);
    expect(seen.some((p) => p.message?.includes('10%') && p.message.includes('loading'))).toBe(true);
    expect(seen.some((p) => p.message?.includes('90%'))).toBe(true);
  });

  it('sends stdout and stderr lines as log messages, honouring logging/setLevel', async () => {
    mcp = await connectInProcess();
    const logs: Array<{ level: string; data: any }> = [];
    mcp.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      logs.push(n.params as { level: string; data: unknown });
    });
    await mcp.client.callTool({ name: 'run_python', arguments: { code: 'print out1\neprint err1\nprint out2' } });
    await waitFor(() => logs.length >= 3);
    expect(logs.map((l) => [l.level, l.data.stream, l.data.line])).toEqual([
      ['info', 'stdout', 'out1'],
      ['warning', 'stderr', 'err1'],
      ['info', 'stdout', 'out2'],
    ]);
    expect(logs[0]!.data.task_id).toMatch(/^task-/);

    logs.length = 0;
    await mcp.client.setLoggingLevel('warning');
    await mcp.client.callTool({ name: 'run_python', arguments: { code: 'print quiet\neprint loud' } });
    await new Promise((r) => setTimeout(r, 50));
    expect(logs.map((l) => l.data.line)).toEqual(['loud']);
  });

  it('answers {task_id, status} past the wait limit, to be polled with task_status and task_result', async () => {
    mcp = await connectInProcess(undefined, { waitLimitMs: 100 });
    const res = await mcp.client.callTool({ name: 'run_python', arguments: { code: 'sleep 400\nprint finished' } });
    expect(res.isError).toBeFalsy();
    const pending = sc(res);
    expect(pending).toMatchObject({ status: 'running', done: false });
    expect(pending['message']).toMatch(/task_result/);
    expect(pending['stdout']).toBeUndefined();

    const status = sc(await mcp.client.callTool({ name: 'task_status', arguments: { task_id: pending['task_id'] } }));
    expect(status).toMatchObject({ task_id: pending['task_id'], tool: 'run_python', status: 'running', done: false });

    const still = sc(await mcp.client.callTool({ name: 'task_result', arguments: { task_id: pending['task_id'], wait_seconds: 0 } }));
    expect(still).toMatchObject({ done: false, status: 'running' });

    let result = sc(await mcp.client.callTool({ name: 'task_result', arguments: { task_id: pending['task_id'] } }));
    for (let i = 0; i < 20 && !result['done']; i++) {
      result = sc(await mcp.client.callTool({ name: 'task_result', arguments: { task_id: pending['task_id'] } }));
    }
    expect(result).toMatchObject({ done: true, status: 'succeeded', tool: 'run_python', stdout: 'finished\n', exit_code: 0 });
    // The same shape as the direct call's: its keys, plus task_result's `tool`.
    const direct = sc(await mcp.client.callTool({ name: 'run_python', arguments: { code: 'print finished' } }));
    expect(Object.keys(result).sort()).toEqual([...Object.keys(direct), 'tool'].sort());
  });

  it('cancels the task when the client cancels the request', async () => {
    const port = new FakeCoordinatorPort();
    mcp = await connectInProcess(port);
    const ac = new AbortController();
    const call = mcp.client.callTool({ name: 'run_python', arguments: { code: 'sleep 5000' } }, CallToolResultSchema, { signal: ac.signal });
    await waitFor(() => port.liveTasks().length === 1);
    const taskId = port.liveTasks()[0]!;
    await waitFor(() => port.tasks.get(taskId)!.state === 'running');
    ac.abort('user pressed stop');
    await expect(call).rejects.toThrow();
    await waitFor(() => port.liveTasks().length === 0);
    expect(port.tasks.get(taskId)!.state).toBe('cancelled');
    expect(port.callsOf('cancelTask').map((c) => c.args[0])).toContain(taskId);
  });

  it('cancels a running task with task_cancel', async () => {
    const port = new FakeCoordinatorPort();
    mcp = await connectInProcess(port, { waitLimitMs: 50 });
    const pending = sc(await mcp.client.callTool({ name: 'run_python', arguments: { code: 'sleep 5000' } }));
    const c = sc(await mcp.client.callTool({ name: 'task_cancel', arguments: { task_id: pending['task_id'] } }));
    expect(c).toMatchObject({ task_id: pending['task_id'], cancelled: true, status: 'cancelled' });
    expect(port.liveTasks()).toEqual([]);
    const r = await mcp.client.callTool({ name: 'task_result', arguments: { task_id: pending['task_id'] } });
    expect(r.isError).toBe(true);
    expect(sc(r)).toMatchObject({ status: 'cancelled', done: true });
    const again = sc(await mcp.client.callTool({ name: 'task_cancel', arguments: { task_id: pending['task_id'] } }));
    expect(again).toMatchObject({ cancelled: false, status: 'cancelled' });
  });

  it('reports a run that hit its timeout as an error result saying how to fix it', async () => {
    mcp = await connectInProcess();
    const r = await mcp.client.callTool({ name: 'run_python', arguments: { code: 'sleep 3000', timeout_seconds: 1 } });
    expect(r.isError).toBe(true);
    expect(sc(r)).toMatchObject({ status: 'timed_out', timed_out: true });
    expect(JSON.stringify(r.content)).toMatch(/timeout_seconds/);
  });

  it('runs the calls of one session in order', async () => {
    const port = new FakeCoordinatorPort();
    mcp = await connectInProcess(port);
    const [a, b] = await Promise.all([
      mcp.client.callTool({ name: 'run_python', arguments: { code: 'sleep 100\nwrite order.txt first' } }),
      mcp.client.callTool({ name: 'run_python', arguments: { code: 'write order.txt second' } }),
    ]);
    expect(a.isError).toBeFalsy();
    expect(b.isError).toBeFalsy();
    const read = sc(await mcp.client.callTool({ name: 'fs_read', arguments: { path: 'order.txt' } }));
    expect(read['contents']).toBe('second');
  });
});
