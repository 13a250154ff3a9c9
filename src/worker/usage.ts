import { sessionUsage } from '../sandbox/enforcement.js';
import type { ResourceUsageView } from '../domain/sessions.js';

/**
 * What a session's processes use, for its reports: memory now (from its cgroup), and CPU in
 * millicores averaged since the previous report (a report goes out at each task's start and
 * end, so this is the last task's average). Disk is not measured yet (0).
 */
export class UsageMeter {
  private readonly last = new Map<string, { cpuTimeMs: number; atMs: number }>();

  constructor(private readonly read: typeof sessionUsage = sessionUsage) {}

  usageOf(sessionId: string, nowMs: number = Date.now()): ResourceUsageView | undefined {
    const u = this.read(sessionId);
    if (!u) return undefined;
    const cpu = u.cpuTimeMs ?? 0;
    const before = this.last.get(sessionId);
    this.last.set(sessionId, { cpuTimeMs: cpu, atMs: nowMs });
    const elapsed = before ? nowMs - before.atMs : 0;
    const cpuMillicores = before && elapsed > 0 ? Math.max(0, Math.round(((cpu - before.cpuTimeMs) / elapsed) * 1000)) : 0;
    return { memoryBytes: u.memoryBytes ?? 0, cpuMillicores, diskBytes: 0 };
  }

  forget(sessionId: string): void {
    this.last.delete(sessionId);
  }
}
