/**
 * The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in package.json),
 * every server scenario, against the Streamable HTTP front door of a real coordinator and worker.
 * The suite needs Node 22: on an older Node it runs under `npx -y node@22` (from the npm registry).
 * Scenarios that do not apply are in test/conformance/expected-failures.yml, each with its reason;
 * the suite's own baseline check fails on any other failure and on a listed scenario that passes.
 * The summary is printed, so it is in CI's output.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coordinatorConfig } from '../../src/config/coordinator.js';
import { startCoordinator, type RunningCoordinator } from '../../src/coordinator/main.js';
import { silentLogger } from '../../src/log/logger.js';
import { startMcpHttp } from '../../src/mcp/http.js';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';
import { mountsUnder, unmount } from '../../src/worker/disk-quota.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const cli = path.join(root, 'dist/src/cli/main.js');
const suite = path.join(root, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const baseline = path.join(root, 'test/conformance/expected-failures.yml');
const token = uniqueToken('mcp-conf');

let base: string;
let coordinator: RunningCoordinator;
let worker: ChildProcess | undefined;
let close: (() => Promise<void>) | undefined;
let url: string;

/** The suite's command: this Node when it is 22 or newer, else Node 22 fetched by npx. */
function suiteCommand(): [string, string[]] {
  const major = Number(process.versions.node.split('.')[0]);
  return major >= 22 ? [process.execPath, [suite]] : ['npx', ['-y', 'node@22', suite]];
}

beforeAll(async () => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  base = mkdtempSync(path.join(tmpdir(), `${token}-`));
  coordinator = await startCoordinator(
    coordinatorConfig({ GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_HOST: '127.0.0.1', HTTP_PORT: '0', LOG_LEVEL: 'silent', RECOVERY_GRACE_SECONDS: '0', CODEGEN_STATE_DIR: path.join(base, 'state') }),
    silentLogger(),
  );
  worker = spawn(process.execPath, [cli, 'worker'], {
    env: { ...process.env, COORDINATOR_ADDR: `127.0.0.1:${coordinator.grpcPort}`, WORKER_ID: 'conf-w1', BASE_WORKSPACE: path.join(base, 'w1'), VENV_POOL_SIZE: '2', LOG_LEVEL: 'warn', CODEGEN_STATE_DIR: path.join(base, 'state') },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const online = await eventually(async () => (await coordinator.coordinator.listWorkers()).some((w) => w.state === 'online'), 60_000, 100);
  if (!online) throw new Error('the worker did not come online');
  // The suite sends no credentials: an open front door (loopback only) on the same actors.
  const http = await startMcpHttp({ coordinator: coordinator.coordinator, logger: silentLogger(), host: '127.0.0.1', port: 0, waitLimitMs: 50_000, legacyToolNames: false });
  close = http.close;
  url = `http://127.0.0.1:${http.port}/mcp`;
}, 120_000);

afterAll(async () => {
  await close?.();
  if (worker && worker.exitCode === null && worker.signalCode === null) {
    const gone = new Promise<void>((resolve) => worker!.once('exit', () => resolve()));
    worker.kill('SIGTERM');
    setTimeout(() => worker?.kill('SIGKILL'), 20_000).unref();
    await gone;
  }
  await coordinator?.stop();
  expect(await eventually(() => pidsWithToken(token).length === 0, 10_000)).toBe(true);
  for (const m of mountsUnder(base)) await unmount(m);
  rmSync(base, { recursive: true, force: true });
}, 60_000);

describe('the MCP conformance suite', () => {
  it('passes every server scenario that applies (the rest are listed, with reasons, in test/conformance/expected-failures.yml)', async () => {
    const [command, args] = suiteCommand();
    const out = await run(command, [...args, 'server', '--url', url, '--suite', 'all', '--expected-failures', baseline], { cwd: root, timeout: 300_000, maxBuffer: 64 * 1024 * 1024 }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? 1, stdout: err.stdout ?? '', stderr: err.stderr ?? String(err) }),
    );
    const summary = out.stdout.slice(out.stdout.indexOf('=== SUMMARY ==='));
    // In the test log (and so in CI's output).
    console.log(`MCP conformance (${path.basename(command)} ${args.slice(0, -1).join(' ')}):\n${summary}`);
    expect(out.stdout, out.stderr).toContain('=== SUMMARY ===');
    expect(summary).toMatch(/Baseline check passed/);
    expect(out.code, summary).toBe(0);
  }, 360_000);
});
