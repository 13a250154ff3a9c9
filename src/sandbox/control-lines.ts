/**
 * A reader of a control channel that speaks JSON lines (the warm fork server's and the stateful
 * interpreter's fd 3): each complete line is parsed and handed on; a line that is not JSON, or
 * one longer than `maxChars`, is `onBad` and ends the reading (the caller kills the process, since
 * user code runs in it and may have written anything).
 */
export function jsonLineReader(onValue: (value: unknown) => void, onBad: (why: 'bad' | 'long') => void, maxChars = Infinity): (chunk: Buffer) => void {
  let buffered = '';
  let broken = false;
  return (chunk) => {
    if (broken) return;
    buffered += chunk.toString('utf8');
    let nl = buffered.indexOf('\n');
    if (nl === -1 && buffered.length > maxChars) {
      broken = true;
      onBad('long');
      return;
    }
    while (nl !== -1) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf('\n');
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        broken = true;
        onBad('bad');
        return;
      }
      onValue(value);
    }
  };
}
