/**
 * `SESSION_ID:path`, as docker cp writes a container's path: the part before the first ':' is a
 * session id when it has the shape of one and no '/'. A local path with a ':' is written with a
 * './' or '/' in front (`./a:b`). `SESSION_ID:` alone is the session's workspace root.
 */
import { sessionIdPattern } from '../../domain/ids.js';

export type Location = { kind: 'session'; sessionId: string; path: string } | { kind: 'local'; path: string };

export function parseLocation(arg: string): Location {
  const colon = arg.indexOf(':');
  if (colon > 0) {
    const id = arg.slice(0, colon);
    if (!id.includes('/') && sessionIdPattern.test(id)) return { kind: 'session', sessionId: id, path: normalise(arg.slice(colon + 1)) };
  }
  return { kind: 'local', path: arg };
}

/** Workspace paths are relative to its root: a leading '/' or './' means the root too. */
export function normalise(p: string): string {
  let out = p.replace(/^\/+/, '');
  while (out.startsWith('./')) out = out.slice(2);
  return out === '.' ? '' : out;
}

/** The last name of a path ('' for the root). */
export const baseName = (p: string): string => p.replace(/\/+$/, '').split('/').pop() ?? '';

/** `dir/name` for a workspace path ('' is the root). */
export const joinPath = (dir: string, name: string): string => (dir === '' ? name : `${dir.replace(/\/+$/, '')}/${name}`);
