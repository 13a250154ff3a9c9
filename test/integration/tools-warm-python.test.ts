import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunPythonOutput } from '../../src/domain/tools.js';
import { detectIsolation, setIsolation, type Isolation } from '../../src/sandbox/launch.js';
import { warmCompatible } from '../../src/sandbox/warm/sessions.js';
import type { ToolExecution } from '../../src/worker/tools/types.js';
import { eventually, isAlive, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { buildWheel } from '../helpers/wheels.js';
import { makeBase, python, type TestBase, type TestSession } from '../fixtures/sessions.js';

const hasBwrap = (await detectIsolation('auto')) === 'bwrap';
const isolations: Isolation[] = hasBwrap ? ['bwrap', 'process'] : ['process'];

const out = (e: ToolExecution): RunPythonOutput => {
  if (e.reply.tool !== 'run_python') throw new Error(`not a run_python reply: ${e.reply.tool}`);
  return e.reply.output;
};

/** Prints True when the task is a fork of the warm interpreter (its parent runs the fork server). */
const WHO = "import os\nprint('codegen-forkserver' in open('/proc/%d/cmdline' % os.getppid()).read())";

let tb: TestBase;
beforeAll(() => {
  tb = makeBase(2);
});
afterAll(async () => tb.cleanup());

describe.each(isolations)('the warm interpreter (%s isolation)', (iso) => {
  let s: TestSession;
  beforeAll(async () => {
    setIsolation(iso);
    s = await tb.session();
  });
  beforeEach(() => setIsolation(iso));

  it('is started once and reused: the same server serves task after task', async () => {
    const first = await s.run(python(WHO));
    expect(out(first).stdout).toBe('True\n');
    const { pid, starts } = s.warm!.stats();
    expect(pid).toBeGreaterThan(0);
    for (let i = 0; i < 3; i++) expect(out(await s.run(python(WHO))).stdout).toBe('True\n');
    expect(s.warm!.stats()).toMatchObject({ pid, starts, live: 1 });
  });

  it('gives every task a fresh __main__ and no module a previous task imported', async () => {
    await s.run(python('import json, sys\nleftover = 1\nsys.modules["__main__"].other = 2\nprint(json.dumps(1))'));
    const e = await s.run(python('import sys\nprint("leftover" in globals(), "other" in globals(), "json" in sys.modules, __name__, __file__)'));
    expect(out(e).stdout).toBe('False False False __main__ <stdin>\n');
  });

  it('gives two runs different random numbers', async () => {
    const code = 'import random, os\nprint(random.random(), os.urandom(8).hex())';
    const a = out(await s.run(python(code))).stdout;
    const b = out(await s.run(python(code)));
    expect(b.exit_code).toBe(0);
    expect(a.split(' ')[0]).not.toBe(b.stdout.split(' ')[0]);
    expect(a.split(' ')[1]).not.toBe(b.stdout.split(' ')[1]);
  });

  it('ends with its task everything the task started, even a setsid()ed background process', async () => {
    const token = uniqueToken(`warm-bg-${iso}`);
    const code = `import subprocess, sys\nsubprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "${token}"], start_new_session=True)\nprint("left it running")`;
    const started = Date.now();
    const e = await s.run(python(code));
    expect(e.status).toBe('SUCCESS');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await eventually(() => pidsWithToken(token).length === 0)).toBe(true);
    expect(out(await s.run(python(WHO))).stdout).toBe('True\n');
  });

  it('ends a task whose server dies under it like a killed process, and the next task gets a new server', async () => {
    const token = uniqueToken(`warm-death-${iso}`);
    const before = s.warm!.stats();
    const code = `import os, subprocess, sys, time\nsubprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "${token}"])\nprint("killing", flush=True)\nos.kill(os.getppid(), 9)\ntime.sleep(60)`;
    const started = Date.now();
    const e = await s.run(python(code));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(e.status).toBe('FAILURE');
    expect(out(e)).toMatchObject({ exit_code: 137, stdout: 'killing\n', timed_out: false });
    expect(await eventually(() => pidsWithToken(token).length === 0)).toBe(true);
    expect(before.pid === undefined || !isAlive(before.pid)).toBe(true);

    const next = await s.run(python(WHO));
    expect(out(next).stdout).toBe('True\n');
    expect(s.warm!.stats().starts).toBe(before.starts + 1);
    expect(s.warm!.stats().pid).not.toBe(before.pid);
  });

  it('starts a fresh server when a .pth file appeared in site-packages (pip installed one)', async () => {
    await s.run(python(WHO));
    const before = s.warm!.stats().starts;
    const lib = path.join(s.workspace, '.venv', 'lib');
    const site = path.join(lib, readdirSync(lib).find((d) => d.startsWith('python'))!, 'site-packages');
    const extra = path.join(s.workspace, `extra-${iso}`);
    mkdirSync(extra, { recursive: true });
    writeFileSync(path.join(extra, `pthmod_${iso}.py`), 'VALUE = "from a .pth path"\n');
    writeFileSync(path.join(site, `extra_${iso}.pth`), `${extra}\n`);
    try {
      const e = await s.run(python(`import pthmod_${iso}\nprint(pthmod_${iso}.VALUE)`));
      expect(out(e)).toMatchObject({ stdout: 'from a .pth path\n', exit_code: 0 });
      expect(s.warm!.stats().starts).toBe(before + 1);
    } finally {
      rmSync(path.join(site, `extra_${iso}.pth`), { force: true });
    }
  });

  it('never reads a host file through a symlink in the control folder', async () => {
    await s.run(python(WHO));
    const secret = path.join(tb.base, `host-secret-${iso}.txt`);
    writeFileSync(secret, 'host secret');
    const controlRoot = path.join(tb.base, '.warm', s.id);
    const ctl = () => path.join(controlRoot, readdirSync(controlRoot).sort((x, y) => Number(y) - Number(x))[0]!);
    // A task plants symlinks under the names the next tasks' FIFOs will have (the server replaces them).
    const plant = 'import os, sys\nfor n in range(200):\n    for s in ("out", "err"):\n        p = os.path.join(sys.argv[1], f"{n}.{s}")\n        if not os.path.exists(p):\n            os.symlink(sys.argv[2], p)\nprint("planted")';
    expect(out(await s.run(python(plant, { args: [ctl(), secret] }))).stdout).toBe('planted\n');
    const next = await s.run(python('print("next")'));
    expect(out(next).stdout).toBe('next\n');
    expect(JSON.stringify(next.reply)).not.toContain('host secret');
    // Should one be there when the worker opens it, the worker refuses it and the task runs on a fresh server.
    const starts = s.warm!.stats().starts;
    for (const name of readdirSync(ctl())) {
      rmSync(path.join(ctl(), name));
      symlinkSync(secret, path.join(ctl(), name));
    }
    const refused = await s.run(python('print("after")'));
    expect(out(refused).stdout).toBe('after\n');
    expect(JSON.stringify(refused.reply)).not.toContain('host secret');
    expect(s.warm!.stats().starts).toBe(starts + 1);
  });

  it.runIf(iso === 'bwrap')('gives every task an empty /tmp, as a fresh sandbox would', async () => {
    await s.run(python('open("/tmp/left-behind", "w").write("x")'));
    const e = await s.run(python('import os\nprint(os.path.exists("/tmp/left-behind"), os.path.isdir(os.environ["HOME"]))'));
    expect(out(e).stdout).toBe('False True\n');
  });

  it('is stopped when the session is released, leaving no process', async () => {
    const own = await tb.session();
    await own.run(python(WHO));
    const pid = own.warm!.stats().pid!;
    const controlDir = path.join(tb.base, '.warm', own.id);
    expect(isAlive(pid)).toBe(true);
    expect(pidsWithToken(controlDir).length).toBeGreaterThan(0);
    await tb.warm.release(own.id);
    expect(await eventually(() => !isAlive(pid) && pidsWithToken(controlDir).length === 0)).toBe(true);
    expect(existsSync(controlDir)).toBe(false);
    // A task that still holds the released handle runs cold.
    expect(out(await own.run(python(WHO))).stdout).toBe('False\n');
  });
});

describe('falling back to the cold path', () => {
  beforeEach(() => setIsolation(hasBwrap ? 'bwrap' : 'process'));

  it('runs cold when env_vars change interpreter start-up (PYTHONPATH), warm again after', async () => {
    const s = await tb.session();
    expect(out(await s.run(python(WHO))).stdout).toBe('True\n');
    const e = await s.run(python(`${WHO}\nimport sys\nprint("/opt/somewhere" in sys.path)`, { env_vars: { PYTHONPATH: '/opt/somewhere' } }));
    expect(out(e).stdout).toBe('False\nTrue\n');
    expect(out(await s.run(python(WHO))).stdout).toBe('True\n');
    expect(s.warm!.stats().starts).toBe(1);
  });

  it('runs cold when the session environment sets a PYTHON* variable', async () => {
    const s = await tb.session(undefined, { PYTHONDONTWRITEBYTECODE: '1' });
    expect(out(await s.run(python(`${WHO}\nimport sys\nprint(sys.flags.dont_write_bytecode)`))).stdout).toBe('False\n1\n');
    expect(s.warm!.stats().starts).toBe(0);
  });

  it('decides by start-up variables and locale only', () => {
    const base = { PATH: '/bin', LANG: 'C.UTF-8', PYTHONUNBUFFERED: '1' };
    expect(warmCompatible({ ...base, ANY: 'x', PYTHONIOENCODING: 'latin-1' }, base)).toBe(true);
    expect(warmCompatible({ ...base, PYTHONHASHSEED: '0' }, base)).toBe(false);
    expect(warmCompatible({ ...base, PYTHONUNBUFFERED: '' }, base)).toBe(false);
    expect(warmCompatible({ ...base, LC_ALL: 'C' }, base)).toBe(false);
  });

  it('gives the network setting its own server', async () => {
    const s = await tb.session();
    expect(out(await s.run(python(WHO))).stdout).toBe('True\n');
    expect(out(await s.run(python(WHO), { allowNetwork: true })).stdout).toBe('True\n');
    expect(s.warm!.stats()).toMatchObject({ starts: 2, live: 2 });
    expect(out(await s.run(python(WHO))).stdout).toBe('True\n');
    expect(s.warm!.stats().starts).toBe(2);
  });
});

describe('pkg_install while the warm interpreter runs', () => {
  let wheels: string;
  beforeAll(() => {
    wheels = mkdtempSync(path.join(os.tmpdir(), 'codegen-warm-wheels-'));
    buildWheel(wheels, 'cgwarm_pkg', '1.0', 'installed later');
  });
  afterAll(() => rmSync(wheels, { recursive: true, force: true }));

  it('imports a package installed after the server started', async () => {
    setIsolation(hasBwrap ? 'bwrap' : 'process');
    const s = await tb.session();
    expect(out(await s.run(python('import importlib.util as u\nprint(u.find_spec("cgwarm_pkg"))'))).stdout).toBe('None\n');
    const installed = await s.run(
      { tool: 'pkg_install', input: { packages: ['cgwarm_pkg'], upgrade: false, no_deps: false, index_url: '' } },
      { pipEnv: { PIP_FIND_LINKS: wheels, PIP_NO_INDEX: '1' } },
    );
    expect(installed.status).toBe('SUCCESS');
    const e = await s.run(python(`${WHO}\nimport cgwarm_pkg\nprint(cgwarm_pkg.value)`));
    expect(out(e).stdout).toBe('True\ninstalled later\n');
    expect(s.warm!.stats().starts).toBe(1);
  });
});

describe.each(['warm', 'cold'] as const)('Python semantics (%s)', (mode) => {
  let s: TestSession;
  beforeAll(async () => {
    setIsolation(hasBwrap ? 'bwrap' : 'process');
    s = await tb.session(undefined, {}, { warm: mode === 'warm' });
  });
  beforeEach(() => setIsolation(hasBwrap ? 'bwrap' : 'process'));

  it('exits with the code of sys.exit, and prints a non-integer one', async () => {
    expect(out(await s.run(python('import sys\nsys.exit(3)')))).toMatchObject({ exit_code: 3, stderr: '' });
    const e = await s.run(python('raise SystemExit("bye now")'));
    expect(e.status).toBe('FAILURE');
    expect(out(e)).toMatchObject({ exit_code: 1, stderr: 'bye now\n' });
    expect(out(await s.run(python('import os\nos._exit(5)')))).toMatchObject({ exit_code: 5 });
  });

  it('gives input() an end of file', async () => {
    const e = await s.run(python('try:\n    input()\nexcept EOFError:\n    print("eof")'));
    expect(out(e).stdout).toBe('eof\n');
  });

  it('joins threads, runs atexit handlers and flushes unclosed files at exit', async () => {
    const code = [
      'import atexit, threading, time',
      'atexit.register(lambda: print("atexit ran"))',
      'def later():',
      '    time.sleep(0.3)',
      '    print("thread done")',
      'threading.Thread(target=later).start()',
      'f = open("artifacts/unclosed.txt", "w")',
      'f.write("kept")',
      'print("main done")',
    ].join('\n');
    const e = await s.run(python(code));
    expect(out(e)).toMatchObject({ stdout: 'main done\nthread done\natexit ran\n', exit_code: 0 });
    const read = await s.run({ tool: 'fs_read', input: { path: 'artifacts/unclosed.txt', encoding: 'utf-8', max_bytes: 0 } } as never);
    expect(JSON.stringify(read.reply)).toContain('kept');
  });

  it('finalizes the objects of the program at exit, and does not wait for daemon threads', async () => {
    const code = [
      'import threading, time',
      'class Noisy:',
      '    def __del__(self):',
      '        print("finalized")',
      'keep = Noisy()',
      'threading.Thread(target=time.sleep, args=(30,), daemon=True).start()',
      'print("end")',
    ].join('\n');
    const started = Date.now();
    const e = await s.run(python(code));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(out(e)).toMatchObject({ stdout: 'end\nfinalized\n', stderr: '', exit_code: 0 });
    const noThreads = await s.run(python('class Noisy:\n    def __del__(self):\n        print("finalized")\nkeep = Noisy()\nprint("end")'));
    expect(out(noThreads)).toMatchObject({ stdout: 'end\nfinalized\n', stderr: '', exit_code: 0 });
  });

  it('runs a file with its folder as sys.path[0] and its arguments', async () => {
    await s.run({ tool: 'fs_write', input: { path: 'pkg/run_me.py', contents: 'import sys, os\nprint(sys.argv[1:], sys.path[0] == os.path.dirname(os.path.abspath(__file__)), __name__)\n', create_dirs: true, encoding: 'utf-8' } });
    const e = await s.run({ tool: 'run_python', input: { file: 'pkg/run_me.py', args: ['one', 'two words'], env_vars: {}, timeout_seconds: 0 } });
    expect(out(e).stdout).toBe("['one', 'two words'] True __main__\n");
  });

  it('shows the command line with its arguments in /proc (ps, pgrep)', async () => {
    const e = await s.run(python('import sys\nprint(open("/proc/self/cmdline", "rb").read().rstrip(b"\\0").split(b"\\0") == [sys.executable.encode(), b"-", b"a", b"b c"])', { args: ['a', 'b c'] }));
    expect(out(e).stdout).toBe('True\n');
  });

  it('applies the memory limit', async () => {
    const e = await s.run(python('try:\n    b = bytearray(1 << 30)\n    print("allocated")\nexcept MemoryError:\n    print("refused")'), {
      constraints: { timeout_seconds: 0, max_memory_bytes: 256 * 1024 * 1024, max_output_bytes: 0, allow_network: false },
    });
    expect(out(e).stdout).toBe('refused\n');
  });

  it('honours PYTHONIOENCODING and the time zone of the task', async () => {
    const e = await s.run(python('import time\nprint("é", time.strftime("%Z", time.localtime(0)))', { env_vars: { PYTHONIOENCODING: 'ascii:replace', TZ: 'EST5' } }));
    expect(out(e).stdout).toBe('? EST\n');
  });
});
