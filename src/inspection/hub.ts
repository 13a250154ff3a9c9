import type { InspectionEvent } from 'xstate';

export type InspectionListener = (event: InspectionEvent) => void;

/**
 * The one `inspect` observer an actor system is made with. XState takes it once, at createActor;
 * the hub lets listeners (the transition log, the Stately inspector, the live view's recorder)
 * come and go while the system runs, and costs one length check per event when none listens.
 */
export class InspectionHub {
  private listeners: InspectionListener[] = [];

  /** Pass this as createActor's `inspect`. */
  readonly observe = (event: InspectionEvent): void => {
    const listeners = this.listeners;
    for (let i = 0; i < listeners.length; i++) {
      try {
        listeners[i]!(event);
      } catch {
        // A listener must never throw into the actors (XState rethrows on a timer and the process dies).
      }
    }
  };

  /** Adds a listener; the function returned removes it. */
  add(listener: InspectionListener): () => void {
    this.listeners = [...this.listeners, listener];
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }
}
