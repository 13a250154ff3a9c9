import { describe, expect, it } from 'vitest';
import { bearerToken, ClientAuthenticator, tokenMatches } from '../../src/auth/authenticator.js';
import { defaultAllowedHosts, HttpSecurity } from '../../src/mcp/http-security.js';

describe('MCP HTTP security checks', () => {
  it('allow the loopback names with the port by default', () => {
    const s = new HttpSecurity({ host: '127.0.0.1', port: 8080 });
    for (const host of ['localhost:8080', '127.0.0.1:8080', '[::1]:8080', 'LOCALHOST:8080']) expect(s.check({ host }).ok, host).toBe(true);
    for (const host of ['localhost:8081', 'evil.com:8080', 'localhost', '127.0.0.1.evil.com:8080', '']) expect(s.check({ host }).ok, host).toBe(false);
  });

  it('add the bound address when it is a specific one', () => {
    expect(defaultAllowedHosts('10.1.2.3', 80)).toContain('10.1.2.3:80');
    expect(defaultAllowedHosts('0.0.0.0', 80)).toEqual(['localhost:80', '127.0.0.1:80', '[::1]:80']);
    expect(defaultAllowedHosts('::1', 80)).toContain('[::1]:80');
  });

  it('check Origin only when it is sent', () => {
    const s = new HttpSecurity({ host: '127.0.0.1', port: 9000 });
    expect(s.check({ host: 'localhost:9000' }).ok).toBe(true);
    expect(s.check({ host: 'localhost:9000', origin: 'http://localhost:9000' }).ok).toBe(true);
    expect(s.check({ host: 'localhost:9000', origin: 'https://127.0.0.1:9000/' }).ok).toBe(true);
    const v = s.check({ host: 'localhost:9000', origin: 'http://evil.com' });
    expect(v).toMatchObject({ ok: false, status: 403 });
    expect(s.check({ host: 'localhost:9000', origin: 'null' })).toMatchObject({ ok: false, status: 403 });
  });

  it('match configured host names with any port, or with their own', () => {
    const s = new HttpSecurity({ host: '0.0.0.0', port: 8080, allowedHosts: ['mcp.example', 'other.example:443'] });
    expect(s.check({ host: 'mcp.example:8080' }).ok).toBe(true);
    expect(s.check({ host: 'mcp.example' }).ok).toBe(true);
    expect(s.check({ host: 'other.example:443' }).ok).toBe(true);
    expect(s.check({ host: 'other.example:8080' }).ok).toBe(false);
    expect(s.check({ host: 'localhost:8080' }).ok).toBe(false);
  });

  it('require a good bearer credential when an authenticator is set, after the host checks', () => {
    const auth = new ClientAuthenticator({ token: 'tok', keysFile: '' });
    const s = new HttpSecurity({ host: '127.0.0.1', port: 1, authenticate: (h) => auth.authenticate(h) });
    expect(s.check({ host: 'localhost:1' })).toMatchObject({ ok: false, status: 401 });
    expect(s.check({ host: 'localhost:1', authorization: 'Bearer bad' })).toMatchObject({ ok: false, status: 401 });
    expect(s.check({ host: 'localhost:1', authorization: 'bearer tok' })).toEqual({ ok: true, principal: { tenant: 'default', admin: true, credential: 'CLIENT_TOKEN' } });
    expect(s.check({ host: 'evil:1', authorization: 'Bearer tok' })).toMatchObject({ ok: false, status: 403 });
  });

  it('compare tokens of any length without throwing', () => {
    expect(tokenMatches('a', 'a')).toBe(true);
    expect(tokenMatches('a', 'ab')).toBe(false);
    expect(tokenMatches(undefined, '')).toBe(false);
    expect(tokenMatches('', '')).toBe(false);
    expect(bearerToken('Bearer  x ')).toBe('x');
    expect(bearerToken('Basic x')).toBeUndefined();
  });
});
