/**
 * The S3 checkpoint store against a real S3-protocol server (s3rver on 127.0.0.1): the store on
 * its own (content addressing, refused bytes, records, sweeps), then a whole system with
 * CHECKPOINT_STORE=s3://… checkpointing on one worker and restoring on the other.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error s3rver ships no types
import S3rver from 's3rver';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { S3CheckpointStore, parseS3Url } from '../../src/checkpoints/s3-store.js';
import { sha256Hex } from '../../src/checkpoints/manifest.js';
import type { CheckpointRecord } from '../../src/checkpoints/store.js';
import { CodegenError } from '../../src/domain/errors.js';
import { grpc, grpcError, python, replyOf, runTask, TestSystem, unary, type Wire } from '../helpers/system.js';
import { buildWheel } from '../helpers/wheels.js';

const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
let server: { run(): Promise<{ port: number }>; close(): Promise<void> };
let endpoint = '';
let dir = '';

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'codegen-s3rver-'));
  server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir, configureBuckets: [{ name: 'ckpt-test' }] });
  const address = await server.run();
  endpoint = `http://127.0.0.1:${address.port}`;
}, 30_000);

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const storeAt = (prefix: string) => new S3CheckpointStore({ url: `s3://ckpt-test/${prefix}`, endpoint, client: { credentials } });
async function* bytes(b: Buffer): AsyncIterable<Buffer> {
  yield b;
}
const text = async (it: AsyncIterable<Buffer>) => {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts).toString();
};

const record = (id: string, manifestSha256: string): CheckpointRecord => ({
  version: 1,
  checkpointId: id,
  name: 'n',
  sessionId: 'sess-1',
  workspaceId: 'sess-1',
  userId: '',
  tenant: '',
  createdAtMs: Date.now(),
  manifestSha256,
  sizeBytes: 1,
  fileCount: 1,
  totalBytes: 1,
  installedPackages: [],
  modifiedFiles: [],
  modifiedCount: 0,
  pythonVersion: '3.11',
  previousCheckpointId: '',
  config: { env_vars: {}, allow_network: false, language: 'python' },
  metadata: {},
});

describe('the S3 store', () => {
  it('parses s3:// urls and refuses others, naming CHECKPOINT_STORE', () => {
    expect(parseS3Url('s3://bucket-1/a/b/')).toEqual({ bucket: 'bucket-1', prefix: 'a/b' });
    expect(parseS3Url('s3://bucket-1')).toEqual({ bucket: 'bucket-1', prefix: '' });
    for (const bad of ['s3://B/x', 'http://bucket/x', 's3://bucket/../x']) expect(() => parseS3Url(bad)).toThrow(/CHECKPOINT_STORE/);
  });

  it('keeps a blob once, refuses bytes that do not match their name, and reads back what it kept', async () => {
    const store = await storeAt('unit').open();
    const data = Buffer.from('hello s3 blob');
    const sha = sha256Hex(data);
    expect(await store.missing([sha])).toEqual([sha]);
    expect(await store.putBlob(sha, data.length, bytes(data))).toEqual({ added: true, sizeBytes: data.length });
    expect(await store.putBlob(sha, data.length, bytes(data))).toEqual({ added: false, sizeBytes: data.length });
    expect(await store.missing([sha])).toEqual([]);
    expect(await text(await store.readBlob(sha))).toBe('hello s3 blob');

    const wrong = sha256Hex('other bytes');
    const err = await store.putBlob(wrong, data.length, bytes(data)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CodegenError);
    expect((err as CodegenError).message).toContain(wrong);
    expect(await store.missing([wrong])).toEqual([wrong]);
    await expect(store.readBlob(wrong)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // Nothing is left under tmp/.
    const s3 = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });
    const tmp = await s3.send(new ListObjectsV2Command({ Bucket: 'ckpt-test', Prefix: 'unit/tmp/' }));
    expect(tmp.Contents ?? []).toEqual([]);
    s3.destroy();
    store.close();
  });

  it('writes, lists, reads and deletes records; sweeps blobs no record names', async () => {
    const store = await storeAt('records').open();
    const kept = Buffer.from('kept');
    const dropped = Buffer.from('dropped');
    await store.putBlob(sha256Hex(kept), kept.length, bytes(kept));
    await store.putBlob(sha256Hex(dropped), dropped.length, bytes(dropped));
    await store.putRecord(record('ckpt-a', sha256Hex(kept)));
    const fresh = await storeAt('records').open();
    expect((await fresh.listRecords()).map((r) => r.checkpointId)).toEqual(['ckpt-a']);
    expect((await fresh.getRecord('ckpt-a'))?.manifestSha256).toBe(sha256Hex(kept));
    expect(await fresh.getRecord('ckpt-none')).toBeUndefined();
    const swept = await fresh.sweep(new Set([sha256Hex(kept)]), 0);
    expect(swept).toEqual({ removed: 1, freedBytes: dropped.length });
    expect(await fresh.missing([sha256Hex(kept), sha256Hex(dropped)])).toEqual([sha256Hex(dropped)]);
    expect(await fresh.deleteRecord('ckpt-a')).toBe(true);
    expect(await fresh.deleteRecord('ckpt-a')).toBe(false);
    expect(await fresh.listRecords()).toEqual([]);
    store.close();
    fresh.close();
  });

  it('answers LIMIT_EXCEEDED when CHECKPOINT_STORE_MAX_BYTES would be passed, keeping nothing', async () => {
    const store = await new S3CheckpointStore({ url: 's3://ckpt-test/full', endpoint, client: { credentials }, maxBytes: 10 }).open();
    const big = Buffer.alloc(64, 1);
    await expect(store.putBlob(sha256Hex(big), big.length, bytes(big))).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED', message: expect.stringContaining('CHECKPOINT_STORE_MAX_BYTES') });
    expect(await store.missing([sha256Hex(big)])).toEqual([sha256Hex(big)]);
    store.close();
  });

  it('a store that cannot be reached fails open() with UNAVAILABLE naming the bucket', async () => {
    const store = new S3CheckpointStore({ url: 's3://no-such-bucket/x', endpoint, client: { credentials } });
    await expect(store.open()).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringContaining('no-such-bucket') });
    store.close();
  });
});

describe('a system with CHECKPOINT_STORE=s3://', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = new TestSystem({ label: 'ckpt-s3' });
    const wheels = path.join(sys.root, 'wheels');
    buildWheel(wheels, 'gamma_pkg', '0.9.1');
    await sys.startUp(2, {
      CHECKPOINT_STORE: 's3://ckpt-test/fleet',
      CHECKPOINT_S3_ENDPOINT: endpoint,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      PIP_FIND_LINKS: wheels,
      PIP_NO_INDEX: '1',
    });
  }, 120_000);
  afterAll(async () => {
    await sys?.stop();
  }, 120_000);

  it('checkpoints on worker-1 into the bucket and restores on worker-2 with the package importable', async () => {
    const s = (await unary(sys.clients.sessions, 'CreateSession', { worker_id: 'worker-1' })) as Wire;
    const sid = s['session_id'];
    const install = await runTask(sys.clients, { session_id: sid, typed_request: { pkg_install: { packages: ['gamma_pkg'] } } });
    expect(replyOf(install, 'pkg_install')['exit_code']).toBe(0);
    await runTask(sys.clients, { session_id: sid, typed_request: { fs_write: { path: 'notes/a.txt', contents: 'in the bucket' , create_dirs: true } } });
    const c = (await unary(sys.clients.sessions, 'CheckpointSession', { session_id: sid }, { deadlineMs: 60_000 })) as Wire;
    expect(c['storage_url']).toBe(`s3://ckpt-test/fleet/checkpoints/${c['checkpoint_id']}.json`);
    expect(c['metadata']['installed_packages']).toContain('gamma_pkg==0.9.1');
    const s3 = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });
    const keys = ((await s3.send(new ListObjectsV2Command({ Bucket: 'ckpt-test', Prefix: 'fleet/' }))).Contents ?? []).map((o) => o.Key);
    s3.destroy();
    expect(keys).toContain(`fleet/checkpoints/${c['checkpoint_id']}.json`);
    expect(keys).toContain(`fleet/blobs/${c['metadata']['checksum_sha256']}`);

    const r = (await unary(sys.clients.sessions, 'RestoreSession', { checkpoint_id: c['checkpoint_id'], create_new_session: true, worker_id: 'worker-2' }, { deadlineMs: 60_000 })) as Wire;
    expect(r['worker_id']).toBe('worker-2');
    const out = await runTask(sys.clients, python(r['session_id'], "import gamma_pkg\nprint(gamma_pkg.VERSION, open('notes/a.txt').read())"));
    expect(replyOf(out, 'run_python')['stdout']).toBe('0.9.1 in the bucket\n');
    const e = await grpcError(unary(sys.clients.sessions, 'RestoreSession', { checkpoint_id: 'ckpt-missing', create_new_session: true }));
    expect(e.code).toBe(grpc.status.NOT_FOUND);
  }, 120_000);
});
