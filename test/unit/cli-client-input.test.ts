/** The command line's pure parts: when a repl input is complete, and how SESSION_ID:path is read. */
import { describe, expect, it } from 'vitest';
import { needsMore } from '../../src/cli/client/repl-input.js';
import { parseLocation } from '../../src/cli/client/session-path.js';
import { exitCodeOf } from '../../src/cli/client/run.js';

describe('repl input', () => {
  it('runs a simple statement or expression at once', () => {
    expect(needsMore(['x = 41'])).toBe(false);
    expect(needsMore(['x + 1'])).toBe(false);
    expect(needsMore(['d = {"a": 1}'])).toBe(false);
    expect(needsMore(['s = "a:"  # ends with a colon in a string'])).toBe(false);
    expect(needsMore(['for i in range(3): print(i)'])).toBe(false);
  });

  it('continues a block (a line ending in ":" or a decorator) until a blank line', () => {
    expect(needsMore(['for i in range(3):'])).toBe(true);
    expect(needsMore(['for i in range(3):', '    print(i)'])).toBe(true);
    expect(needsMore(['for i in range(3):', '    print(i)', ''])).toBe(false);
    expect(needsMore(['if x:  # a comment'])).toBe(true);
    expect(needsMore(['@decorator'])).toBe(true);
    expect(needsMore(['class A:', '    def f(self):', '        return 1', ''])).toBe(false);
  });

  it('continues open brackets, triple-quoted strings and backslashes, blank lines included', () => {
    expect(needsMore(['print(1,'])).toBe(true);
    expect(needsMore(['print(1,', ''])).toBe(true);
    expect(needsMore(['print(1,', '2)'])).toBe(false);
    expect(needsMore(['s = """one'])).toBe(true);
    expect(needsMore(['s = """one', 'two"""'])).toBe(false);
    expect(needsMore(['x = 1 + \\'])).toBe(true);
    expect(needsMore(['x = ")" + "("'])).toBe(false);
  });
});

describe('SESSION_ID:path', () => {
  it('names a session when the part before the first colon has the shape of an id', () => {
    expect(parseLocation('sess-1a2b:data/x.csv')).toEqual({ kind: 'session', sessionId: 'sess-1a2b', path: 'data/x.csv' });
    expect(parseLocation('sess-1a2b:')).toEqual({ kind: 'session', sessionId: 'sess-1a2b', path: '' });
    expect(parseLocation('sess-1a2b:/abs/./x')).toEqual({ kind: 'session', sessionId: 'sess-1a2b', path: 'abs/./x' });
    expect(parseLocation('sess-1a2b:./x')).toEqual({ kind: 'session', sessionId: 'sess-1a2b', path: 'x' });
  });

  it('is a local path otherwise: no colon, a slash before it, or a leading ./', () => {
    expect(parseLocation('data.csv')).toEqual({ kind: 'local', path: 'data.csv' });
    expect(parseLocation('./a:b')).toEqual({ kind: 'local', path: './a:b' });
    expect(parseLocation('/tmp/a:b')).toEqual({ kind: 'local', path: '/tmp/a:b' });
    expect(parseLocation('-')).toEqual({ kind: 'local', path: '-' });
    expect(parseLocation(':x')).toEqual({ kind: 'local', path: ':x' });
  });
});

describe("run's exit status", () => {
  it("is the program's, signals as 128+n, and never 0 for a failure", () => {
    expect(exitCodeOf(0, false)).toBe(0);
    expect(exitCodeOf(3, true)).toBe(3);
    expect(exitCodeOf(-9, true)).toBe(137);
    expect(exitCodeOf(0, true)).toBe(1);
    expect(exitCodeOf(300, true)).toBe(1);
  });
});
