/**
 * The inspection sanitiser (src/inspection/sanitise.ts), which every actor context and event
 * passes before it reaches the Stately inspector or the live view:
 * - secrets planted at random depths under sensitive keys (any case: `StdOut`, `apiToken`), as
 *   the value of an `env` variable, as an `argv` element, as strings, buffers, arrays, maps or
 *   sets, never show in the JSON sent, in any encoding (text, Buffer JSON, base64, hex);
 * - short strings and numbers under ordinary keys come out unchanged at the same path, so the
 *   sanitiser hides by key and does not just erase everything;
 * - it never changes its input (circular or not), never throws, and what it returns survives
 *   JSON: JSON.parse(JSON.stringify(out)) equals out.
 * Examples pin the format of each rule.
 *
 * Reproduce a failure with FC_SEED=<seed> (and FC_PATH=<path>) from the report; FC_RUNS sets the
 * number of runs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createActor, createMachine } from 'xstate';
import { sanitise, sanitiseContext, sanitiseEvent } from '../../src/inspection/sanitise.js';

const runs = Number(process.env.FC_RUNS ?? 300);
const reproduce = {
  ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
  ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
};

// ------------------------------------------------------------------ arbitraries

/** Every planted secret starts with this; a leak of any of them shows it in one of these forms. */
const MARK = 'S3CR3T';
const markBytes = Buffer.from(MARK);
const LEAKS = [
  MARK,
  [...markBytes].join(','), // Buffer#toJSON: {"type":"Buffer","data":[83,51,…]}
  '"0":83,"1":51,"2":67', // a Uint8Array through JSON.stringify: {"0":83,"1":51,…}
  markBytes.toString('base64'), // 6 bytes: exactly 8 characters, whatever follows
  markBytes.toString('hex'),
];
const secret = fc.stringMatching(/^[A-Za-z0-9]{12,20}$/).map((s) => `${MARK}-${s}`);

/** Keys the sanitiser has no reason to hide; the test knows them without repeating its rules. */
const PLAIN_KEYS = ['taskId', 'sessionId', 'path', 'name', 'state', 'status', 'count', 'tool', 'spec', 'call', 'meta', 'items', 'attempt', 'workerId', 'x', 'y'];
const plainKey = fc.oneof(fc.constantFrom(...PLAIN_KEYS), fc.stringMatching(/^k[0-9]{1,3}$/));
const isPlainKey = (k: string): boolean => PLAIN_KEYS.includes(k) || /^k[0-9]{1,3}$/.test(k);

const sensitiveName = fc.mixedCase(
  fc.constantFrom(
    'content', 'contents', 'code', 'data', 'chunk', 'bytes', 'stdout', 'stderr', 'stdin', 'text', 'script', 'source', 'body',
    'output', 'token', 'secret', 'password', 'passphrase', 'authorization', 'credential', 'credentials', 'cookie', 'apikey',
    'api_key', 'privatekey', 'private_key', 'key', 'cert', 'signature', 'workertoken', 'clienttoken',
    'StdOut', 'apiToken', 'GITHUB_TOKEN', 'dbPassword', 'clientSecret', 'awsCredentials', 'x-auth-token', 'workerToken',
  ),
);
const envName = fc.mixedCase(fc.constantFrom('env', 'envVars', 'env_vars', 'environment', 'variables'));
const argvName = fc.mixedCase(fc.constantFrom('argv', 'args'));

const shortString = fc.string({ maxLength: 40 }).filter((s) => !s.includes(MARK));
const number = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }));
const leaf = fc.oneof(
  { weight: 4, arbitrary: shortString },
  { weight: 3, arbitrary: number },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.string({ minLength: 201, maxLength: 300 }).filter((s) => !s.includes(MARK)) },
);

/** Nested JSON-like values under plain keys. */
const { tree } = fc.letrec<{ tree: unknown; arr: unknown[]; obj: Record<string, unknown> }>((tie) => ({
  tree: fc.oneof({ depthSize: 'small' }, leaf, tie('arr'), tie('obj')),
  arr: fc.array(tie('tree'), { maxLength: 4 }),
  obj: fc.dictionary(plainKey, tie('tree'), { maxKeys: 4 }),
}));
const siblings = (maxKeys: number) => fc.dictionary(plainKey, tree, { maxKeys });

/** What a secret looks like under a sensitive key. */
const hiddenValue = fc.oneof(
  secret,
  secret.map((s) => Buffer.from(s)),
  secret.map((s) => new TextEncoder().encode(s)),
  secret.map((s) => {
    const b = Buffer.from(s);
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
  }),
  fc.array(secret, { minLength: 1, maxLength: 3 }),
  fc.tuple(plainKey, secret).map(([k, s]) => ({ [k]: s })),
  fc.tuple(secret, fc.string({ minLength: 200, maxLength: 300 })).map(([s, tail]) => s + tail), // a cut would keep its start
  secret.map((s) => new Map([['value', s]])),
  secret.map((s) => new Set([s])),
);
/** An env object (or Map) with a secret as one variable's value, its name innocent or not. */
const envValue = fc
  .tuple(
    fc.mixedCase(fc.constantFrom('GITHUB_TOKEN', 'API_KEY', 'HOME', 'PYTHONPATH', 'MY_VAR')),
    secret,
    fc.dictionary(fc.stringMatching(/^[A-Z_]{1,8}$/), fc.string({ maxLength: 10 }), { maxKeys: 3 }),
    fc.boolean(),
  )
  .map(([name, s, rest, asMap]) => (asMap ? new Map([...Object.entries(rest), [name, s]]) : { ...rest, [name]: s }));
/** A command line with the secret somewhere in it. */
const argvValue = fc
  .tuple(fc.array(fc.string({ maxLength: 10 }), { maxLength: 4 }), secret, fc.nat())
  .map(([args, s, at]) => {
    const a: unknown[] = [...args];
    a.splice(at % (a.length + 1), 0, s);
    return a;
  });

interface Plant {
  key: string;
  value: unknown;
}
const plant: fc.Arbitrary<Plant> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ key: sensitiveName, value: hiddenValue }) },
  { weight: 1, arbitrary: fc.record({ key: envName, value: envValue }) },
  { weight: 1, arbitrary: fc.record({ key: argvName, value: argvValue }) },
);

/** One level of nesting around a plant, innermost first: into an object's key, or an array's slot. */
type Step = { in: 'key'; key: string; siblings: Record<string, unknown> } | { in: 'index'; items: unknown[]; at: number };
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ in: fc.constant('key' as const), key: plainKey, siblings: siblings(2) }),
  fc.record({ in: fc.constant('index' as const), items: fc.array(tree, { maxLength: 3 }), at: fc.nat() }),
);
interface Planted {
  plant: Plant;
  siblings: Record<string, unknown>;
  path: Step[];
}
const planted: fc.Arbitrary<Planted> = fc.record({ plant, siblings: siblings(3), path: fc.array(step, { maxLength: 12 }) });

function build(p: Planted): unknown {
  let v: unknown = { ...p.siblings, [p.plant.key]: p.plant.value };
  for (const s of p.path) {
    if (s.in === 'key') v = { ...s.siblings, [s.key]: v };
    else {
      const a = [...s.items];
      a.splice(s.at % (a.length + 1), 0, v);
      v = a;
    }
  }
  return v;
}

/** A context: plain fields, one plant at the top, and 1–4 more at random depths. */
const context = fc
  .record({ base: siblings(4), top: plant, plants: fc.array(planted, { minLength: 1, maxLength: 4 }) })
  .map(({ base, top, plants }) => {
    const ctx: Record<string, unknown> = { ...base, [top.key]: top.value };
    plants.forEach((p, i) => (ctx[`k${900 + i}`] = build(p)));
    return ctx;
  });

/** Every short string and number reachable through plain keys within the sanitiser's limits (depth 8, 50 items). */
function plainLeaves(v: unknown, depth = 0, path: (string | number)[] = [], out: [(string | number)[], string | number][] = []) {
  if (typeof v === 'string') {
    if (v.length <= 200) out.push([path, v]);
  } else if (typeof v === 'number') out.push([path, v]);
  else if (v !== null && typeof v === 'object' && depth <= 8) {
    if (Array.isArray(v)) v.slice(0, 50).forEach((x, i) => plainLeaves(x, depth + 1, [...path, i], out));
    else if ([Object.prototype, null].includes(Object.getPrototypeOf(v)))
      for (const k of Object.keys(v)) if (isPlainKey(k)) plainLeaves((v as Record<string, unknown>)[k], depth + 1, [...path, k], out);
  }
  return out;
}
const at = (v: unknown, path: (string | number)[]): unknown => path.reduce<unknown>((o, k) => (o as Record<string | number, unknown> | undefined)?.[k], v);

/** Anything an actor's context could hold, under any key. */
const anyKey = fc.oneof(plainKey, sensitiveName, envName, argvName, fc.string({ maxLength: 8 }));
const wildLeaf = fc.oneof(
  { weight: 6, arbitrary: leaf },
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.bigInt() },
  { weight: 1, arbitrary: fc.constantFrom(Number.NaN, Infinity, -Infinity, -0) },
  { weight: 1, arbitrary: fc.date({ noInvalidDate: true }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }).map((m) => new Error(m)) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 150, maxLength: 300 }) }, // astral characters around the cut
);
const { wild } = fc.letrec<{ wild: unknown; arr: unknown[]; long: unknown[]; obj: Record<string, unknown>; map: Map<unknown, unknown>; set: Set<unknown> }>(
  (tie) => ({
    wild: fc.oneof({ depthSize: 'small' }, wildLeaf, tie('arr'), tie('obj'), tie('map'), tie('set'), tie('long')),
    arr: fc.array(tie('wild'), { maxLength: 4 }),
    long: fc.array(leaf, { minLength: 45, maxLength: 70 }),
    obj: fc.dictionary(anyKey, tie('wild'), { maxKeys: 4, noNullPrototype: true }),
    map: fc.array(fc.tuple(fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), tie('wild')), { maxLength: 3 }).map((es) => new Map(es)),
    set: fc.array(tie('wild'), { maxLength: 3 }).map((xs) => new Set(xs)),
  }),
);

/** The containers of v, each once. */
function containers(v: unknown, out: object[] = [], seen = new Set<object>()): object[] {
  if (v === null || typeof v !== 'object' || seen.has(v) || ArrayBuffer.isView(v) || v instanceof Date || v instanceof Error) return out;
  seen.add(v);
  out.push(v);
  const children = v instanceof Map ? [...v.values()] : v instanceof Set ? [...v] : Object.values(v);
  for (const c of children) containers(c, out, seen);
  return out;
}

/** Adds references from one container to another (to itself, an ancestor: a cycle; elsewhere: a shared value). */
function link(v: unknown, links: [number, number][]): void {
  const all = containers(v);
  if (all.length === 0) return;
  links.forEach(([i, j], n) => {
    const from = all[i % all.length]!;
    const to = all[j % all.length]!;
    if (from instanceof Map) from.set(`loop${n}`, to);
    else if (from instanceof Set) from.add(to);
    else if (Array.isArray(from)) from.push(to);
    else (from as Record<string, unknown>)[`loop${n}`] = to;
  });
}

// ------------------------------------------------------------------ properties

describe('inspection sanitiser (property)', () => {
  it('never lets a secret under a sensitive, env or argv key through, at any depth', () => {
    fc.assert(
      fc.property(context, (ctx) => {
        for (const out of [sanitise(ctx), sanitiseContext(ctx), sanitiseEvent({ type: 'task.submit', ...ctx })]) {
          const json = JSON.stringify(out);
          for (const leak of LEAKS) expect(json).not.toContain(leak);
        }
      }),
      { numRuns: runs, ...reproduce },
    );
  });

  it('keeps short strings and numbers under plain keys as they are, at the same path', () => {
    let checked = 0;
    fc.assert(
      fc.property(context, (ctx) => {
        const out = sanitise(ctx);
        const event = sanitiseEvent({ type: 'task.submit', ...ctx });
        expect(event.type).toBe('task.submit');
        for (const [path, value] of plainLeaves(ctx)) {
          const expected = value === 0 ? 0 : value; // -0 is 0 in JSON
          expect(at(out, path), path.join('.')).toBe(expected);
          expect(at(event, path), path.join('.')).toBe(expected);
          checked++;
        }
      }),
      { numRuns: runs, ...reproduce },
    );
    expect(checked).toBeGreaterThan(runs);
  });

  it('never changes its input, handles cycles and shared values, never throws, and returns what JSON keeps', () => {
    let cyclic = 0;
    fc.assert(
      fc.property(wild, fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 3 }), (generated, links) => {
        // Links change the value: they go into a copy, never into what fast-check keeps for shrinking.
        const input = structuredClone(generated);
        link(input, links);
        const before = structuredClone(input);
        const out = sanitise(input);
        expect(input).toEqual(before);
        const json = JSON.stringify(out);
        if (json === undefined) expect(input).toBeUndefined();
        else {
          expect(JSON.parse(json)).toStrictEqual(out);
          if (json.includes('‹circular›')) cyclic++;
        }
      }),
      { numRuns: runs, ...reproduce },
    );
    expect(cyclic).toBeGreaterThan(0);
  });
});

// ------------------------------------------------------------------ examples

describe('inspection sanitiser (examples)', () => {
  it('keeps an event’s type and names, and replaces file contents by their size', () => {
    const event = { type: 'task.submit', spec: { taskId: 't1', call: { tool: 'file_write', args: { path: 'a.txt', content: 'hello' } } } };
    const copy = structuredClone(event);
    expect(sanitiseEvent(event)).toEqual({ type: 'task.submit', spec: { taskId: 't1', call: { tool: 'file_write', args: { path: 'a.txt', content: '‹5 chars›' } } } });
    expect(event).toEqual(copy);
  });

  it('keeps env variable names and hides their values', () => {
    expect(sanitise({ env: { API_KEY: 'abc' } })).toEqual({ env: { API_KEY: '‹3 chars›' } });
    expect(sanitise({ Environment: new Map<string, unknown>([['HOME', '/root'], ['N', 3]]) })).toEqual({ Environment: { HOME: '‹5 chars›', N: 3 } });
    expect(sanitise({ argv: ['python', '-c', 'print(1)'], args: { path: 'a.py' } })).toEqual({ argv: ['‹6 chars›', '‹2 chars›', '‹8 chars›'], args: { path: 'a.py' } });
  });

  it('gives sizes under sensitive keys, and keeps numbers, booleans and null there', () => {
    expect(
      sanitise({ StdOut: 'x'.repeat(10), data: Buffer.from('abcd'), chunk: new Uint8Array(7).buffer, stderr: ['a', 'b'], body: { a: 1, b: 2 }, token: 42, secret: null, password: true }),
    ).toEqual({ StdOut: '‹10 chars›', data: '‹4 bytes›', chunk: '‹7 bytes›', stderr: '‹2 items›', body: '‹object, 2 keys›', token: 42, secret: null, password: true });
    expect(sanitise(Buffer.from('hello'))).toBe('‹5 bytes›');
  });

  it('cuts long strings, deep values and long arrays', () => {
    expect(sanitise({ note: 'a'.repeat(300) })).toEqual({ note: `${'a'.repeat(120)}… ‹300 chars›` });
    expect(sanitise('b'.repeat(200))).toBe('b'.repeat(200));
    let deep: unknown = { leaf: 1 };
    for (let i = 0; i < 12; i++) deep = { x: deep };
    const out = sanitise(deep);
    expect(at(out, Array(8).fill('x'))).toEqual({ x: '‹object›' });
    const long = sanitise(Array.from({ length: 60 }, (_, i) => i)) as unknown[];
    expect(long).toHaveLength(51);
    expect(long[49]).toBe(49);
    expect(long[50]).toBe('‹10 more›');
  });

  it('names functions and actors, and flattens Maps, Sets, Errors, Dates and odd numbers', () => {
    const actor = createActor(createMachine({ id: 'm' }), { id: 'session-1' });
    function run() {}
    const out = sanitise({
      actor,
      run,
      map: new Map<unknown, unknown>([[1, 'one'], ['stdout', 'secret']]),
      set: new Set(['a', 'a', 'b']),
      error: new TypeError('boom'),
      when: new Date(0),
      never: new Date(Number.NaN),
      big: 10n,
      nan: Number.NaN,
      gone: undefined,
      holes: [undefined, 1],
    });
    expect(out).toEqual({
      actor: '‹actor session-1›',
      run: '‹function run›',
      map: { 1: 'one', stdout: '‹6 chars›' },
      set: ['a', 'b'],
      error: { name: 'TypeError', message: 'boom' },
      when: '1970-01-01T00:00:00.000Z',
      never: 'Invalid Date',
      big: '10',
      nan: 'NaN',
      holes: [null, 1],
    });
    expect(Object.keys(out as object)).not.toContain('gone');
  });

  it('marks only real cycles; a value shared by two branches shows twice', () => {
    const shared = { n: 1 };
    const a: Record<string, unknown> = { x: 1, left: shared, right: shared };
    a.self = a;
    expect(sanitise(a)).toEqual({ x: 1, left: { n: 1 }, right: { n: 1 }, self: '‹circular›' });
    const event: { type: string } & Record<string, unknown> = { type: 'loop' };
    event.again = event;
    expect(sanitiseEvent(event)).toEqual({ type: 'loop', again: '‹circular›' });
  });

  it('copies a "__proto__" key as a key, never as a prototype, and survives a throwing getter', () => {
    const input = JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}') as unknown;
    const out = sanitise(input) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.keys(out)).toEqual(['__proto__', 'ok']);
    expect(JSON.stringify(out)).toBe('{"__proto__":{"polluted":true},"ok":1}');
    const nasty = Object.defineProperty({}, 'boom', { enumerable: true, get: () => { throw new Error('no'); } });
    expect(sanitise({ fine: 1, nasty })).toEqual({ fine: 1, nasty: '‹unreadable›' });
  });
});

describe('inspection sanitiser (credentials in URLs and key names)', () => {
  it("hides a URL's user and password wherever the string sits, and keys that name keys or passwords", () => {
    const out = sanitise({
      spec: { call: { input: { index_url: 'https://bob:hunter2@pypi.example/simple', packages: ['git+https://ghp_abc123@github.com/o/r.git', 'requests==2'] } } },
      progress: { message: 'pip install git+https://tok:x-oauth@github.com/o/r.git' },
      githubApiKey: 'k-123',
      sshPrivateKey: 'pk',
      dbPasswd: 'pw',
      bearerValue: 'b',
    });
    const text = JSON.stringify(out);
    for (const secret of ['hunter2', 'bob:', 'ghp_abc123', 'tok:x-oauth', 'k-123', '"pk"', '"pw"', '"b"']) expect(text).not.toContain(secret);
    expect(text).toContain('pypi.example/simple');
    expect(text).toContain('requests==2');
  });
});
