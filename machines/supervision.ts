import type { AnyActorRef } from 'xstate';

/**
 * Erlang/OTP supervision vocabulary, as pure helpers the supervisor machine and the link use.
 * permanent: always restarted; transient: restarted after an abnormal exit; temporary: never.
 * Machines are deterministic: jitter comes from a seeded generator kept in context, never Math.random.
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

/** One step of a 32-bit xorshift generator: the next seed (never 0). */
export function nextSeed(seed: number): number {
  let x = seed | 0 || 0x9e3779b9;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x | 0 || 0x9e3779b9;
}

/** A seed as a number in [0, 1). */
export const unitOf = (seed: number): number => (seed >>> 0) / 0x1_0000_0000;

/** Capped exponential backoff for the n-th consecutive failure (0-based), with ±20% jitter from `unit` in [0, 1). */
export function backoffDelay(attempt: number, policy: BackoffPolicy, unit: number): number {
  const raw = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, attempt));
  const jitter = 0.8 + 0.4 * unit;
  return Math.round(Math.min(policy.maxMs, raw * jitter));
}

export function shouldRestart(type: RestartType, abnormal: boolean): boolean {
  return type === 'permanent' || (type === 'transient' && abnormal);
}

/** A thrown value as one line, for reasons kept in contexts (plain strings, never Error objects). */
export function reasonOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err) ?? String(err);
  } catch {
    return String(err);
  }
}

/**
 * Stops what a failed actor left running. XState 5 does not stop the children of an actor that
 * failed (its own TODO: "children don't belong entirely to the actor"): a crashed session would
 * leave its tasks' processes running, and a crashed shard its proxies registered under their
 * systemIds. Whoever removes a failed child calls this first; stopping an active child stops its
 * own children in turn, and runs their cleanups (killing processes, aborting promises).
 */
/**
 * For an `xstate.error.actor.<id>` event: stops the failed child's own children (XState leaves
 * them running) and removes the child. Returns the child's id.
 */
export function removeFailedChild(event: { type: string }, self: AnyActorRef, enqueue: { (action: () => void): void; stopChild(id: string): void }): string {
  const childId = event.type.slice('xstate.error.actor.'.length);
  const failed = (self.getSnapshot() as { children: Record<string, AnyActorRef | undefined> }).children[childId];
  enqueue(() => stopOrphansOf(failed));
  enqueue.stopChild(childId);
  return childId;
}

export function stopOrphansOf(failed: AnyActorRef | undefined): void {
  if (!failed || failed.getSnapshot().status !== 'error') return;
  const children = (failed.getSnapshot() as { children?: Record<string, AnyActorRef | undefined> }).children ?? {};
  for (const child of Object.values(children)) (child as unknown as { _stop?: () => void } | undefined)?._stop?.();
}
