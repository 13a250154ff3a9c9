/**
 * The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in package.json),
 * every server scenario, against the Streamable HTTP front door of a real coordinator and worker.
 * The suite needs Node 22: on an older Node it runs under `npx -y node@22` (from the npm registry).
 * Scenarios that do not apply are in test/conformance/expected-failures.yml, each with its reason;
 * the suite's own baseline check fails on any other failure and on a listed scenario that passes.
 * The summary is printed, so it is in CI's output.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMcpTestSystem, type McpTestSystem } from '../helpers/mcp-system.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const suite = path.join(root, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const baseline = path.join(root, 'test/conformance/expected-failures.yml');

let sys: McpTestSystem;
let url: string;

/** The suite's command: this Node when it is 22 or newer, else Node 22 fetched by npx. */
function suiteCommand(): [string, string[]] {
  const major = Number(process.versions.node.split('.')[0]);
  return major >= 22 ? [process.execPath, [suite]] : ['npx', ['-y', 'node@22', suite]];
}

beforeAll(async () => {
  sys = await startMcpTestSystem('mcp-conf');
  // The suite sends no credentials: an open front door (loopback only) on the same actors.
  url = await sys.frontDoor(50_000);
}, 120_000);

afterAll(async () => {
  await sys?.stop();
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
