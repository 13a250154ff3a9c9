/**
 * Glob patterns for fs_list: `*` (any run of characters but `/`), `**` (any
 * number of whole path segments), `?` (one character but `/`), `[...]` (a
 * class; `[!...]` or `[^...]` negates). Everything else is literal.
 */

const escapeRegex = (c: string): string => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** The class starting at pattern[i] === '[' as a regex class and the index after it, or null when unterminated. */
function classAt(pattern: string, i: number): { source: string; end: number } | null {
  let j = i + 1;
  let negate = false;
  if (pattern[j] === '!' || pattern[j] === '^') {
    negate = true;
    j++;
  }
  let body = '';
  let first = true;
  while (j < pattern.length && (pattern[j] !== ']' || first)) {
    const c = pattern[j]!;
    if (c === '\\' || c === '^' || c === '[' || c === ']') body += `\\${c}`;
    else body += c; // '-' keeps its range meaning
    first = false;
    j++;
  }
  if (j >= pattern.length) return null;
  return { source: negate ? `[^/${body}]` : `[${body}]`, end: j + 1 };
}

export function globToRegExp(pattern: string): RegExp {
  let re = '';
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        const atStart = i === 0 || pattern[i - 1] === '/';
        let j = i;
        while (pattern[j] === '*') j++;
        const atEnd = j === pattern.length || pattern[j] === '/';
        if (atStart && atEnd) {
          if (j === pattern.length) {
            re += '.*'; // trailing "**": everything below
            i = j;
          } else {
            re += '(?:[^/]*/)*'; // "**/": zero or more whole segments
            i = j + 1;
          }
          continue;
        }
        re += '[^/]*';
        i = j;
        continue;
      }
      re += '[^/]*';
      i++;
    } else if (c === '?') {
      re += '[^/]';
      i++;
    } else if (c === '[') {
      const cls = classAt(pattern, i);
      if (cls === null) {
        re += '\\[';
        i++;
      } else {
        re += cls.source;
        i = cls.end;
      }
    } else {
      re += escapeRegex(c);
      i++;
    }
  }
  return new RegExp(`^${re}$`, 'u');
}

/**
 * A matcher for fs_list. A pattern with a `/` is matched against the path
 * relative to the listed folder; one without (`*.py`) against the entry's name,
 * at any depth of a recursive listing, as in .gitignore.
 */
export function globMatcher(pattern: string): (relativePath: string, name: string) => boolean {
  if (pattern === '') return () => true;
  const re = globToRegExp(pattern);
  if (pattern.includes('/')) return (rel) => re.test(rel);
  return (_rel, name) => re.test(name);
}
