/**
 * A reader of a control channel that speaks JSON lines (the warm fork server's and the stateful
 * interpreter's fd 3). User code runs in those processes and may write anything there, so: each
 * complete line must be a JSON object (anything else is `onBad`), a line longer than `maxBytes`
 * is `onBad` without being held whole, and the work per chunk is linear in the chunk (a long line
 * arriving in pieces is searched once, not again with every piece). After `onBad` the reader
 * stops; the caller kills the process.
 */
export function jsonLineReader(onValue: (value: Record<string, unknown>) => void, onBad: (why: 'bad' | 'long') => void, maxBytes = Infinity): (chunk: Buffer) => void {
  let parts: Buffer[] = [];
  let held = 0;
  let broken = false;
  const fail = (why: 'bad' | 'long'): void => {
    broken = true;
    parts = [];
    onBad(why);
  };
  return (chunk) => {
    if (broken) return;
    let from = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, from)) {
      const piece = chunk.subarray(from, nl);
      const line = parts.length > 0 ? Buffer.concat([...parts, piece]) : piece;
      parts = [];
      held = 0;
      from = nl + 1;
      if (line.length > maxBytes) return fail('long');
      let value: unknown;
      try {
        value = JSON.parse(line.toString('utf8'));
      } catch {
        return fail('bad');
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('bad');
      onValue(value as Record<string, unknown>);
      if (broken) return;
    }
    if (from < chunk.length) {
      held += chunk.length - from;
      if (held > maxBytes) return fail('long');
      parts.push(chunk.subarray(from));
    }
  };
}
