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
