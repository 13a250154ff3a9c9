/**
 * The inspection sanitiser: every actor context and event passes here before it leaves the
 * process for the Stately inspector or the live view. What leaves must never carry file
 * contents, stdout/stderr, env values or tokens, so values under sensitive keys become their
 * size (`‹5 chars›`, `‹3 bytes›`, `‹2 items›`, `‹object, 4 keys›`); names and numbers stay, so a
 * run can still be followed.
 *
 * The rule is about keys: a secret stored under an innocent key (say `note`) passes, cut only if
 * it is long. Error messages pass too (cut). Callers must keep secrets under the names below.
 *
 * The output is always JSON-safe: JSON.parse(JSON.stringify(out)) equals out. The input is never
 * changed. It runs on every actor event while inspection is on, so it is one pass, with no
 * regular expressions per value and the key classification cached.
 */

// Exact key names (lower-cased) whose values are summarised, never shown.
const SENSITIVE = new Set([
  'content', 'contents', 'code', 'data', 'chunk', 'bytes', 'stdout', 'stderr', 'stdin', 'text',
  'script', 'source', 'body', 'output', 'token', 'secret', 'password', 'passphrase',
  'authorization', 'credential', 'credentials', 'cookie', 'apikey', 'api_key', 'privatekey',
  'private_key', 'key', 'cert', 'signature', 'workertoken', 'clienttoken',
  // A task's log line is its stdout or stderr.
  'line', 'lines', 'chunks',
]);
// Any key containing one of these is sensitive too (apiToken, GITHUB_TOKEN, dbPassword…).
const SENSITIVE_PARTS = ['token', 'secret', 'password', 'passwd', 'credential', 'apikey', 'api_key', 'privatekey', 'private_key', 'bearer'];
// Env-like objects: the variable names are useful, their values are not ours to show.
const ENV_LIKE = new Set(['env', 'envvars', 'env_vars', 'environment', 'variables']);
// Command lines: a positional argument may be a token (`--token abc`), so strings become sizes.
const ARGV_LIKE = new Set(['argv', 'args']);

const MAX_DEPTH = 8;
const MAX_ITEMS = 50;
const LONG = 200;
const KEEP = 120;

const PLAIN = 0;
const HIDDEN = 1;
const ENV = 2;
const ARGV = 3;
type KeyKind = typeof PLAIN | typeof HIDDEN | typeof ENV | typeof ARGV;

// The same few key names come by on every event: classify each once (bounded, since Map keys
// such as session ids could otherwise grow it without end).
const kinds = new Map<string, KeyKind>();

function keyKind(key: string): KeyKind {
  let kind = kinds.get(key);
  if (kind !== undefined) return kind;
  const lower = key.toLowerCase();
  if (SENSITIVE.has(lower) || SENSITIVE.has(lower.replace(/[-_]/g, '')) || SENSITIVE_PARTS.some((p) => lower.includes(p))) kind = HIDDEN;
  else if (ENV_LIKE.has(lower)) kind = ENV;
  else if (ARGV_LIKE.has(lower)) kind = ARGV;
  else kind = PLAIN;
  if (kinds.size < 10_000) kinds.set(key, kind);
  return kind;
}

type Bytes = ArrayBuffer | ArrayBufferView | SharedArrayBuffer;
const hasSab = typeof SharedArrayBuffer !== 'undefined';
const isBytes = (o: object): o is Bytes => ArrayBuffer.isView(o) || o instanceof ArrayBuffer || (hasSab && o instanceof SharedArrayBuffer);

type ActorLike = { id?: unknown; sessionId?: unknown };
// An XState actor ref: walking it would drag in its logic, system and children. Its id says enough.
const isActor = (o: object): o is ActorLike =>
  typeof (o as { send?: unknown }).send === 'function' && typeof (o as { getSnapshot?: unknown }).getSnapshot === 'function';
const actorLabel = (o: ActorLike): string => `‹actor ${String(o.id ?? o.sessionId ?? 'anonymous')}›`;

const fnLabel = (f: Function): string => `‹function ${f.name || 'anonymous'}›`;

// NaN and ±Infinity do not survive JSON (they become null); -0 comes back as 0.
const num = (n: number): number | string => (Number.isFinite(n) ? (n === 0 ? 0 : n) : String(n));

// `scheme://user:password@host`: the credentials part of a URL (an index URL, a git+https package).
const URL_USERINFO = /([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi;

/**
 * A long string keeps its start (not splitting a surrogate pair) and says how long it was; a URL's
 * user and password, anywhere in a string, become `‹credentials›`.
 */
function cut(s: string): string {
  if (s.includes('://') && s.includes('@')) s = s.replace(URL_USERINFO, '$1‹credentials›@');
  if (s.length <= LONG) return s;
  let end = KEEP;
  const c = s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--;
  return `${s.slice(0, end)}… ‹${s.length} chars›`;
}

/** The value under a sensitive key: its size only. Scalars that cannot be contents stay. */
function summarise(v: unknown): unknown {
  switch (typeof v) {
    case 'string':
      return `‹${v.length} chars›`;
    case 'number':
      return num(v);
    case 'boolean':
    case 'undefined':
      return v;
    case 'bigint':
      return String(v);
    case 'function':
      return fnLabel(v);
    case 'symbol':
      return '‹symbol›';
  }
  if (v === null) return null;
  const o = v as object;
  try {
    if (isBytes(o)) return `‹${o.byteLength} bytes›`;
    if (Array.isArray(o)) return `‹${o.length} items›`;
    if (o instanceof Set) return `‹${o.size} items›`;
    if (o instanceof Map) return `‹object, ${o.size} keys›`;
    if (isActor(o)) return actorLabel(o);
    return `‹object, ${Object.keys(o).length} keys›`;
  } catch {
    return '‹unreadable›';
  }
}

/** Sets out[key], also for "__proto__" (a plain assignment would change out's prototype). */
function set(out: Record<string, unknown>, key: string, value: unknown): void {
  if (value === undefined) return;
  if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  else out[key] = value;
}

/** The value x found under `key` of a container at `depth`, per the key's kind. */
function put(out: Record<string, unknown>, key: string, x: unknown, depth: number, seen: Set<object>): void {
  let y: unknown;
  try {
    const kind = keyKind(key);
    if (kind === HIDDEN) y = summarise(x);
    else if (kind === ENV) y = envValues(x, depth + 1);
    else y = walk(x, depth + 1, seen, kind === ARGV);
  } catch {
    y = '‹unreadable›';
  }
  set(out, key, y);
}

/** An env-like object keeps its variable names; every value becomes its size. */
function envValues(x: unknown, depth: number): unknown {
  if (x === null || typeof x !== 'object' || isBytes(x) || Array.isArray(x) || x instanceof Set || isActor(x)) return summarise(x);
  if (depth > MAX_DEPTH) return '‹object›';
  const out: Record<string, unknown> = {};
  if (x instanceof Map) for (const [k, v] of x) set(out, String(k), summarise(v));
  else for (const k of Object.keys(x)) set(out, k, summarise((x as Record<string, unknown>)[k]));
  return out;
}

/** The first MAX_ITEMS items, then how many more there were. Holes and undefined become null, as in JSON. */
function list(items: Iterable<unknown>, size: number, depth: number, seen: Set<object>, argv: boolean): unknown[] {
  const out: unknown[] = [];
  for (const x of items) {
    if (out.length === MAX_ITEMS) {
      out.push(`‹${size - MAX_ITEMS} more›`);
      break;
    }
    const y = walk(x, depth + 1, seen, argv);
    out.push(y === undefined ? null : y);
  }
  return out;
}

/**
 * Any value at `depth` (the root is 0). `seen` holds the containers on the path from the root
 * only, so a value shared by two branches is shown twice and only a real cycle is `‹circular›`.
 * `argv`: inside a command line, where every string is an argument.
 */
function walk(v: unknown, depth: number, seen: Set<object>, argv: boolean): unknown {
  switch (typeof v) {
    case 'string':
      return argv ? `‹${v.length} chars›` : cut(v);
    case 'number':
      return num(v);
    case 'boolean':
    case 'undefined':
      return v;
    case 'bigint':
      return String(v);
    case 'function':
      return fnLabel(v);
    case 'symbol':
      return cut(v.toString());
  }
  if (v === null) return null;
  const o = v as object;
  if (seen.has(o)) return '‹circular›';
  try {
    if (isBytes(o)) return `‹${o.byteLength} bytes›`;
    if (isActor(o)) return actorLabel(o);
    if (o instanceof Date) return Number.isNaN(o.getTime()) ? 'Invalid Date' : o.toISOString();
    const isList = Array.isArray(o) || o instanceof Set;
    if (depth > MAX_DEPTH) return isList ? `‹${Array.isArray(o) ? o.length : (o as Set<unknown>).size} items›` : '‹object›';
    // Stack traces name files and lines, not what an operator needs here; name and message do.
    if (o instanceof Error) return { name: cut(String(o.name)), message: cut(String(o.message)) };
    seen.add(o);
    try {
      if (Array.isArray(o)) return list(o, o.length, depth, seen, argv);
      if (o instanceof Set) return list(o, o.size, depth, seen, argv);
      const out: Record<string, unknown> = {};
      if (o instanceof Map) for (const [k, x] of o) put(out, String(k), x, depth, seen);
      else for (const k of Object.keys(o)) put(out, k, (o as Record<string, unknown>)[k], depth, seen);
      return out;
    } finally {
      seen.delete(o);
    }
  } catch {
    // A throwing getter or a revoked proxy must not take the inspector (or an actor) down.
    return '‹unreadable›';
  }
}

/** A JSON-safe copy of `value` with contents, output, env values and tokens replaced by their sizes. */
export function sanitise(value: unknown): unknown {
  return walk(value, 0, new Set(), false);
}

/** An actor's context: the same rules. */
export function sanitiseContext(context: unknown): unknown {
  return walk(context, 0, new Set(), false);
}

/** An event: `type` as it is (it names the transition), every other field sanitised. */
export function sanitiseEvent(event: { type: string } & Record<string, unknown>): { type: string } & Record<string, unknown> {
  const out: { type: string } & Record<string, unknown> = { type: event.type };
  const seen = new Set<object>([event]);
  try {
    for (const k of Object.keys(event)) if (k !== 'type') put(out, k, event[k], 0, seen);
  } catch {
    out.unreadable = true;
  }
  return out;
}
