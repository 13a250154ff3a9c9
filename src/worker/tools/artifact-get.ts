import path from 'node:path';
import { CodegenError } from '../../domain/errors.js';
import type { ArtifactGetInput } from '../../domain/tools.js';
import { isInside, resolveInWorkspace, workspaceRealPath } from '../workspace.js';
import { readRegularFile } from './fs-read.js';
import type { ToolContext, ToolExecution } from './types.js';

export const ARTIFACTS_DIR = 'artifacts';

const contentTypes: Record<string, string> = {
  '.txt': 'text/plain; charset=utf-8',
  '.log': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.tsv': 'text/tab-separated-values; charset=utf-8',
  '.json': 'application/json',
  '.jsonl': 'application/x-ndjson',
  '.xml': 'application/xml',
  '.yaml': 'application/yaml',
  '.yml': 'application/yaml',
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.py': 'text/x-python; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.pdf': 'application/pdf',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
  '.tar': 'application/x-tar',
  '.parquet': 'application/vnd.apache.parquet',
  '.wav': 'audio/wav',
  '.mp3': 'audio/mpeg',
  '.mp4': 'video/mp4',
};

/** A content type from the file name's extension; application/octet-stream when unknown. */
export const contentTypeOf = (name: string): string => contentTypes[path.extname(name).toLowerCase()] ?? 'application/octet-stream';

/** artifact_get: the bytes of `<workspace>/artifacts/<artifact_id>`. */
export async function runArtifactGet(input: ArtifactGetInput, ctx: ToolContext): Promise<ToolExecution> {
  const id = input.artifact_id ?? '';
  if (id === '') throw new CodegenError('PATH_VIOLATION', 'artifact_id "": is empty; give a path under artifacts/');
  if (id.includes('\0') || path.isAbsolute(id)) {
    throw new CodegenError('PATH_VIOLATION', `artifact_id ${JSON.stringify(id)}: must be a relative path under artifacts/`);
  }
  const root = await workspaceRealPath(ctx.workspace);
  const abs = await resolveInWorkspace(ctx.workspace, `${ARTIFACTS_DIR}/${id}`, { field: 'artifact_id' });
  const artifactsRoot = await resolveInWorkspace(ctx.workspace, ARTIFACTS_DIR, { field: 'artifact_id' });
  if (!isInside(path.join(root, ARTIFACTS_DIR), abs) || !isInside(artifactsRoot, abs) || abs === artifactsRoot) {
    throw new CodegenError('PATH_VIOLATION', `artifact_id ${JSON.stringify(id)}: leaves the artifacts/ folder`);
  }
  const data = await readRegularFile(abs, 'artifact_id', id);
  return {
    status: 'SUCCESS',
    reply: { tool: 'artifact_get', output: { data, artifact_id: id, size_bytes: data.length, content_type: contentTypeOf(abs) } },
  };
}
