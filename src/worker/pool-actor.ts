import { fromPromise } from 'xstate';
import type { VenvPool } from './venv-pool.js';

/**
 * The venv pool as an actor, a permanent child of the worker's supervisor: it fills the pool
 * while it runs and empties it when stopped. Sessions take venvs from the pool object it
 * runs; with the pool stopped (or empty) a venv is made on the spot.
 */
export function venvPoolActor(pool: VenvPool) {
  return fromPromise<void, Record<string, unknown>>(async ({ signal }) => {
    pool.start();
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await pool.stop();
  });
}
