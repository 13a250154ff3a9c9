/**
 * Checks every MCP HTTP request passes before it reaches a transport: the Host and Origin
 * headers (DNS-rebinding protection, 403), then the bearer credential (401).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Principal } from '../auth/authenticator.js';

export interface HttpSecurityOptions {
  /** The port the server listens on (after an ephemeral bind). */
  port: number;
  /** The address it is bound to. */
  host: string;
  /** Host header values allowed: "name" (any port) or "name:port". Default: localhost, 127.0.0.1, [::1] with the port. */
  allowedHosts?: string[];
  /** Origin header values allowed (requests without Origin pass). Default: http(s)://localhost|127.0.0.1|[::1] with the port. */
  allowedOrigins?: string[];
  /** Who sent the request, from its Authorization header; throws (401) when the credential is not good. */
  authenticate?: (authorization: string | undefined) => Principal;
}

export type SecurityVerdict = { ok: true; principal?: Principal } | { ok: false; status: 401 | 403; message: string; headers?: Record<string, string> };

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
    if (!this.opts.authenticate) return { ok: true };
    try {
      return { ok: true, principal: this.opts.authenticate(headers.authorization) };
    } catch (err) {
      return { ok: false, status: 401, message: `Unauthorized: ${(err as Error).message}`, headers: { 'WWW-Authenticate': 'Bearer realm="codegen-mcp"' } };
    }
  }
}
