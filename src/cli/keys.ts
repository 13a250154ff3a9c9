/**
 * `codegen-mcp keys add TENANT [--admin] | ls | rm ID`: manages CLIENT_KEYS_FILE. A running
 * coordinator re-reads the file at its next call, so changes take effect without a restart.
 */
import { addKey, readKeysFile, removeKey } from '../auth/keys-file.js';
import { clientKeysFileIn, defaultStateDir } from '../auth/secrets.js';

export const KEYS_HELP = `Usage: codegen-mcp keys <add TENANT [--admin] | ls | rm KEY_ID> [--file PATH]

  add TENANT [--admin]   make an API key for TENANT; prints it once, alone on the last line of stdout
                         (only its SHA-256 is stored). --admin: the key sees every tenant's sessions.
  ls                     list the keys: id, tenant, role, created (never the keys themselves)
  rm KEY_ID              remove a key; calls with it are refused from the next call on

The file is CLIENT_KEYS_FILE, default client-keys.json in the state folder (CODEGEN_STATE_DIR,
default ~/.local/state/codegen-mcp); --file overrides it. A running coordinator re-reads it.
`;

export function keysFileOf(env: Record<string, string | undefined>, flag: string | undefined): string {
  return flag || env['CLIENT_KEYS_FILE'] || clientKeysFileIn(defaultStateDir(env));
}

/** Runs the subcommand; returns the exit code. Output goes to the given writers (stdout for results, stderr for notes). */
export function runKeys(args: string[], env: Record<string, string | undefined>, out: (s: string) => void, err: (s: string) => void): number {
  const rest: string[] = [];
  let file: string | undefined;
  let admin = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--admin') admin = true;
    else if (a === '--file') file = args[++i];
    else if (a.startsWith('--file=')) file = a.slice('--file='.length);
    else if (a === '--help' || a === '-h') {
      out(KEYS_HELP);
      return 0;
    } else if (a.startsWith('--')) {
      err(`codegen-mcp keys: unknown option ${a}\n\n${KEYS_HELP}`);
      return 2;
    } else rest.push(a);
  }
  const [sub, arg, extra] = rest;
  const path = keysFileOf(env, file);
  try {
    switch (sub) {
      case 'add': {
        if (!arg || extra !== undefined) break;
        const { key, stored } = addKey(path, arg, admin);
        err(`added key ${stored.id} for tenant ${stored.tenant}${stored.admin ? ' (admin)' : ''} to ${path}; it is shown once, below — clients send it as "authorization: Bearer <key>"\n`);
        out(`${key}\n`);
        return 0;
      }
      case 'ls':
      case 'list': {
        if (arg !== undefined) break;
        const keys = readKeysFile(path);
        out(`${['ID', 'TENANT', 'ROLE', 'CREATED'].join('\t')}\n`);
        for (const k of keys) out(`${[k.id, k.tenant, k.admin ? 'admin' : 'tenant', new Date(k.createdAtMs).toISOString()].join('\t')}\n`);
        return 0;
      }
      case 'rm':
      case 'remove': {
        if (!arg || extra !== undefined) break;
        if (!removeKey(path, arg)) {
          err(`codegen-mcp keys: no key with id ${JSON.stringify(arg)} in ${path} (see "codegen-mcp keys ls")\n`);
          return 1;
        }
        err(`removed key ${arg} from ${path}\n`);
        return 0;
      }
    }
  } catch (e) {
    err(`codegen-mcp keys: ${(e as Error).message}\n`);
    return 1;
  }
  err(`codegen-mcp keys: ${sub ? `bad arguments for "${sub}"` : 'say add, ls or rm'}\n\n${KEYS_HELP}`);
  return 2;
}
