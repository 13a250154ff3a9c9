/**
 * Crashes in the middle of a checkpoint, with real processes: the worker SIGKILLed while it
 * sends blobs, then the coordinator SIGKILLed while it takes them. Every call ends with an error
 * that says why; no checkpoint that looks complete is left; every blob in the store is whole
 * (it hashes to its name); and after the restarts a checkpoint works and restores exactly.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpcError, python, replyOf, runTask, sessionStatus, TestSystem, unary, until, type Wire } from '../helpers/system.js';

let sys: TestSystem;
const fast = { HEARTBEAT_INTERVAL_SECONDS: '1', HEARTBEAT_MISSES: '2', SESSION_RECOVERY_SECONDS: '0', RECOVERY_GRACE_SECONDS: '2' };
const store = () => path.join(sys.stateDir, 'checkpoints');

beforeAll(async () => {
  sys = new TestSystem({ label: 'ckpt-crash' });
  await sys.startCoordinator(fast);
  await sys.startWorker('w1', fast);
}, 120_000);

afterAll(async () => {
  await sys?.stop();
}, 120_000);

/** A workspace big enough that its checkpoint takes a while: `mb` MB of incompressible data, and its sha256. */
async function bigSession(mb: number): Promise<{ sid: string; sha: string }> {
  const s = (await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'w1' })) as Wire;
  const out = await runTask(sys.clients, python(s['session_id'], `import os, hashlib\nh = hashlib.sha256()\nwith open('big.bin', 'wb') as f:\n    for _ in range(${mb}):\n        b = os.urandom(1 << 20)\n        h.update(b)\n        f.write(b)\nprint(h.hexdigest())`, { timeout_seconds: 300 }));
  return { sid: s['session_id'], sha: (replyOf(out, 'run_python')['stdout'] as string).trim() };
}

/** Every blob of the store hashes to its name, and nothing is left half-written in tmp/. */
function storeIsWhole(): void {
  const blobs = path.join(store(), 'blobs');
  for (const prefix of readdirSync(blobs)) {
    for (const name of readdirSync(path.join(blobs, prefix))) {
      expect(createHash('sha256').update(readFileSync(path.join(blobs, prefix, name))).digest('hex'), `blob ${name}`).toBe(name);
    }
  }
}

const checkpointsOf = async (sid: string) => ((await unary(sys.clients.sessions, 'ListCheckpoints', { session_id: sid })) as Wire)['checkpoints'] as Wire[];

/** Waits until the store has started taking this checkpoint's data (a blob write under tmp/). */
const uploading = () => until(async () => readdirSync(path.join(store(), 'tmp')).length, (n) => n > 0, 30_000, 5, 'an upload under way');

describe('a crash mid-checkpoint', () => {
  it('worker SIGKILLed while it sends blobs: the call ends saying the worker was lost, no checkpoint is recorded, and after the restart one works', async () => {
    const { sid, sha } = await bigSession(200);
    const call = unary(sys.clients.sessions, 'CheckpointSession', { session_id: sid, checkpoint_name: 'doomed' }, { deadlineMs: 120_000 });
    const failed = grpcError(call);
    await uploading();
    const killedAt = Date.now();
    process.kill(sys.workerPid('w1'), 'SIGKILL');
    const e = await failed;
    expect(Date.now() - killedAt).toBeLessThan(15_000);
    expect(e.details).toMatch(/lost|unreachable|WORKER_LOST/i);
    expect(await checkpointsOf(sid)).toEqual([]);

    await sys.startWorker('w1', fast);
    await until(() => sessionStatus(sys.clients, sid), (st) => st['state'] === 'SESSION_STATE_READY' && !st.unreachableSinceMs, 30_000, 100, 'the session back');
    const c = (await unary(sys.clients.sessions, 'CheckpointSession', { session_id: sid }, { deadlineMs: 120_000 })) as Wire;
    storeIsWhole();
    const r = (await unary(sys.clients.sessions, 'RestoreSession', { checkpoint_id: c['checkpoint_id'], create_new_session: true }, { deadlineMs: 120_000 })) as Wire;
    const out = await runTask(sys.clients, python(r['session_id'], "import hashlib\nprint(hashlib.sha256(open('big.bin','rb').read()).hexdigest())", { timeout_seconds: 120 }));
    expect((replyOf(out, 'run_python')['stdout'] as string).trim()).toBe(sha);
    await unary(sys.clients.sessions, 'DestroySession', { session_id: r['session_id'], force: true });
    await unary(sys.clients.sessions, 'DestroySession', { session_id: sid, force: true });
  }, 180_000);

  it('coordinator SIGKILLed while it takes blobs: the call ends, the restarted coordinator shows no such checkpoint, its store is whole, and a new checkpoint works', async () => {
    const { sid, sha } = await bigSession(200);
    const before = readdirSync(path.join(store(), 'checkpoints')).length;
    const failed = grpcError(unary(sys.clients.sessions, 'CheckpointSession', { session_id: sid }, { deadlineMs: 120_000 }));
    await uploading();
    const port = sys.grpcPort;
    const old = sys.coordinator!;
    process.kill(old.pid, 'SIGKILL');
    const e = await failed;
    expect(e.code).toBeGreaterThan(0);
    await until(async () => old.exit !== undefined, (gone) => gone, 10_000, 50, 'the coordinator gone');
    expect(readdirSync(path.join(store(), 'checkpoints')).length).toBe(before);

    const again = await sys.startCoordinator({ ...fast, GRPC_PORT: String(port) });
    await sys.waitForStream(again, 'w1');
    expect(readdirSync(path.join(store(), 'tmp'))).toEqual([]);
    storeIsWhole();
    await until(() => sessionStatus(sys.clients, sid), (st) => st['state'] === 'SESSION_STATE_READY', 30_000, 100, 'the session back');
    expect(await checkpointsOf(sid)).toEqual([]);
    const c = (await unary(sys.clients.sessions, 'CheckpointSession', { session_id: sid }, { deadlineMs: 120_000 })) as Wire;
    const r = (await unary(sys.clients.sessions, 'RestoreSession', { checkpoint_id: c['checkpoint_id'], create_new_session: true }, { deadlineMs: 120_000 })) as Wire;
    const out = await runTask(sys.clients, python(r['session_id'], "import hashlib\nprint(hashlib.sha256(open('big.bin','rb').read()).hexdigest())", { timeout_seconds: 120 }));
    expect((replyOf(out, 'run_python')['stdout'] as string).trim()).toBe(sha);
  }, 180_000);
});
