/**
 * CLIENT_KEYS_FILE: the API keys of the coordinator's tenants. Only a key's SHA-256 is kept; the
 * key itself is shown once, by `codegen-mcp keys add`. The file is JSON, written whole to a
 * temporary file and renamed over the old one (mode 0600), so a reader never sees half of it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { invalidArgument } from '../domain/errors.js';

export const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const StoredKey = z.object({
  id: z.string().regex(/^[0-9a-f]{8,32}$/),
  tenant: z.string().regex(TENANT_PATTERN),
  admin: z.boolean().default(false),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAtMs: z.number().int().nonnegative(),
});
export type StoredKey = z.infer<typeof StoredKey>;

const KeysFileSchema = z.object({ version: z.literal(1), keys: z.array(StoredKey) });

/** An API key: `cgm_<id>_<secret>`; the id names it in `keys ls` and `keys rm`, the secret is 32 random bytes. */
const KEY_PATTERN = /^cgm_([0-9a-f]{8,32})_[A-Za-z0-9_-]{20,}$/;

export const keyDigest = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex');

/** The id part of a key that has our shape (for log lines that must not show the key). */
export const keyIdOf = (key: string): string | undefined => KEY_PATTERN.exec(key)?.[1];

export function checkTenant(tenant: string): string {
  if (!TENANT_PATTERN.test(tenant)) throw invalidArgument('tenant', `must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit (got ${JSON.stringify(tenant)})`);
  return tenant;
}

/** Reads the file; a missing file has no keys. A file that is not ours throws, naming the file and the problem. */
export function readKeysFile(file: string): StoredKey[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${file}: not valid JSON (a CLIENT_KEYS_FILE is written by "codegen-mcp keys add")`);
  }
  const parsed = KeysFileSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${file}: not a keys file: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data.keys;
}

function writeKeysFile(file: string, keys: StoredKey[]): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ version: 1, keys }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/** Adds a key for `tenant` and returns it: the only time it exists outside the client that keeps it. */
export function addKey(file: string, tenant: string, admin: boolean, nowMs: number = Date.now()): { key: string; stored: StoredKey } {
  checkTenant(tenant);
  const keys = readKeysFile(file);
  const id = randomBytes(6).toString('hex');
  const key = `cgm_${id}_${randomBytes(32).toString('base64url')}`;
  const stored: StoredKey = { id, tenant, admin, sha256: keyDigest(key), createdAtMs: nowMs };
  writeKeysFile(file, [...keys, stored]);
  return { key, stored };
}

/** Removes the key with this id; false when there is none. */
export function removeKey(file: string, id: string): boolean {
  const keys = readKeysFile(file);
  const kept = keys.filter((k) => k.id !== id);
  if (kept.length === keys.length) return false;
  writeKeysFile(file, kept);
  return true;
}
