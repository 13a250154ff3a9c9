/**
 * Manifests a restore can trust: a manifest that passed its checksum is still refused (DATA_LOSS,
 * nothing written) when it would write through a symlink, below a file, twice to one path, or onto
 * the workspace root's reserved names — a tampered store cannot make a restore write elsewhere.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalCheckpointStore } from '../../src/checkpoints/local-store.js';
import { decodeManifest, encodeManifest, layoutProblem, sha256Hex, type Manifest, type ManifestEntry } from '../../src/checkpoints/manifest.js';
import { restoreSnapshot } from '../../src/checkpoints/restore.js';
import type { BlobTransport } from '../../src/checkpoints/snapshot.js';

const root = mkdtempSync(path.join(tmpdir(), 'codegen-manifest-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const file = (p: string, contents: string, r: 'workspace' | 'packages' = 'workspace'): ManifestEntry => ({ kind: 'file', root: r, path: p, size: Buffer.byteLength(contents), sha256: sha256Hex(contents), mode: 0o644 });
const manifest = (...entries: ManifestEntry[]): Manifest => ({ version: 1, python: '3.11', entries });

describe('manifest layout', () => {
  it.each([
    ['a path listed twice', manifest(file('a.txt', 'x'), file('a.txt', 'y')), /listed twice/],
    ['an entry below a symlink', manifest({ kind: 'symlink', root: 'workspace', path: 'out', target: '/etc' }, file('out/passwd', 'x')), /below a symlink/],
    ['an entry below a file', manifest(file('f', 'x'), file('f/g', 'y')), /below a file/],
    ['.venv at the root', manifest(file('.venv/bin/python', 'x')), /reserved name/],
    ['a staging folder at the root', manifest(file('.codegen-restore-abc/x', 'x')), /reserved name/],
  ])('refuses %s', (_, m, why) => {
    expect(layoutProblem(m)).toMatch(why);
    const bytes = encodeManifest(m);
    expect(() => decodeManifest(bytes, sha256Hex(bytes), 'checkpoint c')).toThrow(expect.objectContaining({ code: 'DATA_LOSS' }));
  });

  it('takes a plain tree, and .venv below the root or in packages', () => {
    expect(layoutProblem(manifest({ kind: 'dir', root: 'workspace', path: 'src', mode: 0o755 }, file('src/a.py', 'x'), file('lib/.venv/x', 'y'), file('pkg/__init__.py', 'z', 'packages')))).toBeUndefined();
  });

  it('refuses a manifest that does not match its checksum, naming it, and one that is not JSON', () => {
    const bytes = encodeManifest(manifest(file('a', 'x')));
    const wrong = sha256Hex('other');
    expect(() => decodeManifest(bytes, wrong, 'checkpoint c')).toThrow(new RegExp(`checksum_sha256 ${wrong}`));
    const junk = Buffer.from('{not json');
    expect(() => decodeManifest(junk, sha256Hex(junk), 'checkpoint c')).toThrow(/not JSON/);
  });
});

describe('restore of a tampered manifest', () => {
  it('writes nothing outside the workspace and leaves the workspace as it was', async () => {
    const store = await new LocalCheckpointStore({ dir: path.join(root, 'store') }).open();
    const transport: BlobTransport = { missing: (s) => store.missing(s), put: (sha, size, open) => store.putBlob(sha, size, open()), get: (sha) => store.readBlob(sha) };
    const outside = path.join(root, 'outside');
    mkdirSync(outside);
    const evil = 'written through a link';
    await store.putBlob(sha256Hex(evil), evil.length, (async function* () { yield Buffer.from(evil); })());
    const m = encodeManifest(manifest({ kind: 'symlink', root: 'workspace', path: 'link', target: outside }, file('link/evil.txt', evil)));
    const sha = sha256Hex(m);
    await store.putBlob(sha, m.length, (async function* () { yield m; })());
    const ws = path.join(root, 'ws');
    mkdirSync(path.join(ws, '.venv/lib/python3.11/site-packages'), { recursive: true });
    writeFileSync(path.join(ws, 'mine.txt'), 'mine');
    await expect(restoreSnapshot({ workspace: ws, transport, checkpointId: 'ckpt-evil', manifestSha256: sha })).rejects.toMatchObject({ code: 'DATA_LOSS', message: expect.stringContaining('below a symlink') });
    expect(readdirSync(outside)).toEqual([]);
    expect(readdirSync(ws).sort()).toEqual(['.venv', 'mine.txt']);
    expect(existsSync(path.join(ws, 'link'))).toBe(false);
  });
});
