/**
 * Who a client is: its bearer credential, checked against CLIENT_TOKEN (the default tenant's
 * shared token, with the admin role) and the keys of CLIENT_KEYS_FILE (re-read when the file
 * changes, so `codegen-mcp keys add/rm` take effect at the next call). Every refusal says which
 * credential was wrong, never whether some session exists.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { statSync } from 'node:fs';
import { CodegenError } from '../domain/errors.js';
import type { Logger } from '../log/logger.js';
import { keyDigest, keyIdOf, readKeysFile, type StoredKey } from './keys-file.js';

/** The tenant of CLIENT_TOKEN, and of sessions made before tenants existed. */
export const DEFAULT_TENANT = 'default';

export interface Principal {
  tenant: string;
  /** Sees and manages every tenant's sessions. */
  admin: boolean;
  /** Which credential it presented, for logs: "CLIENT_TOKEN" or "key <id>". */
  credential: string;
}

export const localOperator: Principal = { tenant: DEFAULT_TENANT, admin: true, credential: 'local' };

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Constant-time comparison: digests make both sides the same length, so lengths do not leak either. */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  return presented !== undefined && expected !== '' && timingSafeEqual(digest(presented), digest(expected));
}

/** The credential of an `authorization: Bearer <credential>` value. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header?.trim() ?? '');
  return m?.[1];
}

export interface AuthenticatorOptions {
  /** CLIENT_TOKEN: the default tenant's shared token ('' = none). */
  token: string;
  /** CLIENT_KEYS_FILE ('' = none). */
  keysFile: string;
  logger?: Logger;
}

export class ClientAuthenticator {
  private byDigest = new Map<string, StoredKey>();
  private seen: string | undefined;

  constructor(private readonly opts: AuthenticatorOptions) {
    this.reload();
  }

  /** Where keys come from, for the start-up log. */
  describe(): { token: boolean; keysFile: string; keys: number } {
    this.reload();
    return { token: this.opts.token !== '', keysFile: this.opts.keysFile, keys: this.byDigest.size };
  }

  /** The principal of an `authorization` header value; UNAUTHENTICATED (naming what was wrong) otherwise. */
  authenticate(authorization: string | undefined): Principal {
    if (authorization === undefined || authorization.trim() === '') {
      throw new CodegenError('UNAUTHENTICATED', 'authorization: no credential was sent; send "authorization: Bearer <key>" (a key from "codegen-mcp keys add", or CLIENT_TOKEN)');
    }
    const presented = bearerToken(authorization);
    if (presented === undefined) throw new CodegenError('UNAUTHENTICATED', 'authorization: must be "Bearer <key>"');
    if (tokenMatches(presented, this.opts.token)) return { tenant: DEFAULT_TENANT, admin: true, credential: 'CLIENT_TOKEN' };
    this.reload();
    const key = this.byDigest.get(keyDigest(presented));
    if (key) return { tenant: key.tenant, admin: key.admin, credential: `key ${key.id}` };
    const id = keyIdOf(presented);
    throw new CodegenError('UNAUTHENTICATED', id ? `authorization: API key ${id} is not valid (removed, or never added to this coordinator's CLIENT_KEYS_FILE)` : 'authorization: the bearer credential is not valid (not CLIENT_TOKEN, not a key of CLIENT_KEYS_FILE)');
  }

  /** Re-reads the keys file when its identity, size or time changed; a bad file keeps the keys read before. */
  private reload(): void {
    const file = this.opts.keysFile;
    if (!file) return;
    let stamp: string;
    try {
      const st = statSync(file);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      stamp = 'absent';
    }
    if (stamp === this.seen) return;
    this.seen = stamp;
    try {
      const keys = stamp === 'absent' ? [] : readKeysFile(file);
      this.byDigest = new Map(keys.map((k) => [k.sha256, k]));
      this.opts.logger?.info({ keysFile: file, keys: keys.length }, 'client keys loaded');
    } catch (err) {
      this.opts.logger?.error({ keysFile: file, err: (err as Error).message }, 'client keys file unreadable; keeping the keys read before');
    }
  }
}
