import { fromPromise } from 'xstate';
import type { WarmPythonRegistry } from '../sandbox/warm/sessions.js';
import type { InterpreterRegistry } from '../sandbox/interpreter/sessions.js';

/** Resolves 'stopped' when the actor is stopped. */
const stoppedBy = (signal: AbortSignal): Promise<'stopped'> =>
  new Promise((resolve) => {
    if (signal.aborted) resolve('stopped');
    else signal.addEventListener('abort', () => resolve('stopped'), { once: true });
  });

/**
 * A session's warm interpreter as an actor (a transient child of the session, under a
 * supervisor): while it runs, the session's tasks fork its fork server; when the server cannot
 * start, the actor fails and its supervisor starts a fresh one after a backoff — beyond the
 * restart intensity it stays down and tasks start a fresh interpreter each. Stopping it stops
 * the interpreter.
 */
export function warmInterpreterActor(registry: WarmPythonRegistry) {
  return fromPromise<void, { sessionId: string }>(async ({ input, signal }) => {
    const warm = registry.forSession(input.sessionId);
    const outcome = await Promise.race([stoppedBy(signal), warm.broken()]);
    await registry.release(input.sessionId);
    if (outcome !== 'stopped') throw new Error(outcome);
  });
}

/**
 * A session's stateful interpreter (python_exec) as an actor, transient under a supervisor. The
 * interpreter process starts on the first call and lives between calls; when it ends between calls
 * or cannot start, the actor fails and its supervisor restarts it (the next call starts a fresh
 * interpreter and is told its state was lost). A call whose code kills the interpreter is the
 * user's data: that call's result says so, and the actor goes on. Stopping the actor (the session
 * is released) leaves the process to the release, which stops it.
 */
export function interpreterActor(registry: InterpreterRegistry) {
  return fromPromise<void, { sessionId: string }>(async ({ input, signal }) => {
    const interpreter = registry.forSession(input.sessionId);
    const outcome = await Promise.race([stoppedBy(signal), interpreter.failure()]);
    if (outcome !== 'stopped') throw new Error(outcome);
  });
}
