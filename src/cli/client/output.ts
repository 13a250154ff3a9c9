/**
 * How the commands write: text for people, or with --json one JSON document on stdout (JSON
 * lines for what streams). Progress (a spinner and a line of status) is drawn on stderr only
 * when stdout is a terminal, so a pipe or a file never receives it — and only when stderr is one
 * too, so a redirected stderr does not collect carriage returns.
 */
export interface Streams {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

export interface Progress {
  /** The status text beside the spinner. */
  update(text: string): void;
  /** Clears the line (the spinner leaves nothing behind). */
  stop(): void;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const noProgress: Progress = { update: () => {}, stop: () => {} };

export class Output {
  readonly showsProgress: boolean;

  constructor(
    readonly json: boolean,
    private readonly streams: Streams = { stdout: process.stdout, stderr: process.stderr },
  ) {
    this.showsProgress = !json && Boolean(streams.stdout.isTTY) && Boolean(streams.stderr.isTTY);
  }

  /** Text for people on stdout (nothing in --json mode: the document says it). */
  say(text: string): void {
    if (!this.json) this.streams.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** A note for people on stderr, in either mode (stdout stays the command's data). */
  note(text: string): void {
    this.streams.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** One JSON document (or one line of a JSON-lines stream) on stdout. */
  doc(value: unknown): void {
    this.streams.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** Raw bytes or text to stdout / stderr (a program's output, a file for `cp … -`). */
  stdout(data: string | Uint8Array): void {
    this.streams.stdout.write(data);
  }

  stderr(data: string | Uint8Array): void {
    this.streams.stderr.write(data);
  }

  /** A spinner with `label` on stderr while long work runs; a no-op unless progress is shown (and `enabled`). */
  progress(label: string, enabled = true): Progress {
    if (!this.showsProgress || !enabled) return noProgress;
    const err = this.streams.stderr;
    const started = Date.now();
    let text = label;
    let frame = 0;
    const draw = () => {
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const line = `${FRAMES[frame++ % FRAMES.length]} ${text} (${seconds}s)`;
      const width = Math.max(20, (err.columns || 80) - 1);
      err.write(`\r\x1b[K${line.length > width ? `${line.slice(0, width - 1)}…` : line}`);
    };
    draw();
    const timer = setInterval(draw, 80);
    timer.unref();
    let stopped = false;
    return {
      update: (t) => {
        text = t;
      },
      stop: () => {
        if (stopped) return;
        stopped = true;
        clearInterval(timer);
        err.write('\r\x1b[K');
      },
    };
  }
}

/** 3s, 5m, 2h, 4d: how long ago `ms` was (or '-' when unknown). */
export function age(ms: number, now = Date.now()): string {
  if (!ms) return '-';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** 512B, 1.5KiB, 12.0MiB. */
export function bytes(n: number): string {
  if (n < 1024) return `${n}B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)}${units[i]}`;
}

/** Rows as left-aligned columns two spaces apart (the first row is the header). */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
