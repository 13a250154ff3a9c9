/**
 * How many sandboxed programs this worker process has killed, by reason, since it started: the
 * figures its heartbeats carry to the coordinator's /metrics. Both launch paths (a fresh sandbox,
 * a warm fork) count each program once, when it has ended.
 */
export const sandboxKills = { timeout: 0, cancel: 0, limit: 0 };

export function countKills(result: { timedOut: boolean; cancelled: boolean; limitExceeded?: unknown }): void {
  if (result.timedOut) sandboxKills.timeout++;
  else if (result.cancelled) sandboxKills.cancel++;
  if (result.limitExceeded) sandboxKills.limit++;
}
