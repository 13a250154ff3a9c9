/**
 * `repl [--session ID]`: a Python prompt in a session over python_exec, the session's persistent
 * interpreter, so state stays between inputs. Each complete input (see repl-input.ts) is one
 * call: its stdout and stderr stream as they come, then the trailing expression's value, or the
 * exception's traceback. Ctrl-C while code runs cancels the call (KeyboardInterrupt in the
 * interpreter, whose state stays); at the prompt it drops the input, as Python's does. Ctrl-D
 * (or the end of piped input, once everything queued has run) leaves; a throwaway session (no
 * --session) is destroyed then. `%reset` discards the interpreter (python_reset).
 */
import readline from 'node:readline';
import type { PythonExecOutput } from '../../domain/tools.js';
import { CodegenError } from '../../domain/errors.js';
import type { Client } from './connection.js';
import { describeError } from './errors.js';
import { bytes, type Output } from './output.js';
import { needsMore } from './repl-input.js';
import { callTool, leaseSession, replyOf, startTask, type StartedTask } from './tasks.js';

const PS1 = '>>> ';
const PS2 = '... ';

export async function runRepl(client: Client, out: Output, flags: { session?: string }): Promise<number> {
  // An unknown --session fails here, before any prompt.
  if (flags.session) await client.port.getSession(flags.session);
  const lease = await leaseSession(client.port, out, flags.session);
  const interactive = Boolean(process.stdin.isTTY) && !out.json;
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: interactive, prompt: PS1 });
  if (interactive) {
    out.note(`codegen-mcp repl: session ${lease.sessionId}${lease.throwaway ? ' (throwaway: destroyed on exit)' : ''}. Ctrl-C interrupts, Ctrl-D exits, %reset starts a fresh interpreter.`);
  }

  const queue: string[] = [];
  let buffer: string[] = [];
  let running: StartedTask | undefined;
  let busy = false;
  let closed = false;
  let exitCode = 0;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const prompt = () => {
    if (!interactive || closed) return;
    rl.setPrompt(buffer.length ? PS2 : PS1);
    rl.prompt();
  };

  const show = (output: PythonExecOutput | undefined, status: string, streamed: boolean, input: string) => {
    if (out.json) {
      out.doc({ type: 'result', input, status, ...(output ? { ...output, outputs: output.outputs.map((o) => ({ mime_type: o.mime_type, bytes: o.data.length })) } : {}) });
      return;
    }
    if (!output) return;
    if (output.state_lost) out.stderr(`(the interpreter's state was lost: ${output.state_lost_reason || 'it restarted'})\n`);
    if (!streamed) {
      out.stdout(output.stdout);
      out.stderr(output.stderr);
    }
    if (output.result) out.stdout(`${output.result}\n`);
    for (const o of output.outputs) out.stdout(`[${o.mime_type}, ${bytes(o.data.length)}]\n`);
    if (output.error_name) out.stderr(output.traceback ? (output.traceback.endsWith('\n') ? output.traceback : `${output.traceback}\n`) : `${output.error_name}: ${output.error_value}\n`);
    else if (status === 'CANCELLED') out.stderr('KeyboardInterrupt\n');
    else if (status === 'TIMEOUT') out.stderr('the call ran out of time and was interrupted\n');
  };

  const execute = async (code: string) => {
    if (code.trim() === '%reset') {
      const r = await callTool(client.port, lease.sessionId, { tool: 'python_reset', input: {} });
      if (out.json) out.doc({ type: 'reset', reset: r.reset });
      else out.stderr(r.reset ? '(a fresh interpreter)\n' : '(no interpreter was running)\n');
      return;
    }
    let streamed = false;
    running = await startTask(client.port, lease.sessionId, { tool: 'python_exec', input: { code, timeout_seconds: 0 } }, {
      onLog: (log) => {
        streamed = true;
        if (out.json) out.doc({ type: log.stream, line: log.line });
        else if (log.stream === 'stdout') out.stdout(`${log.line}\n`);
        else out.stderr(`${log.line}\n`);
      },
    });
    const { status, output } = replyOf(await running.outcome, 'python_exec');
    show(output, status, streamed, code);
  };

  /** Runs queued lines one at a time; the prompt comes back when nothing is left. */
  const pump = async () => {
    if (busy) return;
    busy = true;
    while (queue.length) {
      buffer.push(queue.shift()!);
      if (needsMore(buffer)) {
        prompt();
        continue;
      }
      const code = buffer.join('\n');
      buffer = [];
      if (code.trim() === '') {
        prompt();
        continue;
      }
      try {
        await execute(code);
      } catch (err) {
        // A call that could not run (the worker was lost, a limit): say so, and stay.
        const report = describeError(err, client.address);
        if (out.json) out.doc({ type: 'error', code: report.code, message: report.message });
        else out.stderr(`codegen-mcp: ${report.message}\n`);
        if (err instanceof CodegenError && err.code === 'SESSION_NOT_FOUND') {
          // The session is gone (destroyed elsewhere): nothing more can run.
          exitCode = 1;
          closed = true;
          queue.length = 0;
        }
      } finally {
        running = undefined;
      }
      // Lines typed ahead run next; the prompt waits until they have.
      if (queue.length === 0) prompt();
    }
    busy = false;
    if (closed) finish();
  };

  rl.on('line', (line) => {
    queue.push(line);
    void pump();
  });
  const interrupt = () => {
    if (!interactive) {
      // Piped input has no prompt to come back to: Ctrl-C ends it (after cancelling what runs), as it ends `python < file`.
      queue.length = 0;
      exitCode = 130;
      closed = true;
      if (running) void running.cancel('Ctrl-C in the repl').catch(() => {});
      else if (!busy) finish();
      return;
    }
    if (running) {
      void running.cancel('Ctrl-C in the repl').catch(() => {});
      return;
    }
    // At the prompt: drop what was typed, as Python's REPL does.
    queue.length = 0;
    buffer = [];
    out.stdout('\nKeyboardInterrupt\n');
    prompt();
  };
  rl.on('SIGINT', interrupt);
  process.on('SIGINT', interrupt);
  rl.on('close', () => {
    closed = true;
    if (interactive) out.stdout('\n');
    // A block still open at the end of the input ends there, as a blank line would end it.
    if (buffer.length > 0 || queue.length > 0) {
      queue.push('');
      if (!busy) void pump();
      return;
    }
    if (!busy) finish();
  });
  prompt();
  try {
    await finished;
  } finally {
    process.removeListener('SIGINT', interrupt);
    rl.close();
    await lease.release();
  }
  return exitCode;
}
