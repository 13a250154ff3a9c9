import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { detectIsolation, setIsolation, type Isolation } from '../../src/sandbox/launch.js';
import type { RunPythonOutput } from '../../src/domain/tools.js';
import type { ToolExecution } from '../../src/worker/tools/types.js';
import { eventually, isAlive, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { fixtureScript, makeBase, python, type TestBase, type TestSession } from '../fixtures/sessions.js';

const hasBwrap = (await detectIsolation('auto')) === 'bwrap';
if (!hasBwrap) console.warn('bwrap does not work here (apt-get install bubblewrap): bwrap tests are skipped');
const isolations: Isolation[] = hasBwrap ? ['bwrap', 'process'] : ['process'];
/** Every case runs on the warm path (a fork of the session's warm interpreter, the default) and on the cold path (WARM_PYTHON=false). */
const paths = ['warm', 'cold'] as const;
const cases = isolations.flatMap((iso) => paths.map((mode) => [iso, mode] as const));

const out = (e: ToolExecution): RunPythonOutput => {
  if (e.reply.tool !== 'run_python') throw new Error(`not a run_python reply: ${e.reply.tool}`);
  return e.reply.output;
};

let tb: TestBase;
beforeAll(() => {
  tb = makeBase(2);
});
afterAll(async () => tb.cleanup());

describe.each(cases)('run_python (%s isolation, %s)', (iso, mode) => {
  let s: TestSession;
  beforeAll(async () => {
    setIsolation(iso);
    s = await tb.session(undefined, {}, { warm: mode === 'warm' });
  });
  beforeEach(() => setIsolation(iso));

  it('keeps stdout and stderr apart and succeeds on exit 0', async () => {
    const e = await s.run(python('import sys\nprint("to out")\nprint("to err", file=sys.stderr)'));
    expect(e.status).toBe('SUCCESS');
    expect(out(e)).toMatchObject({ stdout: 'to out\n', stderr: 'to err\n', exit_code: 0, timed_out: false });
    expect(s.progress.some((p) => p.stage === 'running')).toBe(true);
  });

  it('streams each line while the program still runs', async () => {
    const logs: { stream: string; line: string; at: number }[] = [];
    const e = await s.run(python(fixtureScript('streams.py')), {
      onLog: (l) => logs.push({ stream: l.stream, line: l.line, at: Date.now() }),
    });
    const ended = Date.now();
    expect(e.status).toBe('SUCCESS');
    expect(logs.map((l) => `${l.stream}:${l.line}`).sort()).toEqual(['stderr:err-1', 'stderr:err-2', 'stdout:out-1', 'stdout:out-2']);
    const first = logs.find((l) => l.line === 'out-1')!;
    expect(ended - first.at).toBeGreaterThanOrEqual(1000);
    expect(out(e).stdout).toBe('out-1\nout-2\n');
    expect(out(e).stderr).toBe('err-1\nerr-2\n');
  });

  it('reports a Python exception as FAILURE with the traceback in stderr', async () => {
    const e = await s.run(python(fixtureScript('fails.py')));
    expect(e.status).toBe('FAILURE');
    const o = out(e);
    expect(o.exit_code).toBe(1);
    expect(o.stdout).toBe('before the error\n');
    expect(o.stderr).toContain('Traceback (most recent call last)');
    expect(o.stderr).toContain('ValueError: boom from user code');
  });

  it('times out, and leaves no process behind (a grandchild and SIGTERM ignored)', async () => {
    const token = uniqueToken(`timeout-${iso}-${mode}`);
    const lines: string[] = [];
    const e = await s.run(python(fixtureScript('stubborn.py'), { args: [token], timeout_seconds: 2 }), { onLog: (l) => lines.push(l.line) });
    expect(e.status).toBe('TIMEOUT');
    expect(out(e).timed_out).toBe(true);
    const pids = /pids (\d+) (\d+)/.exec(out(e).stdout);
    expect(pids).not.toBeNull();
    expect(await eventually(() => pidsWithToken(token).length === 0)).toBe(true);
    if (iso === 'process') {
      // Outside a PID namespace the printed pids are the host's.
      expect(await eventually(() => !isAlive(Number(pids![1])) && !isAlive(Number(pids![2])))).toBe(true);
    }
  });

  it('is cancelled by the signal, and leaves no process behind', async () => {
    const token = uniqueToken(`cancel-${iso}-${mode}`);
    const ac = new AbortController();
    const started = Date.now();
    let printed = '';
    const running = s.run(python(fixtureScript('stubborn.py'), { args: [token] }), {
      signal: ac.signal,
      onLog: (l) => {
        if (l.line.startsWith('pids ')) {
          printed = l.line;
          ac.abort();
        }
      },
    });
    const e = await running;
    expect(e.status).toBe('CANCELLED');
    expect(out(e).timed_out).toBe(false);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(printed).toMatch(/pids \d+ \d+/);
    expect(await eventually(() => pidsWithToken(token).length === 0)).toBe(true);
    if (iso === 'process') {
      const [, a, b] = /pids (\d+) (\d+)/.exec(printed)!;
      expect(await eventually(() => !isAlive(Number(a)) && !isAlive(Number(b)))).toBe(true);
    }
  });

  it('caps an output flood per stream with a marker', async () => {
    const e = await s.run(python(fixtureScript('flood.py')), {
      constraints: { timeout_seconds: 0, max_memory_bytes: 0, max_output_bytes: 64 * 1024, allow_network: false },
    });
    expect(e.status).toBe('SUCCESS');
    const o = out(e);
    expect(o.stdout.length).toBeLessThan(64 * 1024 + 200);
    expect(o.stdout).toMatch(/\[output truncated: \d+ bytes dropped\]\n$/);
    expect(o.stderr).toBe('the end\n');
    expect(s.logs.filter((l) => l.stream === 'stdout').length).toBeLessThan(100);
  });
});

describe.each(paths)('run_python environment and input (%s)', (mode) => {
  let s: TestSession;
  beforeAll(async () => {
    setIsolation(hasBwrap ? 'bwrap' : 'process');
    s = await tb.session(undefined, { FROM_SESSION: 'session-value' }, { warm: mode === 'warm' });
  });
  beforeEach(() => setIsolation(hasBwrap ? 'bwrap' : 'process'));

  it("never shows the worker's environment to user code", async () => {
    process.env.WORKER_TOKEN = 'worker-secret-token';
    process.env.COORDINATOR_ADDR = '127.0.0.1:1';
    try {
      const e = await s.run(python('import os, json\nprint(json.dumps(dict(os.environ)))', { env_vars: { FROM_CALL: 'call-value' } }));
      const env = JSON.parse(out(e).stdout) as Record<string, string>;
      expect(env.WORKER_TOKEN).toBeUndefined();
      expect(env.COORDINATOR_ADDR).toBeUndefined();
      expect(env).toMatchObject({
        FROM_SESSION: 'session-value',
        FROM_CALL: 'call-value',
        HOME: s.workspace,
        VIRTUAL_ENV: `${s.workspace}/.venv`,
        PYTHONUNBUFFERED: '1',
        LANG: 'C.UTF-8',
        TMPDIR: '/tmp',
        PATH: `${s.workspace}/.venv/bin:/usr/local/bin:/usr/bin:/bin`,
      });
    } finally {
      delete process.env.WORKER_TOKEN;
      delete process.env.COORDINATOR_ADDR;
    }
  });

  it('runs in the workspace with the venv interpreter and passes args', async () => {
    const e = await s.run(python('import os, sys\nprint(os.getcwd())\nprint(sys.prefix)\nprint(sys.argv[1:])', { args: ['a b', '--x'] }));
    expect(out(e).stdout.split('\n').slice(0, 3)).toEqual([s.workspace, `${s.workspace}/.venv`, "['a b', '--x']"]);
  });

  it('runs a file from the workspace and reports artifacts it wrote', async () => {
    await s.run({ tool: 'fs_write', input: { path: 'job/main.py', contents: 'import helper\nhelper.go()\n', create_dirs: true, encoding: 'utf-8' } });
    await s.run({
      tool: 'fs_write',
      input: { path: 'job/helper.py', contents: 'def go():\n    open("artifacts/out.txt", "w").write("made")\n    print("went")\n', create_dirs: false, encoding: 'utf-8' },
    });
    const e = await s.run({ tool: 'run_python', input: { file: 'job/main.py', args: [], env_vars: {}, timeout_seconds: 0 } });
    expect(e.status).toBe('SUCCESS');
    expect(out(e).stdout).toBe('went\n');
    expect(e.artifacts).toEqual(['out.txt']);
  });

  it('refuses bad input with errors that name the field', async () => {
    await expect(s.run({ tool: 'run_python', input: { args: [], env_vars: {}, timeout_seconds: 0 } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('code/file'),
    });
    await expect(s.run({ tool: 'run_python', input: { code: 'print(1)', file: 'x.py', args: [], env_vars: {}, timeout_seconds: 0 } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(s.run({ tool: 'run_python', input: { file: 'missing.py', args: [], env_vars: {}, timeout_seconds: 0 } })).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringContaining('missing.py'),
    });
    await expect(s.run(python('print(1)', { env_vars: { 'BAD NAME': 'x' } }))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('env_vars.BAD NAME'),
    });
    await expect(s.run({ tool: 'run_python', input: { file: '../escape.py', args: [], env_vars: {}, timeout_seconds: 0 } })).rejects.toMatchObject({
      code: 'PATH_VIOLATION',
    });
  });

  it('answers CANCELLED at once when the signal fired before the start', async () => {
    const ac = new AbortController();
    ac.abort();
    const e = await s.run(python('print("never")'), { signal: ac.signal });
    expect(e.status).toBe('CANCELLED');
    expect(out(e).stdout).toBe('');
  });
});
