/**
 * A tool call from loose input — a gRPC ToolRequest's sub-message or an MCP tool's arguments —
 * checked field by field: every problem is an INVALID_ARGUMENT naming the field.
 */
import { checkEnvVars } from './env.js';
import { invalidArgument } from './errors.js';
import type { ToolCall, ToolName } from './tools.js';

/** Loose input (a wire sub-message, or an MCP tool's arguments): every field is read as unknown and checked. */
type LooseInput = Readonly<Record<string, unknown>>;

/** A number as loose input gives it (an int64 comes as a string), or 0 when absent. */
const num = (v: unknown): number => (v === undefined || v === null || v === '' ? 0 : Number(v));
const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
const strMap = (v: unknown): Record<string, string> => {
  const out: Record<string, string> = {};
  if (v && typeof v === 'object') for (const [k, val] of Object.entries(v)) out[k] = str(val);
  return out;
};

export const MAX_TIMEOUT_SECONDS = 3600;

export function requireString(field: string, value: unknown): string {
  const s = str(value);
  if (s.length === 0) throw invalidArgument(field, 'is required');
  if (s.includes('\0')) throw invalidArgument(field, 'must not contain NUL bytes');
  return s;
}

export function checkTimeout(field: string, v: unknown): number {
  const t = num(v);
  if (!Number.isInteger(t) || t < 0 || t > MAX_TIMEOUT_SECONDS) throw invalidArgument(field, `must be a whole number of seconds from 0 to ${MAX_TIMEOUT_SECONDS}`);
  return t;
}

function checkEncoding(field: string, v: unknown): 'utf-8' | 'base64' {
  const e = str(v).toLowerCase();
  if (e === '' || e === 'utf-8' || e === 'utf8') return 'utf-8';
  if (e === 'base64') return 'base64';
  throw invalidArgument(field, `must be "utf-8" or "base64", not ${JSON.stringify(str(v))}`);
}

/** A domain ToolCall from loose input (the wire's sub-message, or an MCP tool's arguments). */
export function toolCallFrom(tool: ToolName, args: object, prefix = `typed_request.${tool}`): ToolCall {
  // `object` in the signature: the generated message interfaces have no index signature to pass as a Record.
  const input = args as LooseInput;
  const f = (name: string) => `${prefix}.${name}`;
  switch (tool) {
    case 'echo':
      return { tool, input: { message: str(input['message']) } };
    case 'fs_read':
      return { tool, input: { path: requireString(f('path'), input['path']) } };
    case 'fs_write':
      return {
        tool,
        input: {
          path: requireString(f('path'), input['path']),
          contents: str(input['contents']),
          create_dirs: Boolean(input['create_dirs']),
          encoding: checkEncoding(f('encoding'), input['encoding']),
        },
      };
    case 'fs_list':
      return { tool, input: { path: str(input['path']), recursive: Boolean(input['recursive']), pattern: str(input['pattern']) } };
    case 'run_python': {
      const code = input['code'];
      const file = input['file'];
      // Both set on the wire decode with `source` naming the last one: count both, so the request is refused, not half-run.
      const hasCode = typeof code === 'string' && code.length > 0;
      const hasFile = typeof file === 'string' && file.length > 0;
      if (hasCode === hasFile) throw invalidArgument(`${f('code')} / ${f('file')}`, 'set exactly one: code to run, or a file in the workspace');
      const args = Array.isArray(input['args']) ? input['args'].map(str) : [];
      args.forEach((a, i) => { if (a.includes('\0')) throw invalidArgument(`${f('args')}[${i}]`, 'must not contain NUL bytes'); });
      return {
        tool,
        input: {
          ...(hasCode ? { code: code as string } : { file: file as string }),
          args,
          env_vars: checkEnvVars(strMap(input['env_vars']), f('env_vars')),
          timeout_seconds: checkTimeout(f('timeout_seconds'), input['timeout_seconds']),
        },
      };
    }
    case 'pkg_install': {
      const raw = input['packages'];
      const packages = (Array.isArray(raw) ? raw.map(str) : str(raw).split(/\s+/)).map((p) => p.trim()).filter((p) => p.length > 0);
      if (packages.length === 0) throw invalidArgument(f('packages'), 'name at least one package');
      packages.forEach((p, i) => {
        if (p.startsWith('-')) throw invalidArgument(`${f('packages')}[${i}]`, `${JSON.stringify(p)} looks like a pip option; use the upgrade, no_deps and index_url fields instead`);
        if (/[\s\0]/.test(p)) throw invalidArgument(`${f('packages')}[${i}]`, 'must not contain whitespace');
      });
      const indexUrl = str(input['index_url']);
      if (indexUrl !== '' && !/^https?:\/\//.test(indexUrl) && !indexUrl.startsWith('file:')) throw invalidArgument(f('index_url'), 'must be an http(s) or file: URL');
      return { tool, input: { packages, upgrade: Boolean(input['upgrade']), index_url: indexUrl, no_deps: Boolean(input['no_deps']) } };
    }
    case 'python_exec': {
      const code = input['code'];
      if (typeof code !== 'string' || code.trim() === '') throw invalidArgument(f('code'), 'is required: the Python source to run in the session\'s interpreter');
      if (code.includes('\0')) throw invalidArgument(f('code'), 'must not contain NUL bytes');
      return { tool, input: { code, timeout_seconds: checkTimeout(f('timeout_seconds'), input['timeout_seconds']) } };
    }
    case 'python_reset':
      return { tool, input: {} };
    case 'artifact_get':
      return { tool, input: { artifact_id: requireString(f('artifact_id'), input['artifact_id']) } };
    case 'checkpoint':
      return { tool, input: { checkpoint_id: requireString(f('checkpoint_id'), input['checkpoint_id']), previous_manifest_sha256: str(input['previous_manifest_sha256']) } };
    case 'restore':
      return { tool, input: { checkpoint_id: requireString(f('checkpoint_id'), input['checkpoint_id']), manifest_sha256: requireString(f('manifest_sha256'), input['manifest_sha256']) } };
  }
}

