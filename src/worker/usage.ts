import { sessionUsage } from '../sandbox/enforcement.js';
import type { ResourceUsageView } from '../domain/sessions.js';

const DISK_READ_INTERVAL_MS = 1_000;
/** A session's cgroup (memory, CPU) is read at most this often; a reading younger is shown again. */
const CGROUP_READ_INTERVAL_MS = 250;

/**
 * What a session's processes use, for its reports: memory now (from its cgroup), and CPU in
 * millicores averaged since the previous report (a report goes out at each task's start and
 * end, so this is the last task's average), and the disk its files take (its filesystem's use,
 * with a disk quota; 0 without one).
 */
export class UsageMeter {
  private readonly last = new Map<string, { cpuTimeMs: number; atMs: number; view: ResourceUsageView }>();
  /** Disk use is read asynchronously (statfs) and shown from the previous reading, so reports keep their order. */
  private readonly disk = new Map<string, number>();
  /** When each session's disk use was last read: at most once per DISK_READ_INTERVAL_MS (a report goes out twice per task). */
  private readonly diskReadAt = new Map<string, number>();

  constructor(
    private readonly read: typeof sessionUsage = sessionUsage,
    private readonly diskOf?: (sessionId: string) => Promise<number | undefined>,
  ) {}

  usageOf(sessionId: string, nowMs: number = Date.now()): ResourceUsageView | undefined {
    if (this.diskOf && nowMs - (this.diskReadAt.get(sessionId) ?? -Infinity) >= DISK_READ_INTERVAL_MS) {
      this.diskReadAt.set(sessionId, nowMs);
      void this.diskOf(sessionId).then(
        (b) => (b === undefined ? this.disk.delete(sessionId) : this.disk.set(sessionId, b)),
        () => {},
      );
    }
    const before = this.last.get(sessionId);
    // A short task's two reports (BUSY, READY) come milliseconds apart: the second shows the first's reading.
    if (before && nowMs - before.atMs < CGROUP_READ_INTERVAL_MS) return { ...before.view, diskBytes: this.disk.get(sessionId) ?? 0 };
    const u = this.read(sessionId);
    if (!u) return undefined;
    const cpu = u.cpuTimeMs ?? 0;
    const elapsed = before ? nowMs - before.atMs : 0;
    const cpuMillicores = before && elapsed > 0 ? Math.max(0, Math.round(((cpu - before.cpuTimeMs) / elapsed) * 1000)) : 0;
    const view = { memoryBytes: u.memoryBytes ?? 0, cpuMillicores, diskBytes: this.disk.get(sessionId) ?? 0 };
    this.last.set(sessionId, { cpuTimeMs: cpu, atMs: nowMs, view });
    return view;
  }

  forget(sessionId: string): void {
    this.last.delete(sessionId);
    this.disk.delete(sessionId);
    this.diskReadAt.delete(sessionId);
  }
}
