/**
 * `run FILE | -c CODE [--session ID] [-- ARGS]`: a program in a session (run_python), its stdout
 * and stderr streamed to ours line by line as the task's logs arrive, and its exit code as ours.
 * Without --session it runs in a throwaway session, destroyed afterwards. Ctrl-C cancels the task
 * (the worker kills its process group) and exits 130.
 */
import { readFileSync } from 'node:fs';
import type { TaskLog } from '../../domain/tasks.js';
import type { RunPythonInput } from '../../domain/tools.js';
import type { Client } from './connection.js';
import { CliError, UsageError } from './errors.js';
import type { Output } from './output.js';
import { parseLocation } from './session-path.js';
import { keyValues } from './sessions.js';
import { leaseSession, onInterrupt, replyOf, startTask, type StartedTask } from './tasks.js';

export interface RunFlags {
  code?: string;
  session?: string;
  timeout: number;
  env: string[];
}

/** After Ctrl-C, how long to wait for the cancelled task's outcome before leaving anyway. */
const CANCEL_WAIT_MS = 10_000;

/** What to run: local source (sent as code, like `python - ARGS`) or a file of the session. */
function sourceOf(file: string | undefined, flags: RunFlags): { source: { code: string } | { file: string }; sessionId: string | undefined; args: string[] } {
  if (flags.code !== undefined) return { source: { code: flags.code || '\n' }, sessionId: flags.session, args: file === undefined ? [] : [file] };
  if (file === undefined) throw new UsageError('run: give a FILE to run (a local file, "-" for stdin, or SESSION_ID:path) or -c CODE');
  if (file === '-') return { source: { code: readFileSync(0, 'utf8') || '\n' }, sessionId: flags.session, args: [] };
  const loc = parseLocation(file);
  if (loc.kind === 'session') {
    if (flags.session && flags.session !== loc.sessionId) throw new UsageError(`run: ${file} names session ${loc.sessionId} but --session says ${flags.session}; give one`);
    return { source: { file: loc.path }, sessionId: loc.sessionId, args: [] };
  }
  let code: string;
  try {
    code = readFileSync(loc.path, 'utf8');
  } catch (err) {
    throw new CliError(`run: cannot read ${loc.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; to run a file of a session write SESSION_ID:path`);
  }
  return { source: { code: code || '\n' }, sessionId: flags.session, args: [] };
}

/** A process's exit code as ours: signals as 128+n, the rest into 0..255. */
export function exitCodeOf(code: number, failed: boolean): number {
  if (code < 0) return 128 + Math.min(-code, 127);
  if (code > 255) return 1;
  return code === 0 && failed ? 1 : code;
}

export async function runProgram(client: Client, out: Output, file: string | undefined, rest: string[], flags: RunFlags): Promise<number> {
  const { source, sessionId, args } = sourceOf(file, flags);
  const input: RunPythonInput = { ...source, args: [...args, ...rest], env_vars: keyValues('--env', flags.env), timeout_seconds: flags.timeout };
  let interrupted = false;
  let task: StartedTask | undefined;
  let markInterrupted = () => {};
  const whenInterrupted = new Promise<void>((resolve) => (markInterrupted = resolve));
  const cancel = () => void task?.cancel('Ctrl-C on the command line').catch(() => {});
  const stopListening = onInterrupt(() => {
    interrupted = true;
    markInterrupted();
    cancel();
  });
  const lease = await leaseSession(client.port, out, sessionId).catch((err: unknown) => {
    stopListening();
    throw err;
  });
  try {
    if (interrupted) return 130;
    let lines = 0;
    // --json: lines that come before the task's id is known wait for the "start" line.
    let early: TaskLog[] | undefined = out.json ? [] : undefined;
    const write = (log: TaskLog) => {
      if (out.json) out.doc({ type: log.stream, line: log.line });
      else if (log.stream === 'stdout') out.stdout(`${log.line}\n`);
      else out.stderr(`${log.line}\n`);
    };
    const onLog = (log: TaskLog) => {
      lines++;
      if (early) early.push(log);
      else write(log);
    };
    task = await startTask(client.port, lease.sessionId, { tool: 'run_python', input }, { onLog });
    if (interrupted) cancel();
    if (early) {
      out.doc({ type: 'start', session_id: lease.sessionId, task_id: task.taskId, throwaway: lease.throwaway });
      early.forEach(write);
      early = undefined;
    }
    const started = task;
    // After Ctrl-C the cancelled task's outcome is awaited, but not forever.
    const outcome = await Promise.race([started.outcome, whenInterrupted.then(() => withBound(started.outcome))]);
    if (!outcome) return 130;
    const { status, output } = replyOf(outcome, 'run_python');
    // A coordinator that sent no log lines: the output is in the result.
    if (lines === 0 && output && !out.json) {
      out.stdout(output.stdout);
      out.stderr(output.stderr);
    }
    const exit = status === 'CANCELLED' ? 130 : status === 'TIMEOUT' ? 124 : exitCodeOf(output?.exit_code ?? 1, status !== 'SUCCESS');
    if (out.json) out.doc({ type: 'exit', status, exit_code: output?.exit_code ?? null, duration_ms: output?.duration_ms ?? 0, timed_out: status === 'TIMEOUT', session_id: lease.sessionId, task_id: task.taskId });
    else if (status === 'TIMEOUT') out.note(`codegen-mcp: the program ran out of time${flags.timeout ? ` (--timeout ${flags.timeout})` : ''} and was stopped; exit status 124`);
    else if (status === 'CANCELLED' && !interrupted) out.note('codegen-mcp: the task was cancelled');
    return exit;
  } finally {
    stopListening();
    await lease.release();
  }
}

/** The outcome, or undefined when it does not come within CANCEL_WAIT_MS (a cancel that hangs). */
function withBound<T>(p: Promise<T>): Promise<T | undefined> {
  return Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), CANCEL_WAIT_MS))]);
}

