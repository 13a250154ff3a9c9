import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const checkedIn = path.join(repoRoot, 'src', 'wire', 'generated');
const fresh = mkdtempSync(path.join(tmpdir(), 'wire-generated-'));
afterAll(() => rmSync(fresh, { recursive: true, force: true }));

/** Every file below `dir`, by its path relative to `dir`, with its text. */
function tree(dir: string): Map<string, string> {
  const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  return new Map(files.map((e) => {
    const file = path.join(e.parentPath ?? e.path, e.name);
    return [path.relative(dir, file), readFileSync(file, 'utf8')] as const;
  }));
}

describe('src/wire/generated', () => {
  it('is what scripts/gen-wire.mjs makes of proto/ now', () => {
    execFileSync(process.execPath, [path.join(repoRoot, 'scripts', 'gen-wire.mjs'), fresh], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
    const want = tree(fresh);
    const have = tree(checkedIn);
    const stale = [...new Set([...want.keys(), ...have.keys()])].filter((f) => want.get(f) !== have.get(f)).sort();
    expect(want.size).toBeGreaterThan(0);
    expect(stale, `src/wire/generated is out of date with proto/ (${stale.slice(0, 5).join(', ')}${stale.length > 5 ? ', …' : ''}): run npm run gen:wire`).toEqual([]);
  });
});
