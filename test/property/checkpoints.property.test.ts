/**
 * A model-based property test of checkpoints on real folders and a real store: random sequences
 * of writes, deletes, package installs, checkpoints, restores (in place and into a new
 * workspace) and destroys. The model is a map of path → contents per workspace and per
 * checkpoint; restoring checkpoint k must always give exactly the files (and packages) of k.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, lstatSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalCheckpointStore } from '../../src/checkpoints/local-store.js';
import { restoreSnapshot } from '../../src/checkpoints/restore.js';
import { HashCache, takeSnapshot, type BlobTransport } from '../../src/checkpoints/snapshot.js';

const root = mkdtempSync(path.join(tmpdir(), 'codegen-ckpt-prop-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SITE = '.venv/lib/python3.11/site-packages';
type Files = Map<string, string>;

/** What a workspace holds: its files (not .venv) and its packages, as `workspace:` / `packages:` keys. */
function read(ws: string): Files {
  const out: Files = new Map();
  const walk = (dir: string, rel: string, prefix: string, skipVenv: boolean) => {
    for (const name of readdirSync(dir).sort()) {
      if (skipVenv && rel === '' && name === '.venv') continue;
      const abs = path.join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const s = lstatSync(abs);
      if (s.isDirectory()) walk(abs, r, prefix, skipVenv);
      else out.set(`${prefix}${r}`, readFileSync(abs, 'utf8'));
    }
  };
  walk(ws, '', 'workspace:', true);
  if (existsSync(path.join(ws, SITE))) walk(path.join(ws, SITE), '', 'packages:', false);
  return out;
}

function newWorkspace(name: string): string {
  const ws = path.join(root, name);
  mkdirSync(path.join(ws, SITE), { recursive: true });
  mkdirSync(path.join(ws, 'artifacts'));
  return ws;
}

const pathArb = fc
  .tuple(fc.constantFrom('', 'src/', 'artifacts/', 'a/b/'), fc.constantFrom('x.txt', 'y.py', 'z.bin', 'data.json'))
  .map(([d, f]) => `${d}${f}`);
const contentArb = fc.constantFrom('', 'one', 'two', 'same', 'same', 'ünïcode ✓', 'x'.repeat(3000));

type Op =
  | { kind: 'write'; path: string; contents: string }
  | { kind: 'delete'; path: string }
  | { kind: 'install'; pkg: string; version: string }
  | { kind: 'checkpoint' }
  | { kind: 'restore'; k: number }
  | { kind: 'restoreNew'; k: number }
  | { kind: 'destroy' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('write' as const), path: pathArb, contents: contentArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), path: pathArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('install' as const), pkg: fc.constantFrom('alpha', 'beta'), version: fc.constantFrom('1.0', '2.0') }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'checkpoint' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('restore' as const), k: fc.nat(20) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('restoreNew' as const), k: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'destroy' as const }) },
);

describe('checkpoints (model-based)', () => {
  it('restoring checkpoint k always yields exactly the files and packages that existed at k', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 30 }), async (ops) => {
        run++;
        const store = await new LocalCheckpointStore({ dir: path.join(root, `store-${run}`) }).open();
        const transport: BlobTransport = { missing: (s) => store.missing(s), put: (sha, size, open) => store.putBlob(sha, size, open()), get: (sha) => store.readBlob(sha) };
        let n = 0;
        // The worker's cache of unchanged files' hashes, as in production (one per workspace).
        const hashes = new HashCache();
        let ws = newWorkspace(`ws-${run}-${n++}`);
        let model: Files = read(ws);
        const checkpoints: Array<{ sha: string; files: Files }> = [];
        for (const op of ops) {
          switch (op.kind) {
            case 'write': {
              mkdirSync(path.dirname(path.join(ws, op.path)), { recursive: true });
              writeFileSync(path.join(ws, op.path), op.contents);
              model.set(`workspace:${op.path}`, op.contents);
              break;
            }
            case 'delete':
              rmSync(path.join(ws, op.path), { force: true });
              model.delete(`workspace:${op.path}`);
              break;
            case 'install': {
              // What pip leaves: the package and its dist-info.
              const site = path.join(ws, SITE);
              rmSync(path.join(site, op.pkg), { recursive: true, force: true });
              for (const d of readdirSync(site)) if (d.startsWith(`${op.pkg}-`)) rmSync(path.join(site, d), { recursive: true });
              for (const k of [...model.keys()]) if (k.startsWith(`packages:${op.pkg}/`) || k.startsWith(`packages:${op.pkg}-`)) model.delete(k);
              mkdirSync(path.join(site, op.pkg), { recursive: true });
              mkdirSync(path.join(site, `${op.pkg}-${op.version}.dist-info`), { recursive: true });
              writeFileSync(path.join(site, op.pkg, '__init__.py'), `V = ${JSON.stringify(op.version)}\n`);
              writeFileSync(path.join(site, `${op.pkg}-${op.version}.dist-info`, 'METADATA'), `Name: ${op.pkg}\nVersion: ${op.version}\n`);
              model.set(`packages:${op.pkg}/__init__.py`, `V = ${JSON.stringify(op.version)}\n`);
              model.set(`packages:${op.pkg}-${op.version}.dist-info/METADATA`, `Name: ${op.pkg}\nVersion: ${op.version}\n`);
              break;
            }
            case 'checkpoint': {
              const out = await takeSnapshot({ workspace: ws, transport, previousManifestSha256: checkpoints.at(-1)?.sha ?? '', hashes: hashes.of(ws) });
              const pkgs = [...model.keys()].filter((k) => k.startsWith('packages:') && k.endsWith('.dist-info/METADATA')).map((k) => k.slice('packages:'.length).replace('.dist-info/METADATA', '').replace('-', '=='));
              expect(out.installed_packages).toEqual(pkgs.sort());
              const before = checkpoints.at(-1)?.files;
              const changed = [...model.entries()].filter(([k, v]) => k.startsWith('workspace:') && before?.get(k) !== v).map(([k]) => k.slice('workspace:'.length)).sort();
              expect(out.modified_files).toEqual(changed);
              checkpoints.push({ sha: out.manifest_sha256, files: new Map(model) });
              break;
            }
            case 'restore':
            case 'restoreNew': {
              if (checkpoints.length === 0) break;
              const c = checkpoints[op.k % checkpoints.length]!;
              if (op.kind === 'restoreNew' || !existsSync(ws)) ws = newWorkspace(`ws-${run}-${n++}`);
              await restoreSnapshot({ workspace: ws, transport, checkpointId: 'ckpt-x', manifestSha256: c.sha });
              model = new Map(c.files);
              break;
            }
            case 'destroy':
              rmSync(ws, { recursive: true, force: true });
              ws = newWorkspace(`ws-${run}-${n++}`);
              model = read(ws);
              break;
          }
          expect(read(ws)).toEqual(model);
        }
        // Every checkpoint still restores exactly, into a fresh workspace.
        for (const c of checkpoints) {
          const fresh = newWorkspace(`ws-${run}-${n++}`);
          await restoreSnapshot({ workspace: fresh, transport, checkpointId: 'ckpt-x', manifestSha256: c.sha });
          expect(read(fresh)).toEqual(c.files);
        }
        expect(readdirSync(path.join(root, `store-${run}`, 'tmp'))).toEqual([]);
      }),
      { numRuns: 40 },
    );
  }, 120_000);
});
