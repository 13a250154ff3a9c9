import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ClientAuthenticator, bearerToken } from '../../src/auth/authenticator.js';
import { addKey, keyDigest, readKeysFile, removeKey } from '../../src/auth/keys-file.js';
import { ensureTokenFile, readTokenFile } from '../../src/auth/secrets.js';
import { runKeys } from '../../src/cli/keys.js';
import { CodegenError } from '../../src/domain/errors.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'codegen-auth-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const refusal = (fn: () => unknown): CodegenError => {
  try {
    fn();
  } catch (err) {
    if (err instanceof CodegenError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
};

describe('the keys file', () => {
  it('stores only the SHA-256 of a key, with mode 0600, and removes keys by id', () => {
    const file = path.join(tmp(), 'state', 'keys.json');
    const a = addKey(file, 'acme', false, 1_000);
    const b = addKey(file, 'ops', true, 2_000);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(a.key);
    expect(text).toContain(keyDigest(a.key));
    expect(readKeysFile(file).map((k) => [k.tenant, k.admin, k.createdAtMs])).toEqual([
      ['acme', false, 1_000],
      ['ops', true, 2_000],
    ]);
    expect(removeKey(file, a.stored.id)).toBe(true);
    expect(removeKey(file, a.stored.id)).toBe(false);
    expect(readKeysFile(file).map((k) => k.id)).toEqual([b.stored.id]);
  });

  it('refuses a tenant name that is not a plain name, naming the field', () => {
    const file = path.join(tmp(), 'keys.json');
    for (const bad of ['', '../x', 'a b', 'x'.repeat(65), '-lead']) expect(refusal(() => addKey(file, bad, false)).message).toMatch(/^tenant: must be/);
  });

  it('says which file is broken and why, instead of treating it as empty', () => {
    const file = path.join(tmp(), 'keys.json');
    writeFileSync(file, '{"version":1,"keys":[{"id":"zz"}]}');
    expect(() => readKeysFile(file)).toThrow(/keys\.json: not a keys file: keys\.0\.id/);
    writeFileSync(file, 'not json');
    expect(() => readKeysFile(file)).toThrow(/not valid JSON/);
    expect(readKeysFile(path.join(path.dirname(file), 'absent.json'))).toEqual([]);
  });
});

describe('the client authenticator', () => {
  it('maps CLIENT_TOKEN to the default tenant with the admin role, and a key to its tenant', () => {
    const file = path.join(tmp(), 'keys.json');
    const { key, stored } = addKey(file, 'acme', false);
    const auth = new ClientAuthenticator({ token: 'operator-token', keysFile: file });
    expect(auth.authenticate('Bearer operator-token')).toEqual({ tenant: 'default', admin: true, credential: 'CLIENT_TOKEN' });
    expect(auth.authenticate(`bearer ${key}`)).toEqual({ tenant: 'acme', admin: false, credential: `key ${stored.id}` });
  });

  it('refuses a missing, malformed, unknown or removed credential with UNAUTHENTICATED saying which', () => {
    const file = path.join(tmp(), 'keys.json');
    const { key, stored } = addKey(file, 'acme', false);
    const auth = new ClientAuthenticator({ token: '', keysFile: file });
    expect(refusal(() => auth.authenticate(undefined))).toMatchObject({ code: 'UNAUTHENTICATED', message: expect.stringMatching(/no credential was sent/) });
    expect(refusal(() => auth.authenticate('Basic abc')).message).toMatch(/must be "Bearer <key>"/);
    expect(refusal(() => auth.authenticate('Bearer something')).message).toMatch(/not CLIENT_TOKEN, not a key/);
    // An empty CLIENT_TOKEN is no credential at all: an empty bearer never matches it.
    expect(refusal(() => auth.authenticate('Bearer ')).code).toBe('UNAUTHENTICATED');
    expect(auth.authenticate(`Bearer ${key}`).tenant).toBe('acme');
    removeKey(file, stored.id);
    expect(refusal(() => auth.authenticate(`Bearer ${key}`)).message).toContain(`API key ${stored.id} is not valid`);
  });

  it('takes keys added after it started at the next call, and keeps the keys it had when the file turns bad', () => {
    const file = path.join(tmp(), 'keys.json');
    const auth = new ClientAuthenticator({ token: '', keysFile: file });
    const { key } = addKey(file, 'late', false);
    expect(auth.authenticate(`Bearer ${key}`).tenant).toBe('late');
    writeFileSync(file, 'garbage that is longer than the file was');
    expect(auth.authenticate(`Bearer ${key}`).tenant).toBe('late');
  });

  it('parses only "Bearer <one token>"', () => {
    expect(bearerToken('Bearer  x ')).toBe('x');
    expect(bearerToken('Bearer x y')).toBeUndefined();
    expect(bearerToken('Token x')).toBeUndefined();
  });
});

describe('generated tokens', () => {
  it('are made once with mode 0600 and read back after', () => {
    const file = path.join(tmp(), 'state', 'client-token');
    const first = ensureTokenFile(file);
    expect(first.generated).toBe(true);
    expect(first.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(ensureTokenFile(file)).toEqual({ token: first.token, generated: false });
    expect(readTokenFile(file)).toBe(first.token);
    expect(readTokenFile(path.join(path.dirname(file), 'none'))).toBeUndefined();
  });
});

describe('codegen-mcp keys', () => {
  it('prints a new key alone on the last line of stdout, lists keys without them, and says what is wrong', () => {
    const file = path.join(tmp(), 'keys.json');
    const out: string[] = [];
    const err: string[] = [];
    const run = (...args: string[]) => runKeys([...args, '--file', file], {}, (s) => out.push(s), (s) => err.push(s));
    expect(run('add', 'acme', '--admin')).toBe(0);
    const key = out.join('').trimEnd().split('\n').at(-1)!;
    expect(out.join('')).toBe(`${key}\n`);
    expect(err.join('')).toMatch(/for tenant acme \(admin\)/);
    out.length = 0;
    expect(run('ls')).toBe(0);
    expect(out.join('')).toMatch(/^ID\tTENANT\tROLE\tCREATED\n[0-9a-f]{12}\tacme\tadmin\t\d{4}-/);
    expect(out.join('')).not.toContain(key);
    expect(run('rm', 'ffffffffffff')).toBe(1);
    expect(err.join('')).toMatch(/no key with id "ffffffffffff"/);
    expect(run('frobnicate')).toBe(2);
    expect(run('add')).toBe(2);
  });
});
