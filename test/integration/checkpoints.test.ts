/**
 * Checkpoints with real processes: `codegen-mcp up` with two workers, the coordinator's store in
 * its state folder, real Python and a wheel-installed package. Checkpoint on one worker, restore
 * on the other; content addressing; in-place restores; ordering behind the running task;
 * corruption refused with DATA_LOSS and nothing changed; bad input.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpc, grpcError, python, replyOf, runTask, startTask, TestSystem, unary, type TaskRun, type Wire } from '../helpers/system.js';
import { buildWheel } from '../helpers/wheels.js';

let sys: TestSystem;
let store: string;

beforeAll(async () => {
  sys = new TestSystem({ label: 'ckpt' });
  const wheels = path.join(sys.root, 'wheels');
  buildWheel(wheels, 'alpha_pkg', '1.2.3');
  await sys.startUp(2, { PIP_FIND_LINKS: wheels, PIP_NO_INDEX: '1' });
  store = path.join(sys.stateDir, 'checkpoints');
}, 120_000);

afterAll(async () => {
  await sys?.stop();
}, 120_000);

async function ok(run: Promise<TaskRun> | TaskRun, tool: string): Promise<Wire> {
  const r = await run;
  expect(r.error, 'task error').toBeUndefined();
  expect(r.result?.status).toBe('STATUS_SUCCESS');
  return replyOf(r, tool);
}
const tool = (sessionId: string, name: string, input: Wire) => runTask(sys.clients, { session_id: sessionId, typed_request: { [name]: input } });
const write = (sessionId: string, p: string, contents: string, extra: Wire = {}) => ok(tool(sessionId, 'fs_write', { path: p, contents, create_dirs: true, ...extra }), 'fs_write');
const read = async (sessionId: string, p: string) => (await ok(tool(sessionId, 'fs_read', { path: p }), 'fs_read'))['contents'] as string;
const py = async (sessionId: string, code: string) => (await ok(runTask(sys.clients, python(sessionId, code)), 'run_python'))['stdout'] as string;
const create = (extra: Wire = {}) => unary(sys.clients.sessions, 'CreateSession', extra) as Promise<Wire>;
const checkpoint = (sessionId: string, name = '') => unary(sys.clients.sessions, 'CheckpointSession', { session_id: sessionId, checkpoint_name: name }, { deadlineMs: 120_000 }) as Promise<Wire>;
const restore = (checkpointId: string, extra: Wire = {}) => unary(sys.clients.sessions, 'RestoreSession', { checkpoint_id: checkpointId, ...extra }, { deadlineMs: 120_000 }) as Promise<Wire>;
/** Every file of the workspace (not .venv) with its contents: what a restore must bring back exactly. */
const snapshot = (sessionId: string) =>
  py(sessionId, "import os, json\nout = {}\nfor d, ds, fs in os.walk('.'):\n    ds[:] = [x for x in ds if not (d == '.' and x == '.venv')]\n    for f in fs:\n        p = os.path.join(d, f)\n        out[p] = open(p, 'rb').read().hex() if not os.path.islink(p) else 'link:' + os.readlink(p)\nprint(json.dumps(out, sort_keys=True))").then((s) => JSON.parse(s) as Record<string, string>);
const blobPath = (sha: string) => path.join(store, 'blobs', sha.slice(0, 2), sha);

describe('checkpoint and restore', () => {
  let source: Wire;
  let first: Wire;
  let atFirst: Record<string, string>;

  it('checkpoints files, artifacts and a wheel-installed package, with a manifest checksum and real metadata', async () => {
    source = await create({ worker_id: 'worker-1', config: { env_vars: { GREETING: 'hello' } }, metadata: { project: 'p1' } });
    expect(source['worker_id']).toBe('worker-1');
    const installed = await ok(tool(source['session_id'], 'pkg_install', { packages: ['alpha_pkg'] }), 'pkg_install');
    expect(installed['installed'].map((p: Wire) => `${p.name}==${p.version}`)).toContain('alpha_pkg==1.2.3');
    await write(source['session_id'], 'src/main.py', 'print("main")\n');
    await write(source['session_id'], 'artifacts/report.txt', 'the report\n');
    await write(source['session_id'], 'data/blob.bin', Buffer.from([0, 1, 2, 255, 254]).toString('base64'), { encoding: 'base64' });
    await py(source['session_id'], "import os\nos.symlink('src/main.py', 'link-to-main')\nos.makedirs('empty/dir')");
    atFirst = await snapshot(source['session_id']);

    first = await checkpoint(source['session_id'], 'first one');
    expect(first['checkpoint_id']).toMatch(/^ckpt-[0-9a-f]{24}$/);
    expect(first['storage_url']).toMatch(/^file:\/\/.*\/checkpoints\/ckpt-[0-9a-f]{24}\.json$/);
    expect(Number(first['size_bytes'])).toBeGreaterThan(0);
    const m = first['metadata'];
    expect(m['session_id']).toBe(source['session_id']);
    expect(m['checksum_sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(m['installed_packages']).toContain('alpha_pkg==1.2.3');
    expect(m['modified_files']).toEqual(expect.arrayContaining(['src/main.py', 'artifacts/report.txt', 'data/blob.bin']));
    expect(m['env_vars']).toEqual({ GREETING: 'hello' });
    expect(m['not_saved']).toContain("the interpreter's memory");
    expect(Math.abs(Number(m['created_at_ms']) - Date.now())).toBeLessThan(60_000);
    // The manifest is a blob of the store named by the checksum, and it hashes to it.
    const manifest = JSON.parse(readFileSync(blobPath(m['checksum_sha256']), 'utf8'));
    const paths = manifest.entries.map((e: Wire) => `${e.root}:${e.path}`);
    expect(paths).toEqual(expect.arrayContaining(['workspace:src/main.py', 'workspace:artifacts/report.txt', 'workspace:link-to-main', 'workspace:empty/dir', 'packages:alpha_pkg/__init__.py']));
    expect(paths.some((p: string) => p.startsWith('workspace:.venv'))).toBe(false);
    const status = (await unary(sys.clients.sessions, 'GetSessionStatus', { session_id: source['session_id'] })) as Wire;
    expect(status['last_checkpoint_id']).toBe(first['checkpoint_id']);
  }, 120_000);

  it('a second checkpoint of an unchanged workspace adds only its manifest and record', async () => {
    const again = await checkpoint(source['session_id']);
    expect(again['metadata']['checksum_sha256']).toBe(first['metadata']['checksum_sha256']);
    expect(again['metadata']['modified_files']).toEqual([]);
    // The manifest is the same blob: only the record is new.
    expect(Number(again['size_bytes'])).toBeLessThan(4_096);
    const after = await checkpoint(source['session_id'], 'after-edit');
    await write(source['session_id'], 'src/main.py', 'print("changed")\n');
    const changed = await checkpoint(source['session_id']);
    expect(changed['metadata']['modified_files']).toEqual(['src/main.py']);
    expect(after['checkpoint_id']).not.toBe(changed['checkpoint_id']);
  }, 120_000);

  it('restores into a new session on the other worker: same files, package importable, env and metadata kept', async () => {
    const r = await restore(first['checkpoint_id'], { create_new_session: true, worker_id: 'worker-2' });
    expect(r['worker_id']).toBe('worker-2');
    expect(r['session_id']).not.toBe(source['session_id']);
    expect(r['state']).toBe('SESSION_STATE_READY');
    expect(r['checkpoint_metadata']['checksum_sha256']).toBe(first['metadata']['checksum_sha256']);
    expect(await snapshot(r['session_id'])).toEqual(atFirst);
    expect(await py(r['session_id'], 'import alpha_pkg, os\nprint(alpha_pkg.VERSION, os.environ.get("GREETING"))')).toBe('1.2.3 hello\n');
    const md = (await unary(sys.clients.sessions, 'GetSessionMetadata', { session_id: r['session_id'] })) as Wire;
    expect(md['metadata']).toMatchObject({ project: 'p1' });
    // A new session: it had no interpreter state to lose.
    expect(await ok(tool(r['session_id'], 'python_exec', { code: '1' }), 'python_exec')).toMatchObject({ result: '1', state_lost: false });
  }, 120_000);

  it('restores in place: later writes and deletes are undone, and the session keeps working', async () => {
    const exec = (code: string) => ok(tool(source['session_id'], 'python_exec', { code }), 'python_exec');
    expect(await exec('in_memory = 1')).toMatchObject({ state_lost: false });
    await write(source['session_id'], 'later.txt', 'written after the checkpoint');
    await py(source['session_id'], "import os\nos.remove('artifacts/report.txt')");
    const r = await restore(first['checkpoint_id']);
    expect(r['session_id']).toBe(source['session_id']);
    expect(r['worker_id']).toBe('worker-1');
    expect(await snapshot(source['session_id'])).toEqual(atFirst);
    expect(await py(source['session_id'], 'import alpha_pkg\nprint(alpha_pkg.value)')).toBe('alpha_pkg-1.2.3\n');
    // A checkpoint holds no interpreter memory: the restore discarded it, and the next python_exec says so.
    const after = await exec('"in_memory" in globals()');
    expect(after).toMatchObject({ result: 'False', state_lost: true });
    expect(after['state_lost_reason']).toContain(`restored from checkpoint ${first['checkpoint_id']}`);
  }, 120_000);

  it('a checkpoint waits for the running task, and a task sent during the checkpoint waits for it', async () => {
    const s = await create();
    const slow = startTask(sys.clients, python(s['session_id'], "import time\ntime.sleep(1.5)\nopen('slow.txt', 'w').write('done')"));
    await new Promise((r) => setTimeout(r, 300));
    const cp = checkpoint(s['session_id'], 'ordered');
    await new Promise((r) => setTimeout(r, 200));
    const later = write(s['session_id'], 'later.txt', 'after');
    const [c] = await Promise.all([cp, slow.done, later]);
    const r = await restore(c['checkpoint_id'], { create_new_session: true });
    const files = await snapshot(r['session_id']);
    expect(Object.keys(files)).toContain('./slow.txt');
    expect(Object.keys(files)).not.toContain('./later.txt');
  }, 120_000);

  it('destroy with save_checkpoint returns a checkpoint that restores the destroyed session', async () => {
    const s = await create();
    await write(s['session_id'], 'keep.txt', 'kept');
    await write(s['session_id'], 'artifacts/report.csv', 'a,b\n');
    await write(s['session_id'], 'artifacts/plots/fig 1.png', 'png');
    const d = (await unary(sys.clients.sessions, 'DestroySession', { session_id: s['session_id'], save_checkpoint: true }, { deadlineMs: 120_000 })) as Wire;
    expect(d['destroyed']).toBe(true);
    expect(d['checkpoint_id']).toMatch(/^ckpt-/);
    // The artifacts it removed from the worker, which the checkpoint keeps.
    expect(d['artifacts']).toEqual(['plots/fig 1.png', 'report.csv']);
    const gone = await grpcError(restore(d['checkpoint_id']));
    expect(gone.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(gone.details).toMatch(/no longer exists.*create_new_session/);
    const r = await restore(d['checkpoint_id'], { create_new_session: true });
    expect(await read(r['session_id'], 'keep.txt')).toBe('kept');
    expect(await read(r['session_id'], 'artifacts/report.csv')).toBe('a,b\n');
    // A destroy without a checkpoint lists them too; a session with none answers an empty list.
    const plain = (await unary(sys.clients.sessions, 'DestroySession', { session_id: r['session_id'] })) as Wire;
    expect(plain['artifacts']).toEqual(['plots/fig 1.png', 'report.csv']);
    const bare = await create();
    expect(((await unary(sys.clients.sessions, 'DestroySession', { session_id: bare['session_id'] })) as Wire)['artifacts'] ?? []).toEqual([]);
  }, 120_000);
});

describe('damaged checkpoints', () => {
  it('a corrupt file blob fails with DATA_LOSS naming its checksum; the target is untouched and no session is left', async () => {
    const s = await create();
    await write(s['session_id'], 'precious.txt', 'precious bytes');
    const c = await checkpoint(s['session_id']);
    const manifest = JSON.parse(readFileSync(blobPath(c['metadata']['checksum_sha256']), 'utf8'));
    const sha = manifest.entries.find((e: Wire) => e.path === 'precious.txt').sha256 as string;
    writeFileSync(blobPath(sha), 'tampered');
    await write(s['session_id'], 'precious.txt', 'edited since');
    const before = await snapshot(s['session_id']);
    const sessionsBefore = ((await unary(sys.clients.sessions, 'ListSessions', {})) as Wire)['sessions'].length;

    const inPlace = await grpcError(restore(c['checkpoint_id']));
    expect(inPlace.code).toBe(grpc.status.DATA_LOSS);
    expect(inPlace.details).toContain(sha);
    expect(inPlace.details).toContain('precious.txt');
    expect(await snapshot(s['session_id'])).toEqual(before);

    const asNew = await grpcError(restore(c['checkpoint_id'], { create_new_session: true }));
    expect(asNew.code).toBe(grpc.status.DATA_LOSS);
    const after = ((await unary(sys.clients.sessions, 'ListSessions', {})) as Wire)['sessions'];
    expect(after.length).toBe(sessionsBefore);
    // The session still works, and a good checkpoint of it still restores.
    const good = await checkpoint(s['session_id']);
    await write(s['session_id'], 'precious.txt', 'again');
    await restore(good['checkpoint_id']);
    expect(await read(s['session_id'], 'precious.txt')).toBe('edited since');
  }, 120_000);

  it('a manifest that does not match checksum_sha256, a missing blob and an unreadable record are DATA_LOSS', async () => {
    const s = await create();
    await write(s['session_id'], 'a.txt', 'alpha');
    const c1 = await checkpoint(s['session_id']);
    const sum = c1['metadata']['checksum_sha256'] as string;
    const text = readFileSync(blobPath(sum), 'utf8');
    writeFileSync(blobPath(sum), text.replace('a.txt', 'b.txt'));
    const e1 = await grpcError(restore(c1['checkpoint_id']));
    expect(e1.code).toBe(grpc.status.DATA_LOSS);
    expect(e1.details).toContain(`checksum_sha256 ${sum}`);
    writeFileSync(blobPath(sum), text);

    const aSha = JSON.parse(text).entries.find((e: Wire) => e.path === 'a.txt').sha256 as string;
    const { rmSync } = await import('node:fs');
    rmSync(blobPath(aSha));
    const e2 = await grpcError(restore(c1['checkpoint_id']));
    expect(e2.code).toBe(grpc.status.DATA_LOSS);
    expect(e2.details).toMatch(new RegExp(`a\\.txt.*${aSha}.*missing`));

    const c2 = await checkpoint(s['session_id']);
    writeFileSync(path.join(store, 'checkpoints', `${c2['checkpoint_id']}.json`), '{"not": "a record"');
    const e3 = await grpcError(restore(c2['checkpoint_id']));
    expect(e3.code).toBe(grpc.status.DATA_LOSS);
    expect(e3.details).toContain(c2['checkpoint_id']);
    // Deleting a damaged checkpoint works.
    expect(((await unary(sys.clients.sessions, 'DeleteCheckpoint', { checkpoint_id: c2['checkpoint_id'] })) as Wire)['deleted']).toBe(true);
    expect(await read(s['session_id'], 'a.txt')).toBe('alpha');
  }, 120_000);
});

describe('listing, deleting and bad input', () => {
  it('lists by session and all, deletes, and answers NOT_FOUND and INVALID_ARGUMENT with the field named', async () => {
    const s = await create();
    const c = await checkpoint(s['session_id'], 'listed');
    const mine = ((await unary(sys.clients.sessions, 'ListCheckpoints', { session_id: s['session_id'] })) as Wire)['checkpoints'];
    expect(mine.map((x: Wire) => x.checkpoint_id)).toEqual([c['checkpoint_id']]);
    expect(mine[0]).toMatchObject({ name: 'listed', session_id: s['session_id'] });
    const all = ((await unary(sys.clients.sessions, 'ListCheckpoints', {})) as Wire)['checkpoints'];
    expect(all.length).toBeGreaterThan(1);

    expect(((await unary(sys.clients.sessions, 'DeleteCheckpoint', { checkpoint_id: c['checkpoint_id'] })) as Wire)['deleted']).toBe(true);
    const e = await grpcError(unary(sys.clients.sessions, 'DeleteCheckpoint', { checkpoint_id: c['checkpoint_id'] }));
    expect(e.code).toBe(grpc.status.NOT_FOUND);
    expect(e.details).toContain('checkpoint_id');
    const r = await grpcError(restore('ckpt-nope'));
    expect(r.code).toBe(grpc.status.NOT_FOUND);
    const bad = await grpcError(restore('../../etc/passwd'));
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toContain('checkpoint_id');
    const unknown = await grpcError(checkpoint('sess-unknown'));
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    const long = await grpcError(checkpoint(s['session_id'], 'x'.repeat(129)));
    expect(long.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(long.details).toContain('checkpoint_name');
    const unsafe = await grpcError(checkpoint(s['session_id'], '../evil'));
    expect(unsafe.code).toBe(grpc.status.INVALID_ARGUMENT);
    // None of it hurt the session or the store.
    expect(await py(s['session_id'], 'print(1)')).toBe('1\n');
    expect(readdirSync(path.join(store, 'tmp'))).toEqual([]);
  }, 120_000);
});
