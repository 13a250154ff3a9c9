/**
 * A command run in a real pseudo-terminal (by test/fixtures/pty-run.py, with python3 from PATH):
 * the command is a session leader with the pty as its controlling terminal and is the terminal's
 * foreground process group, so `interrupt()` is exactly a user's Ctrl-C — the pty's line
 * discipline sends one SIGINT to the whole foreground process group (the command and every
 * descendant that did not move to a group of its own). Nothing here signals the processes for
 * Ctrl-C; only `kill()` does, for cleanup.
 *
 * Output is what the terminal shows: stdout and stderr of the command, merged, with the
 * terminal's "\r\n" line ends turned into lines. `output` has ANSI escape sequences (colours)
 * removed, `rawOutput` keeps them. With the default `echo: true` the terminal echoes as a login
 * terminal does: Ctrl-C shows as "^C" at the start of the next line; `echo: false` turns that
 * off (signals are unaffected).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ptyRunPath = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'pty-run.py');

const EXIT_RE = /^__PTY_EXIT__ pid=(\d+) (?:code=(\d+)|signal=(\d+)|unknown)$/;
const PID_RE = /^__PTY_PID__ (\d+)$/;

export interface PtyExit {
  /** The command's exit code, or null when a signal ended it (or its end is unknown). */
  code: number | null;
  /** The name of the signal that ended the command (e.g. 'SIGINT'), or null. */
  signal: string | null;
  /** Set when the runner ended without reporting the command's status (it then says why). */
  error?: string;
}

export interface PtyOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** The terminal's echo (ECHO, ECHOCTL); default true, as a login terminal. */
  echo?: boolean;
  /**
   * After the command exited, how long to keep relaying what processes it left behind (still
   * holding the terminal) write; default 100 ms. `exited` resolves after that.
   */
  lingerMs?: number;
}

export interface PtyProcess {
  /** The terminal's output so far, one entry per line (no line ends, no ANSI escapes, markers left out). */
  readonly output: string[];
  /** The same lines as `output`, with their ANSI escape sequences. */
  readonly rawOutput: string[];
  /** The text after the last line end, not yet a complete line (e.g. a prompt). */
  readonly partial: string;
  /** The command's pid (also its process group and session id); undefined until the fork is reported. */
  readonly pid: number | undefined;
  /** Resolves with the command's pid once it is known. */
  readonly started: Promise<number>;
  /** The pid of the python runner that owns the pty. */
  readonly runnerPid: number;
  /** The command's own exit status as seen by its parent in the pty. Never rejects. */
  readonly exited: Promise<PtyExit>;
  /** Set once the command has exited. */
  readonly exit: PtyExit | undefined;
  /**
   * The first output line (from index `from` on) that `pred` accepts; rejects after `timeoutMs`,
   * or when the command exits without such a line, with the last lines in the message.
   */
  waitForOutput(pred: (line: string) => boolean, timeoutMs?: number, from?: number): Promise<string>;
  /** Ctrl-C: the terminal's interrupt character is typed into the pty. */
  interrupt(): void;
  /** Ctrl-\ (SIGQUIT to the foreground group by the line discipline). */
  quit(): void;
  /** Ctrl-D: the terminal's end-of-file character. */
  eof(): void;
  /** Types `text` and Enter. */
  type(text: string): void;
  /** Hangs up the terminal (closes the master side: the kernel sends SIGHUP to the session). */
  hangup(): void;
  /**
   * Ends everything, bounded: the runner's stdin closes (it then sends SIGHUP, then SIGTERM, then
   * SIGKILL to the command's group); after `graceMs` SIGKILL to the group and the runner from
   * here. Once the runner has exited, SIGKILL to anything still left in the command's group or
   * terminal session. Resolves then.
   */
  kill(graceMs?: number): Promise<void>;
}

/** `text` without ANSI escape sequences (CSI such as colours, and OSC). */
export const stripAnsi = (text: string): string => text.replace(/\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g, '');

const signalName = (n: number): string => Object.entries(constants.signals).find(([, v]) => v === n)?.[0] ?? `SIG${n}`;

/** Runs `command args` in a new pseudo-terminal. */
export function spawnInPty(command: string, args: string[], opts: PtyOptions = {}): PtyProcess {
  const runner: ChildProcess = spawn('python3', [ptyRunPath, ...(opts.echo === false ? ['--no-echo'] : []), ...(opts.lingerMs !== undefined ? ['--linger', String(opts.lingerMs)] : []), '--', command, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const rawOutput: string[] = [];
  const runnerStderr: string[] = [];
  let partial = '';
  let pid: number | undefined;
  let exit: PtyExit | undefined;
  let runnerGone = false;
  let waiters: Array<() => void> = [];
  const notify = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  let resolveStarted: (pid: number) => void = () => {};
  let rejectStarted: (err: Error) => void = () => {};
  const started = new Promise<number>((res, rej) => ((resolveStarted = res), (rejectStarted = rej)));
  started.catch(() => {}); // a caller that never asks for it must not see an unhandled rejection
  let resolveExited: (e: PtyExit) => void = () => {};
  const exited = new Promise<PtyExit>((res) => (resolveExited = res));

  const takeLine = (raw: string) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const p = PID_RE.exec(line);
    if (p) {
      pid = Number(p[1]);
      resolveStarted(pid);
      return;
    }
    const e = EXIT_RE.exec(line);
    if (e) {
      exit = e[2] !== undefined ? { code: Number(e[2]), signal: null } : e[3] !== undefined ? { code: null, signal: signalName(Number(e[3])) } : { code: null, signal: null, error: 'the runner could not learn the status' };
      return;
    }
    rawOutput.push(line);
    output.push(stripAnsi(line));
  };

  runner.stdout!.setEncoding('utf8');
  runner.stdout!.on('data', (chunk: string) => {
    partial += chunk;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      takeLine(partial.slice(0, nl));
      partial = partial.slice(nl + 1);
    }
    notify();
  });
  runner.stderr!.setEncoding('utf8');
  runner.stderr!.on('data', (chunk: string) => runnerStderr.push(chunk));
  // Writes after the runner is gone must not crash the test process.
  runner.stdin!.on('error', () => {});

  const guard = () => {
    if (pid) {
      // The command's group, and whatever else is left in its terminal session (a process that
      // moved to a group of its own but did not setsid()).
      for (const target of [-pid, ...sessionPids(pid)]) try { process.kill(target, 'SIGKILL'); } catch { /* gone */ }
    }
    try { runner.kill('SIGKILL'); } catch { /* gone */ }
  };
  process.once('exit', guard);

  runner.once('close', (code, sig) => {
    runnerGone = true;
    if (partial) {
      takeLine(partial);
      partial = '';
    }
    if (pid === undefined) rejectStarted(new Error(`pty-run ended (${code ?? sig}) before starting the command: ${runnerStderr.join('')}`));
    if (!exit) exit = { code: null, signal: null, error: `pty-run ended (code ${code}, signal ${sig}) without the command's status: ${runnerStderr.join('').trim()}` };
    notify();
    resolveExited(exit);
  });

  const send = (line: string) => {
    if (!runnerGone && runner.stdin!.writable) runner.stdin!.write(`${line}\n`);
  };

  const tail = () => output.slice(-20).join('\n') + (partial ? `\n${partial}` : '');

  return {
    output,
    rawOutput,
    get partial() {
      return partial;
    },
    get pid() {
      return pid;
    },
    started,
    runnerPid: runner.pid!,
    exited,
    get exit() {
      return exit;
    },
    waitForOutput(pred, timeoutMs = 30_000, from = 0) {
      return new Promise<string>((resolve, reject) => {
        let seen = from;
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w !== check);
          reject(new Error(`no matching terminal line within ${timeoutMs} ms; last lines:\n${tail()}`));
        }, timeoutMs);
        const check = () => {
          for (; seen < output.length; seen++) {
            if (pred(output[seen]!)) {
              clearTimeout(timer);
              return resolve(output[seen]!);
            }
          }
          if (runnerGone) {
            clearTimeout(timer);
            return reject(new Error(`the command exited (${JSON.stringify(exit)}) without a matching line; last lines:\n${tail()}`));
          }
          waiters.push(check);
        };
        check();
      });
    },
    interrupt: () => send('INTR'),
    quit: () => send('QUIT'),
    eof: () => send('EOF'),
    type: (text: string) => send(`WRITE ${text}`),
    hangup: () => send('HUP'),
    async kill(graceMs = 8_000) {
      if (!runnerGone) {
        const closed = new Promise<void>((r) => runner.once('close', () => r()));
        runner.stdin!.end();
        const timer = setTimeout(guard, graceMs);
        await closed;
        clearTimeout(timer);
      }
      guard();
      process.removeListener('exit', guard);
    },
  };
}

/**
 * Live (non-zombie) processes whose session id is `sid` — for a command run by spawnInPty, its
 * pid: every process of the terminal's session that did not call setsid() itself.
 */
export function sessionPids(sid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Fields after "(comm) ": state ppid pgrp session ...
      const [state, , , session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(session) === sid && state !== 'Z' && state !== 'X') out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
