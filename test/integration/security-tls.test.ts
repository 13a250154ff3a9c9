/**
 * TLS on every front door, with certificates `openssl` makes at run time: gRPC for clients and
 * workers (mutual TLS: a worker's identity is its certificate) and MCP over HTTPS.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, grpc, grpcError, python, runTask, TestSystem, unary } from '../helpers/system.js';
import type { CoordinatorClients } from '../../src/wire/client.js';

const run = promisify(execFile);
let sys: TestSystem;
let certs: string;
const opened: CoordinatorClients[] = [];
const file = (name: string) => path.join(certs, name);

/** A CA, a server certificate for 127.0.0.1/localhost, and client certificates named `names`. */
function makeCertificates(dir: string, names: string[]): void {
  mkdirSync(dir, { recursive: true });
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const key = (name: string) => ssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', `${name}.key`);
  key('ca');
  ssl('req', '-x509', '-new', '-key', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=codegen-test-ca');
  const sign = (name: string, cn: string, san: string) => {
    key(name);
    ssl('req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  };
  sign('server', 'localhost', 'DNS:localhost,IP:127.0.0.1');
  for (const n of names) sign(n, n, `DNS:${n}`);
}

beforeAll(async () => {
  sys = new TestSystem({ label: 'tls' });
  certs = path.join(sys.root, 'certs');
  makeCertificates(certs, ['tls-worker']);
  await sys.startCoordinator({ TLS_CERT: file('server.crt'), TLS_KEY: file('server.key'), TLS_CLIENT_CA: file('ca.crt'), HTTP_HOST: '127.0.0.1' });
  sys.httpPort = Number((await sys.coordinator!.waitForLine((l) => l.msg === 'coordinator MCP HTTP listening'))['port']);
  await sys.startWorker('tls-worker', { TLS_CA: file('ca.crt'), TLS_CERT: file('tls-worker.crt'), TLS_KEY: file('tls-worker.key') });
}, 120_000);

afterAll(async () => {
  for (const c of opened) c.close();
  await sys?.stop();
}, 120_000);

function connect(tls?: { ca: string }): CoordinatorClients {
  const c = sys.connect(sys.clientToken, tls);
  opened.push(c);
  return c;
}

describe('gRPC over TLS', () => {
  it('serves a client that verifies the certificate, and runs its code on the worker that proved itself with its certificate', async () => {
    const c = connect({ ca: file('ca.crt') });
    const s = await unary(c.sessions, 'CreateSession', {});
    expect(s.worker_id).toBe('tls-worker');
    const r = await runTask(c, python(s.session_id, 'print("over tls", 6 * 7)'));
    expect(r.result?.status, JSON.stringify(r.error ?? r.status?.details)).toBe('STATUS_SUCCESS');
    await unary(c.sessions, 'DestroySession', { session_id: s.session_id });
    expect(sys.coordinator!.lines.find((l) => l.msg === 'coordinator gRPC listening')?.['tls']).toMatch(/mutual/);
  }, 60_000);

  it('refuses a plaintext client (the call fails, nothing is made)', async () => {
    const plain = connect();
    const err = await grpcError(unary(plain.sessions, 'ListSessions', {}, { deadlineMs: 5_000 }));
    expect(['UNAVAILABLE', 'DEADLINE_EXCEEDED']).toContain(grpc.status[err.code]);
  });

  it('refuses a worker whose certificate names someone else, or that shows none, and says why', async () => {
    const impostor = await sys.startWorker('impostor', { TLS_CA: file('ca.crt'), TLS_CERT: file('tls-worker.crt'), TLS_KEY: file('tls-worker.key') }, false);
    const bare = await sys.startWorker('bare', { TLS_CA: file('ca.crt') }, false);
    // Refused for good: each stops (exit 1) with one error line saying why, instead of retrying forever.
    const refusal = (w: typeof impostor) => w.waitForLine((l) => l.level === 50 && typeof l.msg === 'string' && l.msg.includes("refused this worker's credential"), 60_000);
    expect((await refusal(impostor)).msg).toMatch(/"impostor" is not a name of the worker's certificate \(tls-worker/);
    expect((await refusal(bare)).msg).toMatch(/worker certificate: none/);
    expect((await impostor.exited).code).toBe(1);
    expect((await bare.exited).code).toBe(1);
    for (const w of [impostor, bare]) expect(w.raw.some((line) => line.includes('sent to stopped actor'))).toBe(false);
    expect(sys.coordinator!.lines.filter((l) => l.msg === 'worker registered').map((l) => l.workerId)).toEqual(['tls-worker']);
  }, 90_000);

  it('answers `codegen-mcp health` over TLS with TLS_CA', async () => {
    const { stdout } = await run(process.execPath, [cliPath, 'health', '--addr', sys.address], { env: { ...process.env, TLS_CA: file('ca.crt') } });
    expect(stdout).toMatch(/SERVING/);
  });
});

describe('MCP over HTTPS', () => {
  const https = (method: string, body: string | undefined, headers: Record<string, string>) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: sys.httpPort, path: method === 'GET' ? '/healthz' : '/mcp', method, ca: readFileSync(file('ca.crt')), headers }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end(body);
    });

  it('serves /healthz and an authenticated initialize over HTTPS with the same certificate', async () => {
    expect((await https('GET', undefined, {})).status).toBe(200);
    const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'tls', version: '1' } } });
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', Host: `localhost:${sys.httpPort}` };
    expect((await https('POST', init, headers)).status).toBe(401);
    const ok = await https('POST', init, { ...headers, Authorization: `Bearer ${sys.clientToken}` });
    expect(ok.status).toBe(200);
    expect(ok.text).toContain('codegen-mcp');
  });
});
