/**
 * Credentials the coordinator makes for itself when none is configured (secure by default): a
 * random token in a file of mode 0600 under CODEGEN_STATE_DIR, made at first start and reused
 * after. Local clients (`codegen-mcp mcp`, the workers `up` starts) read the same files.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** CODEGEN_STATE_DIR, else $XDG_STATE_HOME/codegen-mcp, else ~/.local/state/codegen-mcp. */
export function defaultStateDir(env: Record<string, string | undefined> = process.env): string {
  if (env['CODEGEN_STATE_DIR']) return path.resolve(env['CODEGEN_STATE_DIR']);
  const xdg = env['XDG_STATE_HOME'];
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.local', 'state'), 'codegen-mcp');
}

export const clientTokenFileIn = (stateDir: string): string => path.join(stateDir, 'client-token');
export const workerTokenFileIn = (stateDir: string): string => path.join(stateDir, 'worker-token');
export const clientKeysFileIn = (stateDir: string): string => path.join(stateDir, 'client-keys.json');

/** The token in `file` (trimmed), or undefined when the file does not exist or is empty. */
export function readTokenFile(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read the token file ${file}: ${(err as Error).message}`);
  }
}

/** The token in `file`, made (32 random bytes, base64url, mode 0600) when there is none yet. */
export function ensureTokenFile(file: string): { token: string; generated: boolean } {
  const existing = readTokenFile(file);
  if (existing) return { token: existing, generated: false };
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  // wx: two coordinators starting at once must not both write; the loser reads the winner's.
  try {
    writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      const theirs = readTokenFile(file);
      if (theirs) return { token: theirs, generated: false };
    }
    throw err;
  }
  chmodSync(file, 0o600);
  return { token, generated: true };
}
