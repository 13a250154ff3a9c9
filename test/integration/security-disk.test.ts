/**
 * The disk quota per session (MAX_DISK_PER_SESSION), on a real worker: each workspace is its own
 * loop-mounted filesystem, so a write past the quota fails at once with ENOSPC, fs_write answers
 * LIMIT_EXCEEDED, the host's disk is untouched beyond the quota, and the quota survives a worker
 * killed with SIGKILL. Skipped (saying why) where the worker reports no quota (no root or loop devices).
 */
import { existsSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMountPoint } from '../../src/worker/disk-quota.js';
import { python, replyOf, runTask, TestSystem, unary, type SystemProcess, type Wire } from '../helpers/system.js';

let sys: TestSystem;
let worker: SystemProcess;
let quota = false;
const MiB = 1024 * 1024;

const freeBytes = (p: string) => {
  const s = statfsSync(p);
  return s.bavail * s.bsize;
};

beforeAll(async () => {
  sys = new TestSystem({ label: 'disk' });
  await sys.startCoordinator({ HTTP_ENABLED: 'false' });
  worker = await sys.startWorker('disk-worker', { MAX_DISK_PER_SESSION: '64MiB' });
  const line = await worker.waitForLine((l) => typeof l.msg === 'string' && l.msg.startsWith('disk quota:'));
  quota = (line['diskQuota'] as { mode: string }).mode === 'loop';
  if (!quota) console.warn(`security-disk: skipped, the worker has no disk quota here: ${line.msg}`);
}, 120_000);

afterAll(async () => {
  await sys?.stop();
}, 120_000);

const create = async () => (await unary(sys.clients.sessions, 'CreateSession', {})).session_id as string;
const workspaceOf = (id: string) => path.join(sys.root, 'ws', 'disk-worker', id);
const write = (id: string, p: string, bytes: number) =>
  runTask(sys.clients, { session_id: id, typed_request: { fs_write: { path: p, contents: Buffer.alloc(bytes, 120).toString('base64'), encoding: 'base64' } } });

describe('a disk quota per session', () => {
  it('stops user code at the quota with ENOSPC, answers fs_write LIMIT_EXCEEDED, takes no more host disk, and the session stays usable', async (ctx) => {
    if (!quota) ctx.skip();
    const id = await create();
    expect(isMountPoint(workspaceOf(id))).toBe(true);
    const before = freeBytes(sys.root);
    const flood = await runTask(
      sys.clients,
      python(id, 'import errno\nf = open("big.bin", "wb")\ntry:\n    for _ in range(3 * 1024):\n        f.write(b"x" * (1 << 20)); f.flush()\nexcept OSError as e:\n    print("stopped", errno.errorcode[e.errno])\n'),
    );
    expect(replyOf(flood, 'run_python')['stdout']).toMatch(/stopped (ENOSPC|EDQUOT)/);
    expect(before - freeBytes(sys.root)).toBeLessThan(80 * MiB);
    const more = await write(id, 'more.bin', 8 * MiB);
    expect(more.error?.code, JSON.stringify(more.error)).toBe('LIMIT_EXCEEDED');
    expect(more.error?.message).toMatch(/disk is full \(max_disk_per_session\)/);
    // Room again once the user deletes the file.
    await runTask(sys.clients, python(id, 'import os; os.remove("big.bin"); print("freed")'));
    expect((await write(id, 'small.bin', 1 * MiB)).result?.status).toBe('STATUS_SUCCESS');
    const info = (await unary(sys.clients.sessions, 'GetSessionStatus', { session_id: id })).info as Wire;
    expect(info.state).toBe('SESSION_STATE_READY');
    expect(Number(info.limits.max_disk_bytes)).toBe(64 * MiB);
    await unary(sys.clients.sessions, 'DestroySession', { session_id: id });
    expect(isMountPoint(workspaceOf(id))).toBe(false);
    expect(existsSync(path.join(sys.root, 'ws', 'disk-worker', '.disks', `${id}.img`))).toBe(false);
  }, 120_000);

  it('keeps the files and the quota of a session across a worker killed with SIGKILL and started again', async (ctx) => {
    if (!quota) ctx.skip();
    const id = await create();
    const kept = await write(id, 'kept.txt', 1000);
    expect(kept.result?.status, JSON.stringify(kept.error ?? kept.status?.details)).toBe('STATUS_SUCCESS');
    worker.signal('SIGKILL');
    await worker.exited;
    worker = await sys.startWorker('disk-worker', { MAX_DISK_PER_SESSION: '64MiB' });
    const read = await runTask(sys.clients, python(id, 'import os; print(os.path.getsize("kept.txt"))'), 60_000);
    expect(replyOf(read, 'run_python')['stdout']).toBe('1000\n');
    expect((await write(id, 'first.bin', 40 * MiB)).result?.status).toBe('STATUS_SUCCESS');
    expect((await write(id, 'second.bin', 40 * MiB)).error?.code).toBe('LIMIT_EXCEEDED');
    await unary(sys.clients.sessions, 'DestroySession', { session_id: id });
    expect(isMountPoint(workspaceOf(id))).toBe(false);
  }, 120_000);
});
