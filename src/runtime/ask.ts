import type { AnyActorRef, EventObject } from 'xstate';
import { CodegenError } from '../domain/errors.js';

/**
 * Sends `event` to `actor` and returns the first event it emits during that send for which
 * `match` returns a value. Actors answer front doors synchronously (a guard refuses, an action
 * accepts), so the answer is there when send returns; none means the machine has no answer for
 * this event, which is a bug, reported as INTERNAL rather than a hang.
 */
export function askNow<A extends AnyActorRef, R>(actor: A, event: Parameters<A['send']>[0], types: readonly string[], match: (emitted: EventObject) => R | undefined): R {
  let answer: R | undefined;
  const subs = types.map((type) =>
    actor.on(type, (e: EventObject) => {
      if (answer === undefined) answer = match(e);
    }),
  );
  try {
    actor.send(event);
  } finally {
    for (const s of subs) s.unsubscribe();
  }
  if (answer === undefined) throw new CodegenError('INTERNAL', `${actor.id} gave no answer to ${(event as EventObject).type}`);
  return answer;
}

/**
 * Sends `event` to `actor` and resolves with the first emitted event `match` accepts, for answers
 * that wait on another actor (a worker's reply). It always ends: when the actor stops without
 * answering, or after `boundMs`, it rejects with an error that says so.
 */
export function askLater<A extends AnyActorRef, R>(actor: A, event: Parameters<A['send']>[0], types: readonly string[], match: (emitted: EventObject) => R | undefined, boundMs: number): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    let settled = false;
    const subs: { unsubscribe(): void }[] = [];
    const end = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const s of subs.splice(0)) s.unsubscribe();
      f();
    };
    const timer = setTimeout(() => end(() => reject(new CodegenError('UNAVAILABLE', `no answer to ${(event as EventObject).type} from ${actor.id} within ${boundMs} ms`))), boundMs);
    timer.unref?.();
    for (const type of types) {
      subs.push(
        actor.on(type, (e: EventObject) => {
          const answer = match(e);
          if (answer !== undefined) end(() => resolve(answer));
        }),
      );
    }
    const stopped = actor.subscribe({
      complete: () => end(() => reject(new CodegenError('FAILED_PRECONDITION', `${actor.id} ended before it answered ${(event as EventObject).type}`))),
      error: () => end(() => reject(new CodegenError('INTERNAL', `${actor.id} failed before it answered ${(event as EventObject).type}`))),
    });
    // An actor that had already stopped completes inside subscribe: nothing to send it then.
    if (settled) {
      stopped.unsubscribe();
      return;
    }
    subs.push(stopped);
    actor.send(event);
  });
}
