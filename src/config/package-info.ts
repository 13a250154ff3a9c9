import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: { dir: string; version: string } | undefined;

/**
 * The package's own folder (where package.json, proto/ and dist/ live), found upward from this
 * module: the same from src/ under the tests, from dist/src/ when built, and in the images.
 */
function packageInfo(): { dir: string; version: string } {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++, dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (!existsSync(file)) continue;
    try {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'codegen-mcp') return (root = { dir, version: pkg.version ?? '0.0.0' });
    } catch {
      // keep looking
    }
  }
  throw new Error(`the codegen-mcp package.json was not found above ${fileURLToPath(import.meta.url)}`);
}

export const packageRoot = (): string => packageInfo().dir;

export function packageVersion(): string {
  try {
    return packageInfo().version;
  } catch {
    return '0.0.0';
  }
}
