import { StringDecoder } from 'node:string_decoder';

/** A line longer than this is passed on in pieces, so a program that never prints a newline cannot grow memory. */
const MAX_LINE_CHARS = 64 * 1024;

/**
 * One output stream of a launched program: keeps the first `maxBytes` bytes in
 * memory (0 = all), counts what it drops, and hands out complete lines as they
 * arrive. Streaming stops at the same cap, with one notice line, so a flood
 * costs the listeners no more than the result does.
 */
export class OutputCollector {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;
  private streamed = 0;
  private streamStopped = false;
  private pending = '';
  private readonly decoder = new StringDecoder('utf8');

  constructor(
    private readonly maxBytes: number,
    private readonly onLine?: (line: string) => void,
  ) {}

  get truncated(): boolean {
    return this.dropped > 0;
  }

  push(chunk: Buffer): void {
    if (this.maxBytes <= 0) {
      this.chunks.push(chunk);
      this.kept += chunk.length;
    } else {
      const room = this.maxBytes - this.kept;
      if (room >= chunk.length) {
        this.chunks.push(chunk);
        this.kept += chunk.length;
      } else {
        if (room > 0) {
          this.chunks.push(chunk.subarray(0, room));
          this.kept += room;
        }
        this.dropped += chunk.length - Math.max(room, 0);
      }
    }
    if (this.onLine && !this.streamStopped) this.split(this.decoder.write(chunk));
  }

  /** Flush the last partial line; call once when the stream has ended. */
  end(): void {
    if (this.onLine && !this.streamStopped) {
      const rest = this.pending + this.decoder.end();
      this.pending = '';
      if (rest.length > 0) this.emit(rest);
    }
  }

  /** The kept text, with a marker line when bytes were dropped. */
  text(): string {
    const body = Buffer.concat(this.chunks, this.kept).toString('utf8');
    if (this.dropped === 0) return body;
    return `${body}${body.endsWith('\n') || body === '' ? '' : '\n'}${truncationMarker(this.dropped)}\n`;
  }

  private split(text: string): void {
    let data = this.pending + text;
    let nl = data.indexOf('\n');
    while (nl !== -1 && !this.streamStopped) {
      let line = data.slice(0, nl);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      this.emit(line);
      data = data.slice(nl + 1);
      nl = data.indexOf('\n');
    }
    while (data.length > MAX_LINE_CHARS && !this.streamStopped) {
      this.emit(data.slice(0, MAX_LINE_CHARS));
      data = data.slice(MAX_LINE_CHARS);
    }
    this.pending = this.streamStopped ? '' : data;
  }

  private emit(line: string): void {
    const size = Buffer.byteLength(line) + 1;
    if (this.maxBytes > 0 && this.streamed + size > this.maxBytes) {
      this.streamStopped = true;
      this.call(`[output truncated: more than ${this.maxBytes} bytes; the rest is not streamed]`);
      return;
    }
    this.streamed += size;
    this.call(line);
  }

  private call(line: string): void {
    try {
      this.onLine?.(line);
    } catch {
      // a listener's failure must not break the program's run
    }
  }
}

export const truncationMarker = (dropped: number): string => `[output truncated: ${dropped} bytes dropped]`;
