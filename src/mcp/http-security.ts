/**
 * Checks every MCP HTTP request passes before it reaches a transport: the Host and Origin
 * headers (DNS-rebinding protection, 403) and the optional bearer token (401, compared in
 * constant time).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export interface HttpSecurityOptions {
  /** The port the server listens on (after an ephemeral bind). */
  port: number;
  /** The address it is bound to. */
  host: string;
  /** Host header values allowed: "name" (any port) or "name:port". Default: localhost, 127.0.0.1, [::1] with the port. */
  allowedHosts?: string[];
  /** Origin header values allowed (requests without Origin pass). Default: http(s)://localhost|127.0.0.1|[::1] with the port. */
  allowedOrigins?: string[];
  token?: string;
}

export type SecurityVerdict = { ok: true } | { ok: false; status: 401 | 403; message: string; headers?: Record<string, string> };

const loopbackNames = ['localhost', '127.0.0.1', '[::1]'];
const wildcardHosts = new Set(['0.0.0.0', '::', '[::]', '']);

const bracket = (host: string): string => (host.includes(':') && !host.startsWith('[') ? `[${host}]` : host);

export function defaultAllowedHosts(host: string, port: number): string[] {
  const names = new Set(loopbackNames);
  if (!wildcardHosts.has(host)) names.add(bracket(host).toLowerCase());
  return [...names].map((n) => `${n}:${port}`);
}

export function defaultAllowedOrigins(host: string, port: number): string[] {
  return defaultAllowedHosts(host, port).flatMap((h) => [`http://${h}`, `https://${h}`]);
}

/** Splits "name:port" / "[v6]:port" / "name" into a lower-case name and an optional port. */
function splitHost(value: string): { name: string; port?: string } {
  const v = value.trim().toLowerCase();
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(v);
  if (!m) return { name: v };
  return m[2] === undefined ? { name: m[1] ?? v } : { name: m[1] ?? v, port: m[2] };
}

function hostMatches(header: string, allowed: string[]): boolean {
  const h = splitHost(header);
  return allowed.some((entry) => {
    const a = splitHost(entry);
    return a.name === h.name && (a.port === undefined || a.port === h.port);
  });
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Constant-time comparison of the presented bearer token with the configured one. */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  // Digests make both sides the same length, so timingSafeEqual never throws and lengths do not leak.
  return timingSafeEqual(digest(presented ?? ''), digest(expected)) && presented !== undefined;
}

export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(.+)$/i.exec(header?.trim() ?? '');
  return m?.[1]?.trim();
}

export class HttpSecurity {
  private readonly hosts: string[];
  private readonly origins: Set<string>;

  constructor(private readonly opts: HttpSecurityOptions) {
    this.hosts = opts.allowedHosts && opts.allowedHosts.length > 0 ? opts.allowedHosts : defaultAllowedHosts(opts.host, opts.port);
    const origins = opts.allowedOrigins && opts.allowedOrigins.length > 0 ? opts.allowedOrigins : defaultAllowedOrigins(opts.host, opts.port);
    this.origins = new Set(origins.map((o) => o.trim().toLowerCase().replace(/\/+$/, '')));
  }

  check(headers: IncomingHttpHeaders): SecurityVerdict {
    const host = headers.host;
    if (!host || !hostMatches(host, this.hosts)) {
      return { ok: false, status: 403, message: `Forbidden: Host header ${JSON.stringify(host ?? '')} is not allowed (allowed: ${this.hosts.join(', ')})` };
    }
    const origin = headers.origin;
    if (origin !== undefined && !this.origins.has(origin.trim().toLowerCase().replace(/\/+$/, ''))) {
      return { ok: false, status: 403, message: `Forbidden: Origin ${JSON.stringify(origin)} is not allowed` };
    }
    if (this.opts.token !== undefined && this.opts.token !== '') {
      const presented = bearerToken(headers.authorization);
      if (!tokenMatches(presented, this.opts.token)) {
        return {
          ok: false,
          status: 401,
          message: presented === undefined ? 'Unauthorized: send Authorization: Bearer <MCP_TOKEN>' : 'Unauthorized: the bearer token is wrong',
          headers: { 'WWW-Authenticate': 'Bearer realm="codegen-mcp"' },
        };
      }
    }
    return { ok: true };
  }
}
