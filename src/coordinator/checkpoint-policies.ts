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
    if (!this.opts.onIdle && this.opts.retentionMs <= 0) return;
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
      if (this.opts.onIdle) await this.checkpointIdle();
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

  private async checkpointIdle(): Promise<void> {
    const latest = await this.port.checkpoints.latestBySession();
    for (const sessionId of this.port.idleSessionsChangedSince((id) => latest.get(id)?.createdAtMs ?? 0)) {
      if (this.running.has(sessionId) || Date.now() - (this.failedAt.get(sessionId) ?? 0) < 60_000) continue;
      this.running.add(sessionId);
      void this.port
        .checkpointSession(sessionId, { name: 'idle' })
        .then(
          (c) => {
            this.failedAt.delete(sessionId);
            this.opts.logger.info({ sessionId, checkpointId: c.checkpointId, sizeBytes: c.sizeBytes }, 'idle session checkpointed (CHECKPOINT_ON_IDLE)');
          },
          (err: unknown) => {
            this.failedAt.set(sessionId, Date.now());
            this.opts.logger.warn({ sessionId, err }, 'idle session could not be checkpointed (CHECKPOINT_ON_IDLE); tried again in a minute');
          },
        )
        .finally(() => this.running.delete(sessionId));
    }
  }
}
