/**
 * CHECKPOINT_RETENTION_DAYS over a real store in a temp folder: old checkpoints go, the latest of
 * a live session stays however old, blobs only a deleted checkpoint named are swept.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalCheckpointStore } from '../../src/checkpoints/local-store.js';
import { encodeManifest, sha256Hex } from '../../src/checkpoints/manifest.js';
import type { CheckpointRecord } from '../../src/checkpoints/store.js';
import { CheckpointService, type CheckpointSessions } from '../../src/coordinator/checkpoints.js';

const root = mkdtempSync(path.join(tmpdir(), 'codegen-retention-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const DAY = 86_400_000;

async function* once(b: Buffer): AsyncIterable<Buffer> {
  yield b;
}

/** A checkpoint whose manifest names one file blob of its own. */
async function put(store: LocalCheckpointStore, id: string, sessionId: string, createdAtMs: number): Promise<{ file: string; manifest: string }> {
  const data = Buffer.from(`contents of ${id}`);
  const file = sha256Hex(data);
  await store.putBlob(file, data.length, once(data));
  const m = encodeManifest({ version: 1, python: '3.11', entries: [{ kind: 'file', root: 'workspace', path: 'f.txt', size: data.length, sha256: file, mode: 0o644 }] });
  const manifest = sha256Hex(m);
  await store.putBlob(manifest, m.length, once(m));
  const record: CheckpointRecord = {
    version: 1, checkpointId: id, name: '', sessionId, workspaceId: sessionId, userId: '', tenant: '', createdAtMs, manifestSha256: manifest,
    sizeBytes: 1, fileCount: 1, totalBytes: data.length, installedPackages: [], modifiedFiles: [], modifiedCount: 0, pythonVersion: '3.11',
    previousCheckpointId: '', config: { env_vars: {}, allow_network: false, language: 'python' }, metadata: {},
  };
  await store.putRecord(record);
  return { file, manifest };
}

const noSessions = {} as CheckpointSessions;

describe('checkpoint retention', () => {
  it('deletes checkpoints past the retention except the latest of each live session, and sweeps their blobs', async () => {
    const store = await new LocalCheckpointStore({ dir: path.join(root, 's1') }).open();
    const now = Date.now();
    const oldLive1 = await put(store, 'ckpt-live-old', 'sess-live', now - 30 * DAY);
    const latestLive = await put(store, 'ckpt-live-latest', 'sess-live', now - 20 * DAY);
    const oldGone = await put(store, 'ckpt-gone', 'sess-gone', now - 9 * DAY);
    const recent = await put(store, 'ckpt-recent', 'sess-gone', now - 1 * DAY);
    const service = new CheckpointService(store, noSessions);
    // Blobs are fresh on disk: a zero grace lets this sweep take them.
    const sweep = service.requestSweep.bind(service);
    service.requestSweep = () => sweep(0);
    const deleted = await service.applyRetention(now, 7 * DAY, new Set(['sess-live']));
    expect(deleted.sort()).toEqual(['ckpt-gone', 'ckpt-live-old']);
    expect((await store.listRecords()).map((r) => r.checkpointId).sort()).toEqual(['ckpt-live-latest', 'ckpt-recent']);
    const missing = new Set(await store.missing([oldLive1.file, oldLive1.manifest, oldGone.file, latestLive.file, latestLive.manifest, recent.file]));
    expect(missing).toEqual(new Set([oldLive1.file, oldLive1.manifest, oldGone.file]));
  });

  it('keeps everything with a retention of 0, and the latest of a session only while it lives', async () => {
    const store = await new LocalCheckpointStore({ dir: path.join(root, 's2') }).open();
    const now = Date.now();
    await put(store, 'ckpt-a', 'sess-a', now - 100 * DAY);
    const service = new CheckpointService(store, noSessions);
    expect(await service.applyRetention(now, 0, new Set())).toEqual([]);
    expect(await service.applyRetention(now, 7 * DAY, new Set(['sess-a']))).toEqual([]);
    expect(await service.applyRetention(now, 7 * DAY, new Set())).toEqual(['ckpt-a']);
  });
});
