import type { Logger } from '../log/logger.js';
import type { ActorCoordinatorPort } from './actor-port.js';

/**
 * The checkpoint policies, run on a timer against the coordinator's actors:
 * - CHECKPOINT_ON_IDLE: a session that is IDLE and changed since its latest checkpoint is
 *   checkpointed (a task of its own, in its queue: a task that arrives meanwhile waits for it).
 * - CHECKPOINT_RETENTION_DAYS: older checkpoints are deleted, except each live session's latest.
 * Each tick is a scan of the sessions, like a listing; a checkpoint still running from an earlier
 * tick is not started again.
 */
export interface CheckpointPolicyOptions {
  onIdle: boolean;
  /** SESSION_EVICT_AFTER_SECONDS in ms (0: never). */
  evictAfterMs: number;
  /** SESSION_RECOVERY_SECONDS in ms (0: never). */
  recoveryMs: number;
  retentionMs: number;
  /** How often idle sessions are looked for. */
  intervalMs: number;
  /** How often retention runs. */
  retentionIntervalMs: number;
  logger: Logger;
}

export class CheckpointPolicies {
  private readonly running = new Set<string>();
  /** A session whose idle checkpoint failed is tried again after a minute, not at every tick. */
  private readonly failedAt = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private lastRetentionMs = 0;
  private ticking = false;

  constructor(
    private readonly port: ActorCoordinatorPort,
    private readonly opts: CheckpointPolicyOptions,
  ) {}

  start(): void {
    if (!this.opts.onIdle && this.opts.retentionMs <= 0 && this.opts.evictAfterMs <= 0 && this.opts.recoveryMs <= 0) return;
    this.timer = setInterval(() => void this.tick(Date.now()), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  async tick(nowMs: number): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      if (this.opts.recoveryMs > 0) await this.recoverLost(nowMs);
      if (this.opts.onIdle) await this.checkpointIdle();
      if (this.opts.evictAfterMs > 0) await this.evictIdle(nowMs);
      if (this.opts.retentionMs > 0 && nowMs - this.lastRetentionMs >= this.opts.retentionIntervalMs) {
        this.lastRetentionMs = nowMs;
        const deleted = await this.port.checkpoints.applyRetention(nowMs, this.opts.retentionMs, this.port.sessionIds());
        if (deleted.length > 0) this.opts.logger.info({ deleted: deleted.length, retentionDays: this.opts.retentionMs / 86_400_000 }, 'checkpoints past their retention deleted');
      }
    } catch (err) {
      this.opts.logger.warn({ err }, 'checkpoint policies: a tick failed; the next one tries again');
    } finally {
      this.ticking = false;
    }
  }

  /** Sessions of a worker unreachable for longer than SESSION_RECOVERY_SECONDS: each with a checkpoint is made again on another worker. */
  private async recoverLost(nowMs: number): Promise<void> {
    const lost = this.port.unreachableSince(nowMs - this.opts.recoveryMs);
    if (lost.length === 0 || !this.port.hasRoom()) return;
    const latest = await this.port.checkpoints.latestBySession();
    for (const s of lost) {
      const c = latest.get(s.sessionId);
      if (!c) continue;
      const seconds = Math.round((nowMs - s.unreachableSinceMs) / 1000);
      const note = `recovered on another worker after worker ${s.workerId} was lost for ${seconds} s: the files and installed packages as of checkpoint ${c.checkpointId} (${new Date(c.createdAtMs).toISOString()}) survived; later changes and the interpreter's memory were lost`;
      try {
        await this.port.recover(s.sessionId, { checkpointId: c.checkpointId, manifestSha256: c.manifestSha256, note });
      } catch (err) {
        this.opts.logger.warn({ sessionId: s.sessionId, err }, 'session not recovered yet (its entry could not be written to the checkpoint store); tried again on the next tick');
        continue;
      }
      this.opts.logger.warn({ sessionId: s.sessionId, workerId: s.workerId, checkpointId: c.checkpointId, lostForSeconds: seconds }, 'session recovered from its latest checkpoint (its worker did not come back within SESSION_RECOVERY_SECONDS)');
    }
  }

  /**
   * One policy's work on one session at a time: not started again while it runs, nor within a
   * minute after it failed (a full store or a session in use is not retried at every tick).
   */
  private runFor(sessionId: string, work: () => Promise<void>, failed: (err: unknown) => void): void {
    if (this.running.has(sessionId) || Date.now() - (this.failedAt.get(sessionId) ?? 0) < 60_000) return;
    this.running.add(sessionId);
    void work()
      .then(
        () => this.failedAt.delete(sessionId),
        (err: unknown) => {
          this.failedAt.set(sessionId, Date.now());
          failed(err);
        },
      )
      .finally(() => this.running.delete(sessionId));
  }

  /** Idle sessions past SESSION_EVICT_AFTER_SECONDS: checkpointed when they changed, then dropped by their worker. */
  private async evictIdle(nowMs: number): Promise<void> {
    const candidates = this.port.evictionCandidates(nowMs - this.opts.evictAfterMs);
    if (candidates.length === 0) return;
    const latest = await this.port.checkpoints.latestBySession();
    for (const { sessionId, lastClientMs } of candidates) {
      this.runFor(
        sessionId,
        async () => {
          // The checkpoint it is evicted with must be its last task: a fresh one unless its last task already is one.
          const byTask = this.port.lastCheckpointTask(sessionId);
          const known = latest.get(sessionId);
          const c =
            known && byTask && known.taskId === byTask
              ? { checkpointId: known.checkpointId, manifestSha256: known.manifestSha256, createdAtMs: known.createdAtMs, taskId: known.taskId }
              : await this.port.checkpointSession(sessionId, { name: 'evict' }).then((v) => ({ checkpointId: v.checkpointId, manifestSha256: v.checksumSha256, createdAtMs: v.createdAtMs, taskId: v.taskId }));
          const idleSeconds = Math.round((Date.now() - lastClientMs) / 1000);
          const note = `evicted after ${idleSeconds} s idle and restored from checkpoint ${c.checkpointId} (${new Date(c.createdAtMs).toISOString()}): files and installed packages kept; the interpreter's memory was not`;
          await this.port.evict(sessionId, { checkpointId: c.checkpointId, manifestSha256: c.manifestSha256, note }, c.taskId ?? '');
          this.opts.logger.info({ sessionId, checkpointId: c.checkpointId, idleSeconds }, 'idle session evicted (SESSION_EVICT_AFTER_SECONDS); its next task restores it');
        },
        (err) => this.opts.logger.info({ sessionId, err }, 'idle session not evicted (it was used, or the checkpoint failed); tried again later'),
      );
    }
  }

  private async checkpointIdle(): Promise<void> {
    for (const sessionId of this.port.idleSessionsChanged()) {
      this.runFor(
        sessionId,
        async () => {
          const c = await this.port.checkpointSession(sessionId, { name: 'idle' });
          this.opts.logger.info({ sessionId, checkpointId: c.checkpointId, sizeBytes: c.sizeBytes }, 'idle session checkpointed (CHECKPOINT_ON_IDLE)');
        },
        (err) => this.opts.logger.warn({ sessionId, err }, 'idle session could not be checkpointed (CHECKPOINT_ON_IDLE); tried again in a minute'),
      );
    }
  }
}
