/**
 * The pseudo-terminal harness (test/helpers/pty.ts): a command runs as the foreground process
 * group of a real pty, and `interrupt()` is a user's Ctrl-C — the line discipline, not this
 * test, sends SIGINT to every process of that group.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, isAlive } from '../helpers/processes.js';
import { sessionPids, spawnInPty, type PtyProcess } from '../helpers/pty.js';

const running: PtyProcess[] = [];
const start = (command: string, args: string[], opts: { echo?: boolean } = {}): PtyProcess => {
  const p = spawnInPty(command, args, opts);
  running.push(p);
  return p;
};

/** Every process of the command's terminal session, seen while it runs. */
async function sessionOf(p: PtyProcess, atLeast: number): Promise<number[]> {
  const sid = await p.started;
  let pids: number[] = [];
  await eventually(() => (pids = sessionPids(sid)).length >= atLeast, 5_000, 20);
  return pids;
}

/**
 * Waits until a process of the session runs `comm` (it has exec'd): a shell that gets SIGINT
 * between its "echo ready" and starting `sleep` runs its trap only after that sleep ends.
 */
async function untilRunning(p: PtyProcess, comm: string): Promise<void> {
  const sid = await p.started;
  const comms = () => sessionPids(sid).map((pid) => { try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return ''; } });
  expect(await eventually(() => comms().includes(comm), 10_000, 20), `${comm} running in the terminal's session`).toBe(true);
}

async function expectNoneLeft(pids: number[]): Promise<void> {
  const gone = await eventually(() => pids.every((pid) => !isAlive(pid)), 5_000, 50);
  expect(gone ? [] : pids.filter(isAlive), 'processes outlived the command').toEqual([]);
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.kill()));
});

describe('spawnInPty', () => {
  it('delivers Ctrl-C through the terminal: a shell trapping INT prints got-int and exits 7', async () => {
    const p = start('sh', ['-c', 'trap "echo got-int; exit 7" INT; echo ready; sleep 30']);
    await p.waitForOutput((l) => l === 'ready', 10_000);
    await untilRunning(p, 'sleep');
    const pids = await sessionOf(p, 2); // sh and its sleep
    expect(pids).toContain(p.pid);
    p.interrupt();
    await p.waitForOutput((l) => l.includes('got-int'), 10_000);
    expect(await p.exited).toEqual({ code: 7, signal: null });
    await expectNoneLeft(pids);
  });

  it('a command that handles nothing dies by SIGINT', async () => {
    const p = start('sh', ['-c', 'echo ready; sleep 30']);
    await p.waitForOutput((l) => l === 'ready', 10_000);
    await untilRunning(p, 'sleep');
    const pids = await sessionOf(p, 2);
    p.interrupt();
    expect(await p.exited).toEqual({ code: null, signal: 'SIGINT' });
    await expectNoneLeft(pids);
  });

  it('the SIGINT reaches every process of the foreground group directly, not through the parent', async () => {
    // The parent only logs the signal and keeps waiting; the child has its own handler (handlers
    // are not inherited across exec), so only a SIGINT sent to the child itself ends it with 3.
    const child = 'trap "echo child-int; exit 3" INT; echo child-ready; sleep 30';
    const p = start('sh', ['-c', `trap "echo parent-int" INT; sh -c '${child}'; echo "child-status $?"; exit 0`]);
    await p.waitForOutput((l) => l === 'child-ready', 10_000);
    await untilRunning(p, 'sleep');
    const pids = await sessionOf(p, 3); // sh, sh, sleep
    p.interrupt();
    await p.waitForOutput((l) => l.startsWith('child-status'), 10_000);
    expect(p.output.some((l) => l.endsWith('child-int'))).toBe(true); // the echo of ^C precedes it
    expect(p.output).toContain('parent-int');
    expect(p.output).toContain('child-status 3');
    expect(await p.exited).toEqual({ code: 0, signal: null });
    await expectNoneLeft(pids);
  });

  it('reports the exit code of a command that ends by itself, with its output as lines', async () => {
    const p = start('sh', ['-c', 'echo one; echo two >&2; printf "no newline"; exit 4']);
    expect(await p.exited).toEqual({ code: 4, signal: null });
    expect(p.output).toEqual(['one', 'two', 'no newline']);
  });

  it('kill() ends a command that ignores HUP, INT and TERM, with everything it started', async () => {
    const p = start('sh', ['-c', 'trap "" HUP INT TERM; echo ready; sleep 60']);
    await p.waitForOutput((l) => l === 'ready', 10_000);
    const pids = await sessionOf(p, 2);
    p.interrupt(); // ignored
    await new Promise((r) => setTimeout(r, 300));
    expect(p.exit).toBeUndefined();
    const t0 = Date.now();
    await p.kill();
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await p.exited).toEqual({ code: null, signal: 'SIGKILL' });
    await expectNoneLeft([...pids, p.runnerPid]);
  }, 30_000);

  it('echoes Ctrl-C as ^C like a login terminal, and not with echo: false', async () => {
    for (const echo of [true, false]) {
      const p = start('sh', ['-c', 'trap "echo got-int; exit 0" INT; echo ready; sleep 30'], { echo });
      await p.waitForOutput((l) => l === 'ready', 10_000);
      await untilRunning(p, 'sleep');
      p.interrupt();
      expect(await p.exited).toEqual({ code: 0, signal: null });
      expect(p.output.at(-1)).toBe(echo ? '^Cgot-int' : 'got-int');
    }
  });

  it('a command that cannot be started exits 127', async () => {
    const p = start('/nonexistent/command', []);
    expect((await p.exited).code).toBe(127);
  });
});
