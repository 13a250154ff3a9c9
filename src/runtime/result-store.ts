import type { TaskOutcome } from '../domain/tasks.js';

/**
 * Recent task outcomes, whole, for the followers who come late: a repeated task_id, a
 * GetTaskStatus, an MCP task_result after the call's wait ran out. Machines keep summaries
 * only; the full outcomes (stdout can be megabytes) live here, bounded by a byte budget, oldest
 * first out. A much larger index remembers which session each recent task id belonged to.
 */
export interface StoredOutcome { sessionId: string; outcome: TaskOutcome }

export interface ResultStoreOptions {
  /** Byte budget for whole outcomes (default 256 MiB). */
  maxBytes?: number;
  /** Task ids remembered with their session (default 200,000). */
  maxIndexed?: number;
}

function sizeOf(outcome: TaskOutcome): number {
  if (outcome.type === 'error') return 256 + outcome.error.message.length;
  const reply = outcome.reply;
  if (!reply) return 256;
  const o = reply.output as unknown as Record<string, unknown>;
  let n = 256;
  for (const v of Object.values(o)) {
    if (typeof v === 'string') n += v.length * 2;
    else if (v instanceof Uint8Array) n += v.byteLength;
    else if (Array.isArray(v)) n += v.length * 128;
  }
  return n;
}

export class ResultStore {
  private readonly outcomes = new Map<string, { stored: StoredOutcome; bytes: number }>();
  private readonly sessions = new Map<string, string>();
  private bytes = 0;
  private readonly maxBytes: number;
  private readonly maxIndexed: number;

  constructor(opts: ResultStoreOptions = {}) {
    this.maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
    this.maxIndexed = opts.maxIndexed ?? 200_000;
  }

  /** A task was accepted: remember its session. */
  noteTask(taskId: string, sessionId: string): void {
    this.sessions.delete(taskId);
    this.sessions.set(taskId, sessionId);
    while (this.sessions.size > this.maxIndexed) this.sessions.delete(this.sessions.keys().next().value as string);
  }

  put(taskId: string, sessionId: string, outcome: TaskOutcome): void {
    this.noteTask(taskId, sessionId);
    const bytes = sizeOf(outcome);
    const old = this.outcomes.get(taskId);
    if (old) {
      this.outcomes.delete(taskId);
      this.bytes -= old.bytes;
    }
    if (bytes > this.maxBytes) return;
    this.outcomes.set(taskId, { stored: { sessionId, outcome }, bytes });
    this.bytes += bytes;
    while (this.bytes > this.maxBytes) {
      const [id, oldest] = this.outcomes.entries().next().value as [string, { bytes: number }];
      this.outcomes.delete(id);
      this.bytes -= oldest.bytes;
    }
  }

  get(taskId: string): StoredOutcome | undefined {
    return this.outcomes.get(taskId)?.stored;
  }

  sessionOf(taskId: string): string | undefined {
    return this.sessions.get(taskId);
  }
}
