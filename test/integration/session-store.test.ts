import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CodegenError } from '../../src/domain/errors.js';
import { SessionStore, sessionsDirOf, type StoredSession } from '../../src/worker/session-store.js';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

let token: string;
let base: string;
let dir: string;
beforeEach(() => {
  token = uniqueToken('store');
  base = mkdtempSync(path.join(os.tmpdir(), `${token}-`));
  dir = sessionsDirOf(base);
});
afterEach(() => {
  const leftovers = pidsWithToken(token);
  for (const pid of leftovers) process.kill(pid, 'SIGKILL');
  rmSync(base, { recursive: true, force: true });
  expect(leftovers, 'processes started by the test outlived it').toEqual([]);
});

const session = (id: string, over: Partial<StoredSession> = {}): StoredSession => ({
  version: 1,
  sessionId: id,
  workspaceId: id,
  userId: 'user-1',
  tenant: 'acme',
  config: { env_vars: { TOKEN: 'secret' }, allow_network: false, language: 'python' },
  metadata: { purpose: 'test' },
  metadataVersion: 1,
  createdAtMs: 1_700_000_000_000,
  lastActivityMs: 1_700_000_001_000,
  restartedAtMs: 0,
  survivalNote: '',
  idleTimeoutMs: 900_000,
  ...over,
});

const refusal = async (p: Promise<unknown>): Promise<CodegenError> => {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(CodegenError);
    return err as CodegenError;
  }
  throw new Error('expected a refusal');
};

describe('session store', () => {
  it('reads back and lists what it wrote, and a second write replaces the first', async () => {
    const store = new SessionStore(base);
    expect(await store.list()).toEqual({ sessions: [], problems: [], strayLocks: [] });
    expect(await store.read('sess-b')).toBeUndefined();

    await store.write(session('sess-b'));
    await store.write(session('sess-a', { metadata: { k: 'v' }, config: { env_vars: {}, allow_network: true, language: 'python' } }));
    expect(await store.read('sess-b')).toEqual(session('sess-b'));
    await store.write(session('sess-b', { lastActivityMs: 1_700_000_009_000, survivalNote: 'restarted once', restartedAtMs: 1_700_000_008_000 }));

    const listing = await store.list();
    expect(listing.problems).toEqual([]);
    expect(listing.sessions.map((s) => s.sessionId)).toEqual(['sess-a', 'sess-b']);
    expect(listing.sessions[1]).toEqual(session('sess-b', { lastActivityMs: 1_700_000_009_000, survivalNote: 'restarted once', restartedAtMs: 1_700_000_008_000 }));
    // Beside the workspaces, not in one; readable only by the worker (env_vars may be secrets).
    expect(readdirSync(dir).sort()).toEqual(['sess-a.json', 'sess-b.json']);
    expect(statSync(path.join(dir, 'sess-a.json')).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('removes a description idempotently and leaves its lock file to the session locks', async () => {
    const store = new SessionStore(base);
    await store.write(session('sess-1'));
    writeFileSync(path.join(dir, 'sess-1.lock'), '');
    await store.remove('sess-1');
    await store.remove('sess-1');
    expect(await store.read('sess-1')).toBeUndefined();
    expect(existsSync(path.join(dir, 'sess-1.lock'))).toBe(true);
    expect(await store.list()).toEqual({ sessions: [], problems: [], strayLocks: ['sess-1'] });
  });

  it('reports malformed, mismatched and unsafely named files without deleting them, and still lists the good ones', async () => {
    const store = new SessionStore(base);
    await store.write(session('sess-good'));
    writeFileSync(path.join(dir, 'sess-torn.json'), '{"version": 1, "sessionId": "sess-t');
    writeFileSync(path.join(dir, 'sess-shape.json'), JSON.stringify({ ...session('sess-shape'), config: { env_vars: {}, allow_network: 'yes', language: 'python' } }));
    writeFileSync(path.join(dir, 'sess-other.json'), JSON.stringify(session('sess-else')));
    writeFileSync(path.join(dir, '..sneaky.json'), JSON.stringify(session('sneaky')));
    writeFileSync(path.join(dir, 'has space.json'), JSON.stringify(session('has-space')));
    writeFileSync(path.join(dir, 'notes.txt'), 'hello');
    mkdirSync(path.join(dir, 'sess-dir.json'));
    symlinkSync(path.join(dir, 'sess-good.json'), path.join(dir, 'sess-link.json'));
    const before = readdirSync(dir).sort();

    const listing = await store.list();
    expect(listing.sessions.map((s) => s.sessionId)).toEqual(['sess-good']);
    const byFile = Object.fromEntries(listing.problems.map((p) => [p.file, p.problem]));
    expect(Object.keys(byFile).sort()).toEqual(['..sneaky.json', 'has space.json', 'notes.txt', 'sess-dir.json', 'sess-link.json', 'sess-other.json', 'sess-shape.json', 'sess-torn.json']);
    expect(byFile['sess-torn.json']).toMatch(/not valid JSON/);
    expect(byFile['sess-shape.json']).toMatch(/config\.allow_network/);
    expect(byFile['sess-other.json']).toMatch(/describes session "sess-else"/);
    expect(byFile['..sneaky.json']).toMatch(/not a valid session id/);
    expect(byFile['has space.json']).toMatch(/not a valid session id/);
    expect(byFile['sess-dir.json']).toMatch(/not a regular file/);
    expect(byFile['sess-link.json']).toMatch(/symbolic link/);
    expect(readdirSync(dir).sort()).toEqual(before);

    const err = await refusal(store.read('sess-torn'));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toContain('sess-torn.json');
  });

  it('refuses ids with .. or / before they become file names, naming the id', async () => {
    const store = new SessionStore(base);
    for (const bad of ['..', '../escape', 'a/b', '/abs', 'a..b', '.hidden', '']) {
      for (const call of [store.read(bad), store.remove(bad), store.write(session(bad))]) {
        const err = await refusal(call);
        expect(err.code).toBe('INVALID_ARGUMENT');
        expect(err.message).toContain(JSON.stringify(bad));
      }
    }
    const err = await refusal(store.write({ ...session('sess-1'), idleTimeoutMs: -1 }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('idleTimeoutMs');
    expect(existsSync(path.join(base, 'escape.json'))).toBe(false);
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
  });

  it('ignores a fresh temp file left by a write and removes one older than a minute', async () => {
    const store = new SessionStore(base);
    await store.write(session('sess-1'));
    const fresh = path.join(dir, 'sess-1.json.tmp-0123456789abcdef');
    const stale = path.join(dir, 'sess-2.json.tmp-fedcba9876543210');
    writeFileSync(fresh, '{"version": 1, "sess');
    writeFileSync(stale, '{"version": 1, "sess');
    const twoMinutesAgo = new Date(Date.now() - 120_000);
    utimesSync(stale, twoMinutesAgo, twoMinutesAgo);

    const listing = await store.list();
    expect(listing).toEqual({ sessions: [session('sess-1')], problems: [], strayLocks: [] });
    expect(existsSync(fresh)).toBe(true);
    expect(existsSync(stale)).toBe(false);
  });

  /** One complete description of sess-1, as session-writer.mjs writes them. */
  const expectWhole = (listing: Awaited<ReturnType<SessionStore['list']>>) => {
    expect(listing.problems).toEqual([]);
    expect(listing.sessions).toHaveLength(1);
    const s = listing.sessions[0]!;
    const n = s.metadataVersion;
    expect(s.metadata['n']).toBe(String(n));
    expect(s.metadata['pad']).toHaveLength(((n % 5) + 1) * 100_000);
  };

  it('never shows a torn description to a reader, while a writer runs or after it is killed mid-write', async () => {
    const store = new SessionStore(base);
    const loader = pathToFileURL(path.join(fixtures, 'ts-loader.mjs')).href;
    for (let round = 0; round < 4; round++) {
      const child = spawn(process.execPath, ['--import', loader, path.join(fixtures, 'session-writer.mjs'), base, 'sess-1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (c: Buffer) => c.toString().includes('writing') && resolve());
        child.on('close', (code) => reject(new Error(`writer exited with ${code}: ${stderr}`)));
      });
      // Read while it writes, as another worker's list() would, then kill it at a random moment.
      const killAt = Date.now() + 100 + Math.random() * 300;
      while (Date.now() < killAt) expectWhole(await store.list());
      child.kill('SIGKILL');
      await closed;
      expectWhole(await store.list());
      expect(JSON.parse(readFileSync(path.join(dir, 'sess-1.json'), 'utf8'))).toEqual((await store.read('sess-1'))!);
    }
    expect(await eventually(() => pidsWithToken(token).length === 0)).toBe(true);
  });
});
