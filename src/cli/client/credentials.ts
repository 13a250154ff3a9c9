/**
 * Where a client of the coordinator finds its credential, in one order for every command that
 * dials it (`mcp` with COORDINATOR_ADDR and the people's commands): a token given outright
 * (CLIENT_TOKEN or --token), else the token file (CLIENT_TOKEN_FILE, else the one a coordinator
 * on this host made in its state folder).
 */
import path from 'node:path';
import { clientTokenFileIn, defaultStateDir, readTokenFile } from '../../auth/secrets.js';

export interface CredentialSources {
  token?: string;
  tokenFile?: string;
  /** CODEGEN_STATE_DIR ('' or absent: XDG_STATE_HOME/codegen-mcp or ~/.local/state/codegen-mcp). */
  stateDir?: string;
}

/** The token, or undefined with the file that was looked at (for the error that says where). */
export function findClientToken(src: CredentialSources, env: Record<string, string | undefined> = process.env): { token: string | undefined; file: string } {
  const file = src.tokenFile ? path.resolve(src.tokenFile) : clientTokenFileIn(defaultStateDir({ ...env, CODEGEN_STATE_DIR: src.stateDir ?? env['CODEGEN_STATE_DIR'] }));
  if (src.token) return { token: src.token, file };
  return { token: readTokenFile(file), file };
}
