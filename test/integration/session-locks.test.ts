import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CodegenError } from '../../src/domain/errors.js';
import { SessionLocks, type SessionLocksOptions } from '../../src/worker/session-locks.js';
import { eventually, isAlive, pidsWithToken, uniqueToken } from '../helpers/processes.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const python = process.env['PYTHON'] ?? 'python3';

let token: string;
let root: string;
let dir: string;
let started: SessionLocks[];
let owners: ChildProcessWithoutNullStreams[];

beforeEach(() => {
  token = uniqueToken('locks');
  root = mkdtempSync(path.join(os.tmpdir(), `${token}-`));
  dir = path.join(root, '.sessions');
  started = [];
  owners = [];
});

afterEach(async () => {
  for (const locks of started) await locks.stop();
  for (const owner of owners) owner.stdin.end();
  // Every helper and owner has the token in its command line (the folder's name).
  await eventually(() => pidsWithToken(token).length === 0, 5000);
  const leftovers = pidsWithToken(token);
  for (const pid of leftovers) {
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(root, { recursive: true, force: true });
  expect(leftovers, 'processes started by the test outlived it').toEqual([]);
});

async function locksOn(opts: Partial<SessionLocksOptions> = {}): Promise<SessionLocks> {
  const locks = new SessionLocks({ dir, python, ...opts });
  started.push(locks);
  await locks.start();
  return locks;
}

interface Owner {
  child: ChildProcessWithoutNullStreams;
  pid: number;
  helperPid: number;
  taken: Record<string, boolean>;
}

/** Another worker, as a separate Node process running the real SessionLocks (test/fixtures/lock-owner.mjs). */
async function ownerTaking(ids: string[]): Promise<Owner> {
  const loader = pathToFileURL(path.join(fixtures, 'ts-loader.mjs')).href;
  const child = spawn(process.execPath, ['--import', loader, path.join(fixtures, 'lock-owner.mjs'), dir, python, ...ids], { stdio: ['pipe', 'pipe', 'pipe'] });
  owners.push(child);
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    child.on('close', (code) => reject(new Error(`lock owner exited with ${code} before it was ready: ${stderr}`)));
  });
  const ready = JSON.parse(line) as Omit<Owner, 'child'>;
  return { child, ...ready };
}

const exitOf = (child: ChildProcessWithoutNullStreams) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.on('close', (code) => resolve(code));
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const rejection = async (p: Promise<unknown>): Promise<CodegenError> => {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(CodegenError);
    return err as CodegenError;
  }
  throw new Error('expected a rejection');
};

describe('session locks', () => {
  it("gives a session's lock to only one of two workers, and unlocking lets the other take it", async () => {
    const a = await locksOn();
    const b = await locksOn();
    expect(await a.tryLock('sess-1')).toBe(true);
    expect(await b.tryLock('sess-1')).toBe(false);
    expect(await a.tryLock('sess-1')).toBe(true); // again: still ours
    expect(a.held()).toEqual(['sess-1']);
    expect(b.held()).toEqual([]);
    expect(existsSync(path.join(dir, 'sess-1.lock'))).toBe(true);

    await a.unlock('sess-1');
    await a.unlock('sess-1'); // idempotent
    expect(a.held()).toEqual([]);
    expect(await b.tryLock('sess-1')).toBe(true);
    expect(await a.tryLock('sess-1')).toBe(false);
    expect(b.held()).toEqual(['sess-1']);
  });

  it('answers many concurrent requests, each with its own answer', async () => {
    const a = await locksOn();
    const b = await locksOn();
    const ids = Array.from({ length: 60 }, (_, i) => `sess-${i}`);
    const [mine, theirs] = await Promise.all([Promise.all(ids.map((id) => a.tryLock(id))), Promise.all(ids.slice(0, 30).map((id) => a.tryLock(id)))]);
    expect(mine.every(Boolean)).toBe(true);
    expect(theirs.every(Boolean)).toBe(true);
    expect(await Promise.all(ids.map((id) => b.tryLock(id)))).toEqual(ids.map(() => false));
    await Promise.all(ids.filter((_, i) => i % 2 === 0).map((id) => a.unlock(id)));
    expect(a.held()).toEqual(ids.filter((_, i) => i % 2 === 1).sort());
    expect(await Promise.all(ids.map((id) => b.tryLock(id)))).toEqual(ids.map((_, i) => i % 2 === 0));
  });

  it("lets another worker take a killed owner's locks within a couple of seconds", async () => {
    const owner = await ownerTaking(['sess-a', 'sess-b']);
    expect(owner.taken).toEqual({ 'sess-a': true, 'sess-b': true });
    const other = await locksOn();
    expect(await other.tryLock('sess-a')).toBe(false);
    expect(await other.tryLock('sess-b')).toBe(false);

    const killedAt = Date.now();
    process.kill(owner.pid, 'SIGKILL');
    // Its helper sees its stdin close and exits, releasing the locks.
    expect(await eventually(() => !isAlive(owner.helperPid), 2000)).toBe(true);
    expect(await other.tryLock('sess-a')).toBe(true);
    expect(await other.tryLock('sess-b')).toBe(true);
    expect(Date.now() - killedAt).toBeLessThan(2000);
    await exitOf(owner.child);
  });

  it('keeps a stalled owner’s locks held until it continues and stops', async () => {
    const owner = await ownerTaking(['sess-a']);
    const other = await locksOn();
    // Frozen as `docker pause` would: the worker and its helper.
    process.kill(owner.pid, 'SIGSTOP');
    process.kill(owner.helperPid, 'SIGSTOP');
    try {
      const until = Date.now() + 1500;
      while (Date.now() < until) {
        expect(await other.tryLock('sess-a')).toBe(false);
        await sleep(100);
      }
    } finally {
      process.kill(owner.helperPid, 'SIGCONT');
      process.kill(owner.pid, 'SIGCONT');
    }
    expect(await other.tryLock('sess-a')).toBe(false);

    owner.child.stdin.end(); // the owner stops normally
    expect(await exitOf(owner.child)).toBe(0);
    expect(isAlive(owner.helperPid)).toBe(false);
    expect(await other.tryLock('sess-a')).toBe(true);
  });

  it('calls onLost once and rejects pending and later calls when the helper is killed', async () => {
    const reasons: string[] = [];
    const a = await locksOn({ onLost: (reason) => reasons.push(reason) });
    const b = await locksOn();
    expect(await a.tryLock('sess-held')).toBe(true);
    const helper = a.pid!;

    process.kill(helper, 'SIGSTOP'); // requests queue up unanswered
    const pending = [a.tryLock('sess-1'), a.tryLock('sess-2'), a.unlock('sess-held')];
    await sleep(100);
    process.kill(helper, 'SIGKILL');

    for (const p of pending) {
      const err = await rejection(p);
      expect(err.code).toBe('INTERNAL');
      expect(err.message).toContain('SIGKILL');
    }
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toContain(`pid ${helper}`);
    expect(reasons[0]).toContain('SIGKILL');
    expect(a.held()).toEqual([]);
    expect(a.pid).toBeUndefined();
    expect((await rejection(a.tryLock('sess-3'))).code).toBe('INTERNAL');

    // The kernel released the lock with the helper; a worker may start a new helper.
    expect(await b.tryLock('sess-held')).toBe(true);
    await a.start();
    expect(await a.tryLock('sess-held')).toBe(false);
    expect(await a.tryLock('sess-3')).toBe(true);
    expect(reasons).toHaveLength(1);
  });

  it('stop releases every lock, ends the helper, and later calls are refused', async () => {
    const reasons: string[] = [];
    const a = await locksOn({ onLost: (reason) => reasons.push(reason) });
    const b = await locksOn();
    const calls = [a.tryLock('sess-1'), a.tryLock('sess-2')];
    const helper = a.pid!;
    await a.stop(); // requests already sent are answered first
    expect(await Promise.all(calls)).toEqual([true, true]);
    expect(isAlive(helper)).toBe(false);
    expect(a.held()).toEqual([]);
    expect(await b.tryLock('sess-1')).toBe(true);
    expect(await b.tryLock('sess-2')).toBe(true);
    expect((await rejection(a.tryLock('sess-1'))).code).toBe('FAILED_PRECONDITION');
    await a.stop();
    expect(reasons).toEqual([]);
  });

  it('removes the lock file only while holding its lock, and the next worker takes a fresh one', async () => {
    const a = await locksOn();
    const b = await locksOn();
    const file = path.join(dir, 'sess-1.lock');
    expect(await a.tryLock('sess-1')).toBe(true);
    await a.unlock('sess-1', { removeFile: true });
    expect(existsSync(file)).toBe(false);
    expect(a.held()).toEqual([]);

    expect(await b.tryLock('sess-1')).toBe(true);
    expect(existsSync(file)).toBe(true);
    await a.unlock('sess-1', { removeFile: true }); // not ours: left alone
    expect(existsSync(file)).toBe(true);
    expect(await a.tryLock('sess-1')).toBe(false);
  });

  it('never lets two workers hold one session at once while they take it and remove its lock file in a tight loop', async () => {
    // Removing a lock file races with a worker that opened it just before: without the helper's
    // check that the path still names the file it locked, both would hold "the" lock.
    const workers = await Promise.all([0, 1, 2, 3].map(() => locksOn()));
    let owner: number | undefined;
    let overlaps = 0;
    let wins = 0;
    const end = Date.now() + 3000;
    await Promise.all(
      workers.map(async (locks, i) => {
        while (Date.now() < end) {
          if (!(await locks.tryLock('sess-1'))) continue;
          wins++;
          if (owner !== undefined) overlaps++;
          owner = i;
          await new Promise((r) => setImmediate(r));
          owner = undefined; // cleared before the unlock is even sent
          await locks.unlock('sess-1', { removeFile: true });
        }
      }),
    );
    expect(wins).toBeGreaterThan(100);
    expect(overlaps).toBe(0);
  });

  it('raises the helper’s open-file limit, so it holds more locks than the soft limit it started with', async () => {
    // An interpreter started with a soft limit of 64 open files.
    const lowLimitPython = path.join(root, 'python-low-nofile');
    writeFileSync(lowLimitPython, `#!/bin/sh\nulimit -Sn 64\nexec ${python} "$@"\n`);
    chmodSync(lowLimitPython, 0o755);
    const a = await locksOn({ python: lowLimitPython });
    const limits = readFileSync(`/proc/${a.pid}/limits`, 'utf8');
    const [, soft, hard] = /Max open files\s+(\S+)\s+(\S+)/.exec(limits)!;
    expect(soft).toBe(hard);
    if (Number(hard) < 400) return; // a host whose hard limit is this low cannot show more
    const ids = Array.from({ length: 300 }, (_, i) => `sess-${i}`);
    expect((await Promise.all(ids.map((id) => a.tryLock(id)))).every(Boolean)).toBe(true);
    expect(a.held()).toHaveLength(300);
  });

  it('refuses ids that are not session ids, and says which interpreter could not be run', async () => {
    const a = await locksOn();
    for (const bad of ['../x', 'a/b', '..', '', 'sess 1', 'a..b']) {
      const err = await rejection(a.tryLock(bad));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toContain(JSON.stringify(bad));
    }
    expect(existsSync(path.join(root, 'x.lock'))).toBe(false);

    const missing = path.join(root, 'no-such-python');
    const broken = new SessionLocks({ dir, python: missing });
    started.push(broken);
    const err = await rejection(broken.start());
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toContain(missing);
    expect(err.message).toContain('ENOENT');
    expect((await rejection(new SessionLocks({ dir, python }).tryLock('sess-1'))).code).toBe('FAILED_PRECONDITION');
  });
});
