/**
 * Erlang/OTP supervision vocabulary, as pure helpers the supervisor machines use.
 * permanent: always restarted; transient: restarted after an abnormal exit; temporary: never.
 */
export type RestartType = 'permanent' | 'transient' | 'temporary';

export interface RestartIntensity {
  /** At most this many restarts... */
  maxRestarts: number;
  /** ...within this window, else the supervisor escalates to its parent. */
  windowMs: number;
}

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 250, maxMs: 30_000, factor: 2 };

/** Capped exponential backoff for the n-th consecutive failure (0-based), with ±20% jitter from `random`. */
export function backoffDelay(attempt: number, policy: BackoffPolicy = defaultBackoff, random: () => number = Math.random): number {
  const raw = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, attempt));
  const jitter = 0.8 + 0.4 * random();
  return Math.round(Math.min(policy.maxMs, raw * jitter));
}

/** Restart timestamps still inside the window, after adding one at `now`. */
export function recordRestart(history: readonly number[], now: number, intensity: RestartIntensity): number[] {
  return [...history.filter((t) => now - t < intensity.windowMs), now];
}

/** Whether one more restart at `now` stays within the intensity. */
export function hasRestartBudget(history: readonly number[], now: number, intensity: RestartIntensity): boolean {
  return history.filter((t) => now - t < intensity.windowMs).length < intensity.maxRestarts;
}

export function shouldRestart(type: RestartType, abnormal: boolean): boolean {
  return type === 'permanent' || (type === 'transient' && abnormal);
}
