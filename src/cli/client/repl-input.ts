/**
 * When a line typed at the repl completes a statement, as Python's own REPL decides it closely
 * enough without compiling: open brackets, an open triple-quoted string or a trailing backslash
 * continue the input; a block (a line ending in ':' or a decorator) continues until a blank line.
 */

interface Scan {
  /** Brackets still open at the end. */
  depth: number;
  /** Inside a string at the end (only triple-quoted ones may span lines). */
  inString: boolean;
  /** The last line ends in a backslash outside a string. */
  backslash: boolean;
  /** Some line's last code character (outside strings and comments) is ':'. */
  colonLine: boolean;
}

function scan(text: string): Scan {
  let depth = 0;
  let quote = ''; // '', or the quote that opened the string: ' " ''' """
  let lastCode = ''; // the last code character of the current line
  let colonLine = false;
  let backslash = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === '\\') {
        i++;
        continue;
      }
      if (quote.length === 3 ? text.startsWith(quote, i) : c === quote) {
        i += quote.length - 1;
        quote = '';
        lastCode = c;
      } else if (c === '\n' && quote.length === 1) quote = ''; // an unterminated string ends at its line: a SyntaxError for Python to report
      continue;
    }
    if (c === '#') {
      while (i + 1 < text.length && text[i + 1] !== '\n') i++;
      continue;
    }
    if (c === '\n') {
      if (lastCode === ':') colonLine = true;
      lastCode = '';
      backslash = false;
      continue;
    }
    if (c === '\\' && (i + 1 === text.length || text[i + 1] === '\n')) {
      backslash = true;
      continue;
    }
    if (c === "'" || c === '"') {
      quote = text.startsWith(c.repeat(3), i) ? c.repeat(3) : c;
      i += quote.length - 1;
      continue;
    }
    if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth = Math.max(0, depth - 1);
    if (c.trim()) lastCode = c;
  }
  if (lastCode === ':') colonLine = true;
  return { depth, inString: quote.length === 3, backslash, colonLine };
}

/** Whether the lines typed so far need more before they run. */
export function needsMore(lines: readonly string[]): boolean {
  if (lines.length === 0) return false;
  const s = scan(lines.join('\n'));
  if (s.depth > 0 || s.inString || s.backslash) return true;
  const block = s.colonLine || lines[0]!.trimStart().startsWith('@');
  return block && lines[lines.length - 1]!.trim() !== '';
}
