import { fromPromise } from 'xstate';
import type { WarmPythonRegistry } from '../sandbox/warm/sessions.js';

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
    const stopped = new Promise<'stopped'>((resolve) => {
      if (signal.aborted) resolve('stopped');
      else signal.addEventListener('abort', () => resolve('stopped'), { once: true });
    });
    const outcome = await Promise.race([stopped, warm.broken()]);
    await registry.release(input.sessionId);
    if (outcome !== 'stopped') throw new Error(outcome);
  });
}
