import { randomBytes } from 'node:crypto';
import { CodegenError, invalidArgument } from '../domain/errors.js';
import type { SessionDescription, SessionView } from '../domain/sessions.js';
import type { TaskOutcome } from '../domain/tasks.js';
import type { ToolCall, ToolInputs, ToolOutputs } from '../domain/tools.js';
import type { CheckpointView, CreateSessionInput, SubmitTaskInput, TaskHandle } from '../runtime/port.js';
import type { TaskUpdate } from '../domain/tasks.js';
import { blobsOf, decodeManifest, MAX_MANIFEST_BYTES } from '../checkpoints/manifest.js';
import { unknownCheckpoint, type CheckpointRecord, type CheckpointStore } from '../checkpoints/store.js';

/**
 * Checkpoints as the coordinator runs them. The work on a session's files is a task of the
 * session (`checkpoint`, `restore`), queued like any other, so the session's statechart orders it
 * (CHECKPOINTING waits for the running task; later tasks wait for it) and its failures and
 * worker losses end it as they end any task. This module adds what is not a session's: the
 * record in the store, written once the task has put every blob there, and the restore of a
 * checkpoint into a new session, which is undone when the restore fails.
 */
export interface CheckpointSessions {
  /** An evicted session is made again first; resolves at once for one a worker holds. */
  ensureLive(sessionId: string): Promise<string>;
  descriptionNow(sessionId: string): SessionDescription;
  liveTaskIds(sessionId: string): string[];
  getSession(sessionId: string): Promise<SessionView>;
  createSession(input: CreateSessionInput): Promise<SessionView>;
  destroySession(sessionId: string, options?: { force?: boolean }): Promise<unknown>;
  submitTask(input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle>;
  cancelTask(taskId: string, reason: string, sessionId?: string): Promise<unknown>;
}

export const MAX_CHECKPOINT_NAME = 128;
const namePattern = /^[\p{L}\p{N}][\p{L}\p{N} _.:@+-]*$/u;
const newCheckpointId = (): string => `ckpt-${randomBytes(12).toString('hex')}`;

export function checkCheckpointName(name: string): string {
  if (name === '') return name;
  if (name.length > MAX_CHECKPOINT_NAME) throw invalidArgument('checkpoint_name', `is ${name.length} characters long; at most ${MAX_CHECKPOINT_NAME}`);
  if (!namePattern.test(name)) throw invalidArgument('checkpoint_name', 'letters, digits, spaces and "_.:@+-" only, starting with a letter or digit');
  return name;
}

export function viewOfRecord(r: CheckpointRecord, storeUrl: string): CheckpointView {
  return {
    checkpointId: r.checkpointId,
    name: r.name,
    sessionId: r.sessionId,
    workspaceId: r.workspaceId,
    tenant: r.tenant,
    createdAtMs: r.createdAtMs,
    sizeBytes: r.sizeBytes,
    storageUrl: `${storeUrl.replace(/\/$/, '')}/checkpoints/${r.checkpointId}.json`,
    checksumSha256: r.manifestSha256,
    envVars: { ...r.config.env_vars },
    installedPackages: [...r.installedPackages],
    modifiedFiles: [...r.modifiedFiles],
    fileCount: r.fileCount,
    totalBytes: r.totalBytes,
    ...(r.taskId ? { taskId: r.taskId } : {}),
  };
}

/** Runs one of the session's own tasks to its end: its reply, or its error thrown. */
async function runSessionTask<K extends 'checkpoint' | 'restore'>(sessions: CheckpointSessions, sessionId: string, call: { tool: K; input: ToolInputs[K] }): Promise<{ output: ToolOutputs[K]; taskId: string }> {
  let handle: TaskHandle | undefined;
  const outcome = await new Promise<TaskOutcome>((resolve, reject) => {
    sessions.submitTask({ sessionId, call: call as ToolCall }, (u) => {
      if (u.type === 'outcome') resolve(u.outcome);
    }).then((h) => (handle = h), reject);
  });
  handle?.detach();
  if (outcome.type === 'error') throw CodegenError.from(outcome.error);
  if (outcome.status !== 'SUCCESS' || !outcome.reply || outcome.reply.tool !== call.tool) {
    throw new CodegenError(outcome.status === 'CANCELLED' ? 'CANCELLED' : 'INTERNAL', `the ${call.tool} of session ${sessionId} ended ${outcome.status}${outcome.status === 'CANCELLED' ? ' (cancelled: the session was destroyed, restored or shut down meanwhile)' : ''}`);
  }
  return { output: outcome.reply.output as ToolOutputs[K], taskId: handle?.taskId ?? '' };
}

export class CheckpointService {
  /** Sweeps run one at a time; a delete during one asks for another after it. */
  private sweeping: Promise<void> = Promise.resolve();
  /** Checkpoints being taken now: no sweep runs meanwhile (one is owed for when they are done). */
  private inFlight = 0;
  private sweepOwed = false;

  constructor(
    private readonly store: CheckpointStore,
    private readonly sessions: CheckpointSessions,
    private readonly onSweep: (result: { removed: number; freedBytes: number } | Error) => void = () => {},
    /** Each checkpoint taken, with the bytes it added to the store (codegen_checkpoint_bytes_total). */
    private readonly onAdded: (bytes: number) => void = () => {},
  ) {}

  private view(r: CheckpointRecord): CheckpointView {
    return viewOfRecord(r, this.store.url);
  }

  async record(checkpointId: string): Promise<CheckpointRecord> {
    if (!checkpointId) throw invalidArgument('checkpoint_id', 'is required');
    const r = await this.store.getRecord(checkpointId);
    if (!r) throw unknownCheckpoint(checkpointId);
    return r;
  }

  async get(checkpointId: string): Promise<CheckpointView> {
    return this.view(await this.record(checkpointId));
  }

  async list(sessionId = ''): Promise<CheckpointView[]> {
    const all = await this.store.listRecords();
    return all.filter((r) => !sessionId || r.sessionId === sessionId).map((r) => this.view(r));
  }

  async checkpoint(sessionId: string, name = ''): Promise<CheckpointView> {
    checkCheckpointName(name);
    await this.sessions.ensureLive(sessionId);
    this.sessions.descriptionNow(sessionId); // an unknown session fails before anything is done
    const previous = (await this.store.listRecords()).filter((r) => r.sessionId === sessionId).at(-1);
    const checkpointId = newCheckpointId();
    this.inFlight++;
    try {
      return await this.takeCheckpoint(sessionId, name, checkpointId, previous);
    } finally {
      this.inFlight--;
      if (this.inFlight === 0 && this.sweepOwed) {
        this.sweepOwed = false;
        void this.requestSweep();
      }
    }
  }

  private async takeCheckpoint(sessionId: string, name: string, checkpointId: string, previous: CheckpointRecord | undefined): Promise<CheckpointView> {
    const { output: out, taskId } = await runSessionTask(this.sessions, sessionId, { tool: 'checkpoint', input: { checkpoint_id: checkpointId, previous_manifest_sha256: previous?.manifestSha256 ?? '' } });
    const d = this.sessions.descriptionNow(sessionId);
    const record: CheckpointRecord = {
      version: 1,
      checkpointId,
      name,
      sessionId,
      workspaceId: d.workspaceId,
      userId: d.userId,
      tenant: d.tenant,
      createdAtMs: Date.now(),
      manifestSha256: out.manifest_sha256,
      sizeBytes: out.added_bytes,
      fileCount: out.file_count,
      totalBytes: out.total_bytes,
      installedPackages: out.installed_packages,
      modifiedFiles: out.modified_files,
      modifiedCount: out.modified_count,
      pythonVersion: out.python_version,
      previousCheckpointId: previous?.checkpointId ?? '',
      taskId,
      config: { env_vars: { ...d.config.env_vars }, allow_network: d.config.allow_network, language: d.config.language, ...(d.config.limits ? { limits: { ...d.config.limits } } : {}) },
      metadata: { ...d.metadata },
    };
    // size_bytes counts the record too: its own length, found in a pass or two (its digits are part of it).
    for (let i = 0; i < 3; i++) record.sizeBytes = out.added_bytes + Buffer.byteLength(JSON.stringify(record));
    await this.store.putRecord(record);
    this.onAdded(record.sizeBytes);
    return this.view(record);
  }

  /** Checkpoints an evicted session's files live in: never deleted while it is evicted. */
  private pinned: () => ReadonlySet<string> = () => new Set();

  pinWith(pinned: () => ReadonlySet<string>): void {
    this.pinned = pinned;
  }

  async restore(checkpointId: string, opts: { workerId?: string; createNew?: boolean } = {}): Promise<{ session: SessionView; checkpoint: CheckpointView }> {
    const r = await this.record(checkpointId);
    const call = { tool: 'restore' as const, input: { checkpoint_id: r.checkpointId, manifest_sha256: r.manifestSha256 } };
    if (opts.createNew) {
      const made = await this.sessions.createSession({
        ...(opts.workerId ? { workerId: opts.workerId } : {}),
        workspaceId: r.workspaceId,
        userId: r.userId,
        tenant: r.tenant,
        config: { ...r.config, env_vars: { ...r.config.env_vars } },
        metadata: { ...r.metadata },
      });
      try {
        await runSessionTask(this.sessions, made.sessionId, call);
      } catch (err) {
        // No half-restored session is left behind.
        await this.sessions.destroySession(made.sessionId, { force: true }).catch(() => {});
        throw err;
      }
      return { session: await this.sessions.getSession(made.sessionId), checkpoint: this.view(r) };
    }
    let view: SessionView;
    try {
      await this.sessions.ensureLive(r.sessionId);
      view = await this.sessions.getSession(r.sessionId);
    } catch (err) {
      if (err instanceof CodegenError && (err.code === 'SESSION_NOT_FOUND' || err.code === 'NOT_FOUND')) {
        throw new CodegenError('FAILED_PRECONDITION', `checkpoint ${checkpointId} is of session ${r.sessionId}, which no longer exists; restore it with create_new_session`);
      }
      throw err;
    }
    if (opts.workerId && opts.workerId !== view.workerId) throw invalidArgument('worker_id', `an in-place restore stays on the session's worker (${view.workerId}); set create_new_session to restore on ${opts.workerId}`);
    // Its running and queued tasks are cancelled first; the restore queues behind them.
    for (const taskId of this.sessions.liveTaskIds(r.sessionId)) await this.sessions.cancelTask(taskId, `session restored to checkpoint ${checkpointId}`, r.sessionId).catch(() => {});
    await runSessionTask(this.sessions, r.sessionId, call);
    return { session: await this.sessions.getSession(r.sessionId), checkpoint: this.view(r) };
  }

  /** When each session's latest checkpoint was taken (sessions with none are absent). */
  async latestBySession(): Promise<Map<string, CheckpointRecord>> {
    const out = new Map<string, CheckpointRecord>();
    for (const r of await this.store.listRecords()) {
      const seen = out.get(r.sessionId);
      if (!seen || seen.createdAtMs <= r.createdAtMs) out.set(r.sessionId, r);
    }
    return out;
  }

  /**
   * CHECKPOINT_RETENTION_DAYS: deletes checkpoints older than `maxAgeMs`, except the latest one of
   * each session that still exists (`live`), then sweeps. Resolves with the ids deleted.
   */
  async applyRetention(nowMs: number, maxAgeMs: number, live: ReadonlySet<string>): Promise<string[]> {
    if (maxAgeMs <= 0) return [];
    const latest = await this.latestBySession();
    const deleted: string[] = [];
    for (const r of await this.store.listRecords()) {
      if (nowMs - r.createdAtMs <= maxAgeMs) continue;
      if (live.has(r.sessionId) && latest.get(r.sessionId)?.checkpointId === r.checkpointId) continue;
      if (this.pinned().has(r.checkpointId)) continue;
      if (await this.store.deleteRecord(r.checkpointId)) deleted.push(r.checkpointId);
    }
    if (deleted.length > 0) await this.requestSweep();
    return deleted;
  }

  async delete(checkpointId: string): Promise<boolean> {
    if (this.pinned().has(checkpointId)) {
      throw new CodegenError('FAILED_PRECONDITION', `checkpoint ${checkpointId} holds the files of an EVICTED session: its next task restores from it; destroy that session (or use it) first`);
    }
    await this.record(checkpointId).catch((err: unknown) => {
      // A record that no longer parses can still be deleted.
      if (!(err instanceof CodegenError && err.code === 'DATA_LOSS')) throw err;
    });
    const deleted = await this.store.deleteRecord(checkpointId);
    if (deleted) this.requestSweep();
    return deleted;
  }

  /** Removes blobs no record names (older than ten minutes: a checkpoint in progress may be about to name them). */
  requestSweep(graceMs = 10 * 60_000): Promise<void> {
    this.sweeping = this.sweeping.then(async () => {
      try {
        const keep = new Set<string>();
        for (const r of await this.store.listRecords()) {
          keep.add(r.manifestSha256);
          const bytes: Buffer[] = [];
          let n = 0;
          try {
            for await (const c of await this.store.readBlob(r.manifestSha256)) {
              n += c.length;
              if (n > MAX_MANIFEST_BYTES) throw new Error('manifest too large');
              bytes.push(c);
            }
            for (const sha of blobsOf(decodeManifest(Buffer.concat(bytes), r.manifestSha256, r.checkpointId))) keep.add(sha);
          } catch (err) {
            // Only a checkpoint known to be damaged (its manifest gone or not matching its checksum) keeps
            // nothing alive; any other failure (a slow or flaky store) stops the sweep: it deletes nothing it is unsure of.
            const damaged = err instanceof CodegenError && (err.code === 'DATA_LOSS' || err.code === 'NOT_FOUND');
            if (!damaged) throw err;
          }
        }
        // A checkpoint started meanwhile counts on blobs this listing did not see named: the sweep waits for a quiet store.
        if (this.inFlight > 0) {
          this.sweepOwed = true;
          return;
        }
        this.onSweep(await this.store.sweep(keep, graceMs));
      } catch (err) {
        this.onSweep(err as Error);
      }
    });
    return this.sweeping;
  }
}
