/**
 * The command line for people (sessions, session, run, cp, ls, pip, repl, status) as a user runs
 * it: the built binary against a real coordinator and worker, over gRPC with the token file the
 * coordinator made. Exit codes, --json documents, live streaming, binary-safe copies both ways,
 * the repl's state and Ctrl-C on a real pseudo-terminal, and progress drawn only on a terminal.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnInPty, stripAnsi, type PtyProcess } from '../helpers/pty.js';
import { cliPath, grpc, TestSystem, unary, type SystemProcess } from '../helpers/system.js';
import { buildWheel } from '../helpers/wheels.js';

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  /** When each stdout chunk arrived (ms since the start), with its text. */
  chunks: Array<{ at: number; text: string }>;
  ms: number;
}

let sys: TestSystem;
let worker: SystemProcess;
let scratch: string;
let wheels: string;
let sessionId: string;

/** The environment of a user on the coordinator's host: the address, and the state folder with its token file. */
const userEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  PATH: process.env['PATH'] ?? '',
  HOME: process.env['HOME'] ?? '',
  COORDINATOR_ADDR: sys.address,
  CODEGEN_STATE_DIR: sys.stateDir,
  ...extra,
});

/** Runs the binary with pipes (not a terminal) and collects what it wrote. */
function cli(args: string[], opts: { env?: Record<string, string>; input?: string | Buffer; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [cliPath, ...args], { cwd: scratch, env: userEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const chunks: Ran['chunks'] = [];
    child.stdout.on('data', (b: Buffer) => {
      out.push(b);
      chunks.push({ at: Date.now() - started, text: b.toString('utf8') });
    });
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`codegen-mcp ${args.join(' ')} did not end within ${opts.timeoutMs ?? 60_000} ms; stderr: ${Buffer.concat(err).toString()}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), chunks, ms: Date.now() - started });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** The binary in a real pseudo-terminal (stdout and stderr are the terminal). */
function inPty(args: string[]): PtyProcess {
  return spawnInPty(process.execPath, [cliPath, ...args], { cwd: scratch, env: { ...userEnv(), TERM: 'xterm', COLUMNS: '120' } });
}

/** A failure's stderr: exactly one line, no stack trace. */
function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

const json = <T = any>(text: string): T => JSON.parse(text) as T;
const jsonLines = (text: string): any[] => text.trimEnd().split('\n').map((l) => JSON.parse(l));

async function sessionIds(): Promise<string[]> {
  const res = await unary(sys.clients.sessions, 'ListSessions', {});
  return res.sessions.map((s) => String(s.session_id));
}

/**
 * Waits until the terminal shows `prompt` as its unfinished last line (the repl waits for input),
 * after at least `afterLines` complete lines (so an old prompt does not count).
 */
async function waitForPrompt(pty: PtyProcess, prompt = '>>> ', afterLines = 0, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pty.output.length <= afterLines || !stripAnsi(pty.partial).endsWith(prompt)) {
    if (Date.now() > deadline || pty.exit) throw new Error(`no ${JSON.stringify(prompt)} prompt; the terminal shows:\n${pty.output.slice(-15).join('\n')}\n${pty.partial}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'codegen-cli-'));
  wheels = path.join(scratch, 'wheels');
  for (const name of ['cgcli_one', 'cgcli_two', 'cgcli_three']) buildWheel(wheels, name, '1.0');
  // pip reads its configuration from the worker's environment: offline, from the wheel folder.
  sys = new TestSystem({ label: 'cli', env: { PIP_FIND_LINKS: wheels, PIP_NO_INDEX: '1' } });
  await sys.startCoordinator({ HTTP_ENABLED: 'false' });
  worker = await sys.startWorker('cli-w');
  sessionId = (await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'cli-w' })).session_id;
}, 120_000);

afterAll(async () => {
  await sys?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}, 120_000);

describe('codegen-mcp for people', () => {
  it('status names the coordinator, its workers and your sessions, and exits 0 while a worker is online', async () => {
    const human = await cli(['status']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain(`coordinator ${sys.address}: SERVING`);
    expect(human.stdout).toMatch(/cli-w\s+online/);
    expect(human.stdout).toContain(sessionId);
    const doc = json((await cli(['status', '--json'])).stdout);
    expect(doc).toMatchObject({ coordinator: { address: sys.address, health: 'SERVING' }, healthy: true });
    expect(doc.workers).toEqual([expect.objectContaining({ worker_id: 'cli-w', state: 'online', sessions: expect.any(Number), max_sessions: expect.any(Number) })]);
    expect(doc.workers[0].your_sessions.map((s: { session_id: string }) => s.session_id)).toContain(sessionId);
  });

  it("status with a tenant's key (not admin): the coordinator's health and the tenant's own sessions, the workers left to an admin", async () => {
    const added = await cli(['keys', 'add', 'cli-tenant']);
    expect(added.code, added.stderr).toBe(0);
    const key = added.stdout.trimEnd().split('\n').at(-1)!;
    const mine = await cli(['session', 'create'], { env: { CLIENT_TOKEN: key } });
    expect(mine.code, mine.stderr).toBe(0);
    const human = await cli(['status'], { env: { CLIENT_TOKEN: key } });
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain(`coordinator ${sys.address}: SERVING`);
    expect(human.stdout).toMatch(/workers: the workers are listed to an admin credential only/);
    expect(human.stdout).toContain(mine.stdout.trim());
    // Another tenant's session (the admin's) is not shown, nor any worker.
    expect(human.stdout).not.toContain(sessionId);
    expect(human.stdout).not.toMatch(/cli-w\s+online/);
    const doc = json((await cli(['status', '--json'], { env: { CLIENT_TOKEN: key } })).stdout);
    expect(doc).toMatchObject({ healthy: true, workers: null });
    expect(doc.your_sessions.map((s: { session_id: string }) => s.session_id)).toEqual([mine.stdout.trim()]);
  });

  it('session create prints the new id, sessions lists it with state, worker, age and usage, session rm destroys it', async () => {
    const made = await cli(['session', 'create', '-e', 'GREETING=hello', '-m', 'owner=cli-test']);
    expect(made.code, made.stderr).toBe(0);
    const id = made.stdout.trim();
    expect(id).toMatch(/^sess-[0-9a-f]+$/);
    expect(made.stdout).toBe(`${id}\n`);

    const listed = json((await cli(['sessions', '--json'])).stdout);
    const entry = listed.sessions.find((s: { session_id: string }) => s.session_id === id);
    expect(entry).toMatchObject({ state: 'READY', worker_id: 'cli-w', metadata: { owner: 'cli-test' }, active_tasks: 0, age_seconds: expect.any(Number), usage: { memory_bytes: expect.any(Number), cpu_millicores: expect.any(Number), disk_bytes: expect.any(Number) } });
    const table = (await cli(['sessions'])).stdout;
    expect(table.split('\n')[0]).toMatch(/^SESSION\s+STATE\s+WORKER\s+AGE\s+IDLE\s+TASKS\s+MEMORY\s+CPU\s+DISK$/);
    expect(table).toMatch(new RegExp(`${id}\\s+READY\\s+cli-w\\s+\\d+[smhd]`));

    // The session's environment reaches its programs.
    expect((await cli(['run', '--session', id, '-c', 'import os; print(os.environ["GREETING"])'])).stdout).toBe('hello\n');

    const removed = await cli(['session', 'rm', id, '--json']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(json(removed.stdout)).toEqual({ removed: [{ session_id: id, destroyed: true, checkpoint_id: '', artifacts: [] }] });
    expect(await sessionIds()).not.toContain(id);

    const again = await cli(['session', 'rm', id]);
    expect(again.code).toBe(1);
    expect(oneLine(again.stderr)).toMatch(new RegExp(`^codegen-mcp: .*no session "${id}".*codegen-mcp sessions`));
  });

  it('run exits with the program\'s exit code, keeps stdout and stderr apart, passes arguments, and leaves no throwaway session', async () => {
    const before = await sessionIds();
    const exit3 = await cli(['run', '-c', 'raise SystemExit(3)']);
    expect(exit3.code, exit3.stderr).toBe(3);

    const script = path.join(scratch, 'args.py');
    writeFileSync(script, 'import sys\nprint("args", sys.argv[1:])\nprint("to stderr", file=sys.stderr)\n');
    const ran = await cli(['run', script, '--', '-x', 'two words']);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toBe("args ['-x', 'two words']\n");
    expect(ran.stderr).toBe('to stderr\n');

    const crashed = await cli(['run', '--session', sessionId, '-c', 'def f():\n    raise ValueError("boom")\nf()']);
    expect(crashed.code).toBe(1);
    expect(crashed.stderr).toMatch(/Traceback[\s\S]*ValueError: boom/);

    const lines = jsonLines((await cli(['run', '--json', '-c', 'import sys; print("a"); print("b", file=sys.stderr); sys.exit(5)'])).stdout);
    expect(lines[0]).toMatchObject({ type: 'start', throwaway: true, session_id: expect.stringMatching(/^sess-/), task_id: expect.any(String) });
    expect(lines.slice(1, -1)).toEqual(expect.arrayContaining([{ type: 'stdout', line: 'a' }, { type: 'stderr', line: 'b' }]));
    expect(lines.at(-1)).toMatchObject({ type: 'exit', status: 'FAILURE', exit_code: 5, timed_out: false });

    const timedOut = await cli(['run', '--session', sessionId, '--timeout', '1', '-c', 'import time; time.sleep(30)']);
    expect(timedOut.code).toBe(124);
    expect(oneLine(timedOut.stderr)).toMatch(/ran out of time/);

    // Every throwaway session was destroyed.
    expect((await sessionIds()).sort()).toEqual(before.sort());
  });

  it('run streams: the first line arrives while the program still runs', async () => {
    const ran = await cli(['run', '--session', sessionId, '-c', 'import time\nprint("first", flush=True)\ntime.sleep(2)\nprint("second")']);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toBe('first\nsecond\n');
    const first = ran.chunks.find((c) => c.text.includes('first'))!;
    const second = ran.chunks.find((c) => c.text.includes('second'))!;
    expect(first.text).not.toContain('second');
    expect(second.at - first.at).toBeGreaterThan(1_500);
  });

  it('says in one line, exit 1, what is wrong: an unknown session, a refused credential, no coordinator', async () => {
    const unknown = await cli(['run', '--session', 'sess-doesnotexist', '-c', 'print(1)']);
    expect(unknown.code).toBe(1);
    expect(oneLine(unknown.stderr)).toBe('codegen-mcp: session_id: no session "sess-doesnotexist" exists (create one first, or check the id); "codegen-mcp sessions" lists yours');
    const repl = await cli(['repl', '--session', 'sess-doesnotexist'], { input: 'print(1)\n' });
    expect(repl.code).toBe(1);
    expect(oneLine(repl.stderr)).toMatch(/no session "sess-doesnotexist" exists/);
    const asJson = await cli(['ls', 'sess-doesnotexist:', '--json']);
    expect(asJson.code).toBe(1);
    expect(json(asJson.stdout)).toMatchObject({ error: { code: 'SESSION_NOT_FOUND' } });

    for (const cmd of [['sessions'], ['status']]) {
      const refused = await cli(cmd, { env: { CLIENT_TOKEN: 'not-the-token' } });
      expect(refused.code).toBe(1);
      expect(oneLine(refused.stderr)).toMatch(/refused the credential.*set CLIENT_TOKEN/);
    }
    // ListWorkers, which status uses, is no more open than the rest.
    const stranger = sys.connect('not-the-token');
    try {
      await expect(unary(stranger.sessions, 'ListWorkers', {})).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    } finally {
      stranger.close();
    }

    const none = await cli(['sessions'], { env: { CODEGEN_STATE_DIR: path.join(scratch, 'no-state') } });
    expect(none.code).toBe(1);
    expect(oneLine(none.stderr)).toMatch(/no credential: CLIENT_TOKEN is not set and there is no token file at .*no-state\/client-token/);

    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    for (const cmd of [['status'], ['sessions']]) {
      const unreachable = await cli([...cmd, '--addr', `127.0.0.1:${port}`]);
      expect(unreachable.code).toBe(1);
      expect(oneLine(unreachable.stderr)).toMatch(new RegExp(`cannot reach the coordinator at 127\\.0\\.0\\.1:${port} .*COORDINATOR_ADDR`));
    }
  });

  it('answers usage errors with exit status 2, and --help for each command with its flags and defaults', async () => {
    for (const args of [['run'], ['cp', 'a', 'b'], ['pip', 'install', 'x'], ['run', '-c', '1', '--frobnicate'], ['ls', 'some/path'], ['session', 'create', '-e', 'NOEQUALS']]) {
      const r = await cli(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(oneLine(r.stderr)).toMatch(/^codegen-mcp/);
    }
    const helps: Array<[string[], RegExp[]]> = [
      [['sessions'], [/--json/]],
      [['session', 'create'], [/--env <KEY=VALUE>/, /--network/]],
      [['session', 'rm'], [/--force/, /--checkpoint/]],
      [['run'], [/--session <id>/, /--timeout <seconds>[\s\S]*?\(default: 0\)/, /throwaway/, /130/]],
      [['cp'], [/SESSION_ID:path/]],
      [['ls'], [/--recursive/, /--pattern <glob>/]],
      [['pip', 'install'], [/--session <id>/, /--upgrade/, /--no-deps/]],
      [['repl'], [/--session <id>/, /Ctrl-D/]],
      [['status'], [/--addr/]],
    ];
    for (const [cmd, patterns] of helps) {
      const r = await cli([...cmd, '--help']);
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: codegen-mcp ${cmd.join(' ')} `));
      expect(r.stdout).toMatch(/--addr <host:port>\s+.*\(default:\s+"localhost:50051", env: COORDINATOR_ADDR\)/s);
      expect(r.stdout).toMatch(/env: CLIENT_TOKEN\)/);
      for (const p of patterns) expect(r.stdout, cmd.join(' ')).toMatch(p);
    }
  });

  it('cp copies every byte value both ways, and ls lists what is there', async () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    writeFileSync(path.join(scratch, 'all.bin'), all);
    const up = await cli(['cp', '--json', 'all.bin', `${sessionId}:inputs/`]);
    expect(up.code, up.stderr).toBe(0);
    expect(json(up.stdout)).toEqual({ source: 'all.bin', destination: `${sessionId}:inputs/all.bin`, bytes: 256 });
    // Checked inside the session, by Python.
    const check = await cli(['run', '--session', sessionId, '-c', 'd = open("inputs/all.bin", "rb").read(); print(d == bytes(range(256)), len(d))']);
    expect(check.stdout).toBe('True 256\n');

    // The other way: a file Python wrote in the session (every byte value, reversed: not valid UTF-8).
    expect((await cli(['run', '--session', sessionId, '-c', 'import os\nos.makedirs("outputs", exist_ok=True)\nopen("outputs/rev.bin", "wb").write(bytes(range(255, -1, -1)))'])).code).toBe(0);
    const down = await cli(['cp', `${sessionId}:outputs/rev.bin`, 'rev.bin']);
    expect(down.code, down.stderr).toBe(0);
    expect(readFileSync(path.join(scratch, 'rev.bin')).equals(Buffer.from(all).reverse())).toBe(true);
    // To stdout, bytes unchanged.
    const piped = await new Promise<Buffer>((resolve) => {
      const child = spawn(process.execPath, [cliPath, 'cp', `${sessionId}:inputs/all.bin`, '-'], { cwd: scratch, env: userEnv() });
      const parts: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => parts.push(b));
      child.on('close', () => resolve(Buffer.concat(parts)));
    });
    expect(piped.equals(all)).toBe(true);
    // A file much larger than a pipe's buffer, read slowly: every byte arrives (the CLI waits for its stdout before it exits).
    expect((await cli(['run', '--session', sessionId, '-c', 'import random\nrandom.seed(7)\nopen("outputs/big.bin", "wb").write(random.randbytes(6 * 1024 * 1024))'])).code).toBe(0);
    const big = await new Promise<Buffer>((resolve) => {
      const child = spawn(process.execPath, [cliPath, 'cp', `${sessionId}:outputs/big.bin`, '-'], { cwd: scratch, env: userEnv() });
      const parts: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => {
        parts.push(b);
        // A slow reader: the pipe stays full while the CLI has more to write.
        child.stdout.pause();
        setTimeout(() => child.stdout.resume(), 2);
      });
      child.on('close', () => resolve(Buffer.concat(parts)));
    });
    const expected = await cli(['run', '--session', sessionId, '-c', 'import hashlib; print(hashlib.sha256(open("outputs/big.bin", "rb").read()).hexdigest())']);
    expect(big.length).toBe(6 * 1024 * 1024);
    expect(createHash('sha256').update(big).digest('hex')).toBe(expected.stdout.trim());

    const names = await cli(['ls', `${sessionId}:`]);
    expect(names.code, names.stderr).toBe(0);
    expect(names.stdout.split('\n')).toEqual(expect.arrayContaining(['inputs/', 'outputs/', '.venv/']));
    const listed = json((await cli(['ls', '--json', '--session', sessionId, 'inputs'])).stdout);
    expect(listed).toMatchObject({ session_id: sessionId, path: 'inputs', total_count: 1, files: [{ name: 'all.bin', path: 'inputs/all.bin', size_bytes: 256, is_directory: false }] });
    expect((await cli(['ls', '-l', `${sessionId}:outputs/rev.bin`])).stdout).toMatch(/^256B\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+rev\.bin\n$/);

    const missing = await cli(['cp', `${sessionId}:nope.bin`, 'x.bin']);
    expect(missing.code).toBe(1);
    expect(oneLine(missing.stderr)).toContain(`${sessionId}:nope.bin: no such file in the session`);
  });

  it('pip install installs offline from the wheel folder and reports the real versions; progress shows only on a terminal', async () => {
    const r = await cli(['pip', 'install', 'cgcli_one', '--session', sessionId, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json(r.stdout)).toMatchObject({ session_id: sessionId, status: 'SUCCESS', failed: [], installed: [{ name: 'cgcli_one', version: '1.0' }] });
    expect((await cli(['run', '--session', sessionId, '-c', 'import cgcli_one; print(cgcli_one.VERSION)'])).stdout).toBe('1.0\n');

    // Piped: the summary only; no spinner, no carriage returns.
    const piped = await cli(['pip', 'install', 'cgcli_two', '--session', sessionId]);
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stdout).toBe('installed cgcli_two 1.0\n');
    expect(piped.stderr).toBe('');

    // On a terminal: a spinner line with pip's progress, then the summary.
    const pty = inPty(['pip', 'install', 'cgcli_three', '--session', sessionId]);
    try {
      await pty.waitForOutput((l) => l.includes('installed cgcli_three 1.0'), 60_000);
      expect((await pty.exited).code).toBe(0);
      const screen = pty.rawOutput.join('\n');
      expect(screen).toMatch(/[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] pip install/);
      expect(screen).toContain('\r\x1b[K');
    } finally {
      await pty.kill();
    }

    const failed = await cli(['pip', 'install', 'cgcli_absent', '--session', sessionId]);
    expect(failed.code).toBe(1);
    expect(oneLine(failed.stderr)).toMatch(/pip install failed for cgcli_absent in session .*: No matching distribution found for cgcli_absent/);
  });

  it('run on a terminal: Ctrl-C cancels the task and exits 130', async () => {
    const pty = inPty(['run', '--session', sessionId, '-c', 'import time\nprint("working", flush=True)\ntime.sleep(60)']);
    try {
      await pty.waitForOutput((l) => l.includes('working'), 30_000);
      const at = Date.now();
      pty.interrupt();
      expect((await pty.exited).code).toBe(130);
      expect(Date.now() - at).toBeLessThan(10_000);
    } finally {
      await pty.kill();
    }
    // The task was cancelled, not left running: the session takes the next one at once.
    const next = await cli(['run', '--session', sessionId, '-c', 'print("next")'], { timeoutMs: 20_000 });
    expect(next.stdout).toBe('next\n');
  });

  it('run in a throwaway session, ended by SIGTERM or SIGHUP: the session is destroyed before it exits', async () => {
    for (const [signal, code] of [['SIGTERM', 143], ['SIGHUP', 129]] as const) {
      const before = await sessionIds();
      const child = spawn(process.execPath, [cliPath, 'run', '-c', 'import time\nprint("working", flush=True)\ntime.sleep(60)'], { cwd: scratch, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      await new Promise<void>((resolve) => child.stdout.on('data', (b: Buffer) => b.toString().includes('working') && resolve()));
      expect((await sessionIds()).length).toBe(before.length + 1);
      child.kill(signal);
      expect(await exited).toBe(code);
      expect(await sessionIds()).toEqual(before);
    }
  });

  it('repl keeps state between lines, runs blocks, shows tracebacks, survives Ctrl-C, and leaves with Ctrl-D', async () => {
    const before = await sessionIds();
    const pty = inPty(['repl']);
    /** Types a line; returns the output's length before it, for the waits that follow. */
    const enter = (text: string): number => {
      const from = pty.output.length;
      pty.type(text);
      return from;
    };
    try {
      await waitForPrompt(pty);
      let from = enter('x = 41');
      await waitForPrompt(pty, '>>> ', from);
      from = enter('x + 1');
      await pty.waitForOutput((l) => l === '42', 20_000, from);
      await waitForPrompt(pty, '>>> ', from);

      from = enter('for i in range(3):');
      await waitForPrompt(pty, '... ', from);
      from = enter('    print(i * 10)');
      await waitForPrompt(pty, '... ', from);
      from = enter('');
      await pty.waitForOutput((l) => l === '20', 20_000, from);
      expect(pty.output.slice(from)).toEqual(expect.arrayContaining(['0', '10', '20']));
      await waitForPrompt(pty, '>>> ', from);

      from = enter('1 / 0');
      await pty.waitForOutput((l) => l === 'ZeroDivisionError: division by zero', 20_000, from);
      expect(pty.output.slice(from).join('\n')).toContain('Traceback (most recent call last)');
      await waitForPrompt(pty, '>>> ', from);

      from = enter('import time; print("sleeping", flush=True); time.sleep(60)');
      await pty.waitForOutput((l) => l === 'sleeping', 20_000, from);
      pty.interrupt();
      await pty.waitForOutput((l) => l.includes('KeyboardInterrupt'), 15_000, from);
      await waitForPrompt(pty, '>>> ', from);
      from = enter('x');
      await pty.waitForOutput((l) => l === '41', 20_000, from);
      await waitForPrompt(pty, '>>> ', from);

      pty.eof();
      expect((await pty.exited).code).toBe(0);
    } finally {
      await pty.kill();
    }
    // Its throwaway session is gone.
    expect((await sessionIds()).sort()).toEqual(before.sort());
  });

  it('repl reads piped input without prompts, and --json gives one result per input', async () => {
    const r = await cli(['repl', '--session', sessionId, '--json'], { input: 'y = 2\ndef double(v):\n    return v * 2\n\ndouble(y)\n' });
    expect(r.code, r.stderr).toBe(0);
    const results = jsonLines(r.stdout).filter((l) => l.type === 'result');
    expect(results.map((l) => [l.status, l.result])).toEqual([['SUCCESS', ''], ['SUCCESS', ''], ['SUCCESS', '4']]);
    // A block the input ends in, with no blank line after it, still runs.
    const tail = await cli(['repl', '--session', sessionId], { input: 'for i in range(3):\n    print("row", i)' });
    expect(tail.code, tail.stderr).toBe(0);
    expect(tail.stdout).toBe('row 0\nrow 1\nrow 2\n');
  });

  // Last: it stops the worker.
  it('status exits 1 and says so when no worker is online', async () => {
    worker.signal('SIGTERM');
    await worker.exited;
    const r = await cli(['status']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`coordinator ${sys.address}: SERVING`);
    expect(oneLine(r.stderr)).toMatch(/unhealthy: no worker is online/);
    expect(json((await cli(['status', '--json'])).stdout)).toMatchObject({ healthy: false, reason: expect.stringMatching(/no worker is online/) });
  });
});
