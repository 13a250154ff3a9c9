/** Session files as MCP resources: `session://{session_id}/files/{+path}`. */
import { extname } from 'node:path';

export const FILE_URI_TEMPLATE = 'session://{session_id}/files/{+path}';

const encodePath = (path: string): string => path.split('/').map(encodeURIComponent).join('/');

export const fileUri = (sessionId: string, path: string): string => `session://${sessionId}/files/${encodePath(path.replace(/^\/+/, ''))}`;

/** The workspace path a template match names (segments were percent-encoded by fileUri). */
export function decodeFilePath(raw: string | string[] | undefined): string {
  const value = Array.isArray(raw) ? raw.join('/') : (raw ?? '');
  return value
    .split('/')
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    })
    .join('/');
}

export type ParsedFileUri = { ok: true; sessionId: string; path: string } | { ok: false; problem: string };

const FILE_URI = /^session:\/\/([^/?#]*)\/files\/([^?#]*)$/;

/**
 * A session file URI taken apart, or what is wrong with it, in words for the caller: the
 * scheme and shape, an empty session id or path, a folder, a path that leaves the workspace.
 */
export function parseFileUri(uri: string): ParsedFileUri {
  const shape = `expected ${FILE_URI_TEMPLATE.replace('{+path}', '{path}')}`;
  const m = FILE_URI.exec(uri);
  if (!m) return { ok: false, problem: `${JSON.stringify(uri)} is not a session file URI: ${shape}` };
  const sessionId = m[1] ?? '';
  if (sessionId === '') return { ok: false, problem: `${JSON.stringify(uri)} names no session: ${shape}` };
  const path = decodeFilePath(m[2] ?? '');
  if (path === '') return { ok: false, problem: `${JSON.stringify(uri)} names no file: the path after /files/ is empty` };
  if (path.endsWith('/')) return { ok: false, problem: `${JSON.stringify(uri)} names a folder, not a file` };
  if (path.startsWith('/') || path.split('/').some((s) => s === '..' || s === '.' || s === '')) {
    return { ok: false, problem: `${JSON.stringify(uri)}: the path ${JSON.stringify(path)} is not a plain path inside the workspace (no leading /, no . or .. segments, no empty segments)` };
  }
  return { ok: true, sessionId, path };
}

const mimeTypes: Record<string, string> = {
  '.py': 'text/x-python',
  '.txt': 'text/plain',
  '.log': 'text/plain',
  '.md': 'text/markdown',
  '.csv': 'text/csv',
  '.tsv': 'text/tab-separated-values',
  '.json': 'application/json',
  '.jsonl': 'application/jsonl',
  '.yaml': 'application/yaml',
  '.yml': 'application/yaml',
  '.toml': 'application/toml',
  '.xml': 'application/xml',
  '.html': 'text/html',
  '.htm': 'text/html',
  '.css': 'text/css',
  '.js': 'text/javascript',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.pdf': 'application/pdf',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
  '.tar': 'application/x-tar',
  '.whl': 'application/zip',
  '.parquet': 'application/vnd.apache.parquet',
  '.npy': 'application/octet-stream',
};

/** A MIME type from the file name; unknown names are text/plain when the bytes are text. */
export function mimeTypeOf(path: string, isText: boolean): string {
  return mimeTypes[extname(path).toLowerCase()] ?? (isText ? 'text/plain' : 'application/octet-stream');
}
