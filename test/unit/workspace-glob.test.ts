import { describe, expect, it } from 'vitest';
import { globMatcher, globToRegExp } from '../../src/worker/tools/glob.js';

const m = (pattern: string, rel: string): boolean => globMatcher(pattern)(rel, rel.split('/').pop()!);

describe('fs_list globs', () => {
  it('* and ? stay within one path segment', () => {
    expect(globToRegExp('*.py').test('a.py')).toBe(true);
    expect(globToRegExp('*.py').test('a/b.py')).toBe(false);
    expect(globToRegExp('?.txt').test('a.txt')).toBe(true);
    expect(globToRegExp('?.txt').test('ab.txt')).toBe(false);
  });

  it('** spans any number of whole segments, zero included', () => {
    expect(m('**/*.py', 'a.py')).toBe(true);
    expect(m('**/*.py', 'x/y/a.py')).toBe(true);
    expect(m('src/**', 'src/a/b')).toBe(true);
    expect(m('src/**/test_*.py', 'src/test_a.py')).toBe(true);
    expect(m('src/**/test_*.py', 'src/x/y/test_a.py')).toBe(true);
    expect(m('src/**/test_*.py', 'lib/test_a.py')).toBe(false);
  });

  it('classes, negated classes, and literal specials', () => {
    expect(m('[abc].txt', 'b.txt')).toBe(true);
    expect(m('[!abc].txt', 'b.txt')).toBe(false);
    expect(m('[a-c]x', 'cx')).toBe(true);
    expect(m('[^a]x', 'bx')).toBe(true);
    expect(m('a+b(1).txt', 'a+b(1).txt')).toBe(true);
    expect(m('[unclosed', '[unclosed')).toBe(true);
  });

  it('a pattern without a slash matches names at any depth; with one, the relative path', () => {
    expect(m('*.py', 'deep/er/x.py')).toBe(true);
    expect(m('pkg/*.py', 'pkg/x.py')).toBe(true);
    expect(m('pkg/*.py', 'other/pkg/x.py')).toBe(false);
    expect(m('', 'anything/at/all')).toBe(true);
  });
});
