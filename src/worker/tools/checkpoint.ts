import { CodegenError } from '../../domain/errors.js';
import type { CheckpointToolInput, RestoreToolInput } from '../../domain/tools.js';
import { restoreSnapshot } from '../../checkpoints/restore.js';
import { takeSnapshot, type BlobTransport } from '../../checkpoints/snapshot.js';
import type { ToolContext, ToolExecution } from './types.js';

const transportOf = (ctx: ToolContext): BlobTransport => {
  if (!ctx.checkpoints) throw new CodegenError('UNIMPLEMENTED', 'this worker has no checkpoint store to reach');
  return ctx.checkpoints;
};

const progress = (ctx: ToolContext, stage: string) => {
  const started = Date.now();
  return (done: number, total: number, message: string) => ctx.onProgress({ stage, message, percent: total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 100, elapsedMs: Date.now() - started });
};

/** The session's files and packages to the checkpoint store (the coordinator writes the record). */
export async function runCheckpoint(input: CheckpointToolInput, ctx: ToolContext): Promise<ToolExecution> {
  const output = await takeSnapshot({ workspace: ctx.workspace, transport: transportOf(ctx), previousManifestSha256: input.previous_manifest_sha256, ...(ctx.hashes ? { hashes: ctx.hashes } : {}), signal: ctx.signal, onProgress: progress(ctx, 'checkpoint') });
  return { status: 'SUCCESS', reply: { tool: 'checkpoint', output } };
}

/** The session's files and packages back as they were in the checkpoint; nothing changes unless every checksum matches. */
export async function runRestore(input: RestoreToolInput, ctx: ToolContext): Promise<ToolExecution> {
  const output = await restoreSnapshot({ workspace: ctx.workspace, transport: transportOf(ctx), checkpointId: input.checkpoint_id, manifestSha256: input.manifest_sha256, signal: ctx.signal, onProgress: progress(ctx, 'restore') });
  // Checkpoints hold files and packages, not the interpreter's memory: the next python_exec hears that its state went.
  await ctx.interpreter?.discard(`the session was restored from checkpoint ${input.checkpoint_id}, which holds files and packages but not the interpreter's memory: variables and imports are lost`);
  return { status: 'SUCCESS', reply: { tool: 'restore', output } };
}
