import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PythonExecOutput } from '../../src/domain/tools.js';
import { detectEnforcement } from '../../src/sandbox/enforcement.js';
import { InterpreterRegistry } from '../../src/sandbox/interpreter/sessions.js';
import { detectIsolation, setIsolation, type Isolation } from '../../src/sandbox/launch.js';
import type { ToolExecution } from '../../src/worker/tools/types.js';
import { eventually, isAlive, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { makeBase, pyexec, python, type TestBase, type TestSession } from '../fixtures/sessions.js';

/**
 * python_exec against real interpreters in real sandboxes: the state a call leaves is there for
 * the next; timeouts interrupt and keep it; code that will not stop, crashes, or kills its own
 * interpreter ends with a clear status and state_lost, and the next call works.
 */

const hasBwrap = (await detectIsolation('auto')) === 'bwrap';
const isolations: Isolation[] = hasBwrap ? ['bwrap', 'process'] : ['process'];
const enforcement = detectEnforcement();

const out = (e: ToolExecution): PythonExecOutput => {
  if (e.reply.tool !== 'python_exec') throw new Error(`not a python_exec reply: ${e.reply.tool}`);
  return e.reply.output;
};

let tb: TestBase;
beforeAll(() => {
  tb = makeBase(3);
});
afterAll(async () => tb.cleanup());

describe.each(isolations)('python_exec (%s isolation)', (iso) => {
  let s: TestSession;
  beforeAll(async () => {
    setIsolation(iso);
    s = await tb.session();
  });
  beforeEach(() => setIsolation(iso));

  it('keeps variables, imports and definitions between calls, and numbers the calls', async () => {
    const a = await s.run(pyexec('import json\nx = 41\ndef inc(v):\n    return v + 1\nprint("defined")'));
    expect(a.status).toBe('SUCCESS');
    expect(out(a)).toMatchObject({ stdout: 'defined\n', result: '', state_lost: false, error_name: '' });
    const b = await s.run(pyexec('print(json.dumps({"x": inc(x)}))'));
    expect(out(b).stdout).toBe('{"x": 42}\n');
    expect(out(b).execution_count).toBe(out(a).execution_count + 1);
  });

  it("answers a trailing expression's value as text/plain, and keeps it in _", async () => {
    const e = out(await s.run(pyexec('y = [1, 2]\ny + [3]')));
    expect(e.result).toBe('[1, 2, 3]');
    expect(e.stdout).toBe('');
    expect(out(await s.run(pyexec('_'))).result).toBe('[1, 2, 3]');
    expect(out(await s.run(pyexec('None'))).result).toBe('');
    expect(out(await s.run(pyexec('z = 5'))).result).toBe('');
  });

  it('gives rich outputs: _repr_png_ as image/png, _repr_html_ as text/html, display() too', async () => {
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
    const code = [
      'class Pic:',
      '    def _repr_png_(self):',
      `        return bytes.fromhex("${png.toString('hex')}")`,
      '    def __repr__(self):',
      '        return "<Pic>"',
      'class Table:',
      '    def _repr_html_(self):',
      '        return "<table><tr><td>1</td></tr></table>"',
      'display(Table())',
      'Pic()',
    ].join('\n');
    const e = out(await s.run(pyexec(code)));
    expect(e.error_name).toBe('');
    expect(e.result).toBe('<Pic>');
    expect(e.outputs.map((o) => o.mime_type)).toEqual(['text/html', 'image/png']);
    expect(Buffer.from(e.outputs[0]!.data).toString()).toBe('<table><tr><td>1</td></tr></table>');
    expect(Buffer.from(e.outputs[1]!.data).equals(png)).toBe(true);
  });

  it('answers an exception as a completed call with its name, value and traceback, and keeps the state', async () => {
    await s.run(pyexec('kept = "still here"'));
    const e = await s.run(pyexec('def f():\n    return 1 / 0\nf()'));
    expect(e.status).toBe('FAILURE');
    const o = out(e);
    expect(o).toMatchObject({ error_name: 'ZeroDivisionError', error_value: 'division by zero', state_lost: false });
    expect(o.traceback).toContain('Traceback (most recent call last)');
    expect(o.traceback).toContain('return 1 / 0');
    expect(o.traceback).not.toContain('kernel');
    expect(out(await s.run(pyexec('kept'))).result).toBe("'still here'");
  });

  it('answers code that does not compile with the SyntaxError, as a completed call', async () => {
    const e = await s.run(pyexec('def broken(:\n    pass'));
    expect(e.status).toBe('FAILURE');
    expect(out(e).error_name).toBe('SyntaxError');
    expect(out(e).traceback).toContain('SyntaxError');
    expect(out(await s.run(pyexec('1 + 1'))).result).toBe('2');
  });

  it('interrupts a call at its timeout with KeyboardInterrupt and keeps the state', async () => {
    await s.run(pyexec('before_timeout = 7'));
    const started = Date.now();
    const e = await s.run(pyexec('import time\nprint("sleeping", flush=True)\ntime.sleep(30)', 1));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(e.status).toBe('TIMEOUT');
    expect(out(e)).toMatchObject({ error_name: 'KeyboardInterrupt', state_lost: false, stdout: 'sleeping\n' });
    const next = out(await s.run(pyexec('before_timeout')));
    expect(next).toMatchObject({ result: '7', state_lost: false });
  });

  it('kills and restarts an interpreter whose code ignores the interrupt: state_lost says so, once', async () => {
    await s.run(pyexec('lost_soon = 1'));
    const code = 'import time\nwhile True:\n    try:\n        time.sleep(30)\n    except KeyboardInterrupt:\n        pass';
    const started = Date.now();
    const e = await s.run(pyexec(code, 1));
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(e.status).toBe('TIMEOUT');
    expect(out(e).state_lost).toBe(true);
    expect(out(e).state_lost_reason).toContain('KeyboardInterrupt');
    const next = await s.run(pyexec('"lost_soon" in globals()'));
    expect(out(next)).toMatchObject({ result: 'False', state_lost: false, execution_count: 1 });
  });

  it('restarts an interpreter that crashes (os._exit) with state_lost, and the next call works', async () => {
    await s.run(pyexec('gone = 1'));
    const e = await s.run(pyexec('import os\nprint("bye", flush=True)\nos._exit(3)'));
    expect(e.status).toBe('FAILURE');
    expect(out(e)).toMatchObject({ stdout: 'bye\n', state_lost: true, error_name: 'InterpreterDied' });
    expect(out(e).state_lost_reason).toContain('exited with code 3');
    expect(out(await s.run(pyexec('"gone" in globals()'))).result).toBe('False');
  });

  it('survives code that kills its own interpreter with SIGKILL', async () => {
    const e = await s.run(pyexec('import os, signal\nos.kill(os.getpid(), signal.SIGKILL)'));
    expect(e.status).toBe('FAILURE');
    expect(out(e).state_lost).toBe(true);
    expect(out(e).state_lost_reason).toContain('SIGKILL');
    expect(out(await s.run(pyexec('2 * 21'))).result).toBe('42');
  });

  it('tells the next call when the interpreter died between calls', async () => {
    await s.run(pyexec('between = 1'));
    const { pid } = s.interpreter.stats();
    expect(pid).toBeGreaterThan(0);
    process.kill(-pid!, 'SIGKILL');
    expect(await eventually(() => !s.interpreter.stats().alive, 5_000)).toBe(true);
    const e = out(await s.run(pyexec('"between" in globals()')));
    expect(e).toMatchObject({ result: 'False', state_lost: true });
    expect(e.state_lost_reason).toContain('ended between calls');
  });

  it('ends what a call started when the call ends, and a fork of the interpreter never answers', async () => {
    const token = uniqueToken(`exec-bg-${iso}`);
    const bg = `import subprocess, sys\np = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "${token}"], start_new_session=True)\nprint("started")`;
    expect(out(await s.run(pyexec(bg))).stdout).toBe('started\n');
    expect(await eventually(() => pidsWithToken(token).length === 0, 5_000)).toBe(true);
    const forking = 'import os\npid = os.fork()\nif pid == 0:\n    print("child", flush=True)\nelse:\n    os.waitpid(pid, 0)\n    print("parent")\npid > 0';
    const fork = out(await s.run(pyexec(forking)));
    expect(fork.result).toBe('True');
    expect(fork.stdout.split('\n').filter(Boolean).sort()).toEqual(['child', 'parent']);
    expect(out(await s.run(pyexec('3'))).result).toBe('3');
  });

  it('cuts a flood of output at the cap and answers the next call', async () => {
    const e = await s.run(pyexec('for i in range(300000):\n    print("x" * 50)'), { constraints: { timeout_seconds: 0, max_memory_bytes: 0, max_output_bytes: 64 * 1024, allow_network: false } });
    expect(e.status).toBe('SUCCESS');
    expect(out(e).stdout.length).toBeLessThan(80 * 1024);
    expect(out(e).stdout).toContain('output truncated');
    expect(out(await s.run(pyexec('"ok"'))).result).toBe("'ok'");
  });

  it('cancels a running call: KeyboardInterrupt, the state kept', async () => {
    await s.run(pyexec('kept_on_cancel = 9'));
    const abort = new AbortController();
    const running = s.run(pyexec('import time\ntime.sleep(30)'), { signal: abort.signal });
    await new Promise((r) => setTimeout(r, 300));
    abort.abort('client cancelled');
    const e = await running;
    expect(e.status).toBe('CANCELLED');
    expect(out(e).state_lost).toBe(false);
    expect(out(await s.run(pyexec('kept_on_cancel'))).result).toBe('9');
  });

  it('survives code that writes anything to the control channel: the interpreter is replaced, the worker goes on', async () => {
    for (const junk of ["b'null\\n'", "b'[1, 2]\\n'", "b'not json\\n'", "b'x' * (30 * 1024 * 1024)"]) {
      await s.run(pyexec('kept = 1'));
      const e = await s.run(pyexec(`import os\nos.write(3, ${junk})\nimport time\ntime.sleep(5)`));
      expect(e.status, junk).toBe('FAILURE');
      expect(out(e), junk).toMatchObject({ state_lost: true, error_name: 'InterpreterDied' });
      expect(out(e).state_lost_reason, junk).toMatch(/control line/);
      expect(out(await s.run(pyexec('"kept" in globals()'))).result, junk).toBe('False');
    }
  });

  it('interrupts a cancel that comes before the code starts, and keeps the state', async () => {
    await s.run(pyexec('early = 1'));
    const gone = new AbortController();
    gone.abort('cancelled before it was sent');
    const before = await s.run(pyexec('import time\ntime.sleep(5)'), { signal: gone.signal });
    expect(before.status).toBe('CANCELLED');
    expect(out(before).state_lost).toBe(false);
    const abort = new AbortController();
    const running = s.run(pyexec('import time\ntime.sleep(5)'), { signal: abort.signal });
    abort.abort('cancelled at once');
    const e = await running;
    expect(e.status).toBe('CANCELLED');
    expect(out(e).state_lost).toBe(false);
    expect(out(await s.run(pyexec('early'))).result).toBe('1');
  });

  it("interrupts a value's slow __repr__ at the timeout, and keeps the state", async () => {
    await s.run(pyexec('kept_repr = 2'));
    const e = await s.run(pyexec('import time\nclass Slow:\n    def __repr__(self):\n        time.sleep(30)\n        return "slow"\nSlow()', 1));
    expect(e.status).toBe('TIMEOUT');
    expect(out(e)).toMatchObject({ error_name: 'KeyboardInterrupt', state_lost: false });
    expect(out(await s.run(pyexec('kept_repr'))).result).toBe('2');
  });

  it('answers exceptions whose str() fails or is huge, bounded, and keeps the state', async () => {
    await s.run(pyexec('kept_err = 3'));
    const bad = out(await s.run(pyexec('class E(Exception):\n    def __str__(self):\n        raise RuntimeError("no")\nraise E()')));
    expect(bad).toMatchObject({ error_name: 'E', error_value: '<str() of the exception failed>', state_lost: false });
    const huge = out(await s.run(pyexec('raise ValueError("x" * 40_000_000)')));
    expect(huge).toMatchObject({ error_name: 'ValueError', state_lost: false });
    expect(huge.error_value.length).toBeLessThan(1_100_000);
    expect(huge.error_value).toContain('characters cut');
    expect(out(await s.run(pyexec('kept_err'))).result).toBe('3');
  });

  it('streams output lines while the call runs', async () => {
    const before = s.logs.length;
    await s.run(pyexec('import sys\nprint("one")\nprint("two", file=sys.stderr)'));
    const lines = s.logs.slice(before).map((l) => `${l.stream}:${l.line}`);
    expect(lines).toEqual(expect.arrayContaining(['stdout:one', 'stderr:two']));
  });

  it('python_reset discards the state: the next call starts fresh, without state_lost', async () => {
    await s.run(pyexec('to_reset = 1'));
    const r = await s.run({ tool: 'python_reset', input: {} });
    expect(r.reply).toEqual({ tool: 'python_reset', output: { reset: true } });
    const e = out(await s.run(pyexec('"to_reset" in globals()')));
    expect(e).toMatchObject({ result: 'False', state_lost: false, execution_count: 1 });
  });

  it('leaves run_python as it was: a fresh __main__ with argv and exit codes, beside the interpreter', async () => {
    await s.run(pyexec('shared_name = 1'));
    const r = await s.run(python('import sys\nprint("shared_name" in globals(), sys.argv[1:])\nsys.exit(4)', { args: ['a'] }));
    expect(r.reply).toMatchObject({ tool: 'run_python', output: { stdout: "False ['a']\n", exit_code: 4 } });
    expect(out(await s.run(pyexec('shared_name'))).result).toBe('1');
  });
});

describe('python_exec sessions', () => {
  beforeEach(() => setIsolation(isolations[0]!));

  it('never shows one session the state of another', async () => {
    const a = await tb.session();
    const b = await tb.session();
    await a.run(pyexec('secret = "a-only"'));
    const e = out(await b.run(pyexec('"secret" in globals()')));
    expect(e.result).toBe('False');
    expect(a.interpreter.stats().pid).not.toBe(b.interpreter.stats().pid);
  });

  it('tells the first call after a worker restart that the state was lost (the marker outlives the process)', async () => {
    const s = await tb.session();
    await s.run(pyexec('x = 1'));
    const marker = path.join(tb.base, '.interpreters', s.id);
    expect(existsSync(marker)).toBe(true);
    await tb.interpreters.release(s.id, false);
    const restarted = new InterpreterRegistry({ markerDir: path.join(tb.base, '.interpreters') });
    try {
      const e = out(await s.run(pyexec('"x" in globals()'), { interpreter: restarted.forSession(s.id) }));
      expect(e).toMatchObject({ result: 'False', state_lost: true });
      expect(e.state_lost_reason).toContain('worker restarted');
      await restarted.release(s.id, true);
      expect(existsSync(marker)).toBe(false);
    } finally {
      await restarted.stopAll();
    }
  });

  it('tells the next call that a restore discarded the state', async () => {
    const s = await tb.session();
    await s.run(pyexec('x = 1'));
    await s.interpreter.discard('the session was restored from checkpoint ck-1');
    const e = out(await s.run(pyexec('"x" in globals()')));
    expect(e).toMatchObject({ result: 'False', state_lost: true, state_lost_reason: 'the session was restored from checkpoint ck-1' });
  });

  it('answers UNAVAILABLE without an interpreter (the session is starting or shutting down)', async () => {
    const s = await tb.session();
    await expect(s.run(pyexec('1'), { interpreter: undefined })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    const r = await s.run({ tool: 'python_reset', input: {} }, { interpreter: undefined });
    expect(r.reply).toEqual({ tool: 'python_reset', output: { reset: false } });
  });

  it.runIf(hasBwrap && enforcement.memory.mode.startsWith('cgroup'))('counts the interpreter against the session memory limit: over it, state_lost names the limit', async () => {
    const s = await tb.session();
    const limits = { sessionLimits: { memoryBytes: 256 * 1024 * 1024 } };
    await s.run(pyexec('small = 1'), limits);
    const e = await s.run(pyexec('hog = bytearray(1 << 30)\nfor i in range(0, len(hog), 4096):\n    hog[i] = 1'), limits);
    expect(e.status).toBe('FAILURE');
    expect(out(e).state_lost).toBe(true);
    expect(out(e).state_lost_reason).toContain('memory limit of 256 MiB per session exceeded');
    expect(out(await s.run(pyexec('"small" in globals()'), limits)).result).toBe('False');
  });

  it('stops the interpreter when the session is released', async () => {
    const s = await tb.session();
    await s.run(pyexec('1'));
    const { pid } = s.interpreter.stats();
    expect(isAlive(pid!)).toBe(true);
    await tb.interpreters.release(s.id, true);
    expect(await eventually(() => !isAlive(pid!), 5_000)).toBe(true);
    rmSync(path.join(tb.base, '.interpreters', s.id), { force: true });
  });
});
