import type { InspectionEvent } from 'xstate';
import type { Logger } from './logger.js';

/**
 * Machines do not log: this observer logs every state change of every actor, by systemId,
 * at debug level, and every actor error at warn.
 */
export function inspectionLogger(logger: Logger): (event: InspectionEvent) => void {
  const last = new WeakMap<object, string>();
  const debug = logger.isLevelEnabled('debug');
  return (event) => {
    try {
      if (event.type !== '@xstate.snapshot') return;
      const status = (event.snapshot as { status?: string }).status;
      // Hot path: at info level only errors are logged, so skip the serialising.
      if (!debug && status !== 'error') return;
      const actor = event.actorRef as unknown as { systemId?: string; id: string };
      const snap = event.snapshot as { status?: string; value?: unknown; error?: unknown };
      const name = actor.systemId ?? actor.id;
      if (snap.status === 'error') {
        logger.warn({ actor: name, err: snap.error }, 'actor failed');
        return;
      }
      if (snap.value === undefined) return;
      const value = JSON.stringify(snap.value);
      if (last.get(event.actorRef) === value) return;
      last.set(event.actorRef, value);
      logger.debug({ actor: name, state: snap.value, status: snap.status, event: event.event.type }, 'transition');
    } catch {
      // an inspection listener must never throw (errors would be rethrown on a timer)
    }
  };
}
