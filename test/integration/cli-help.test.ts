/** The command line's own answers: the version, each command's help with its variables, unknown commands, a busy port. */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { cliPath } from '../helpers/system.js';

const run = promisify(execFile);
const cli = (...args: string[]) => run(process.execPath, [cliPath, ...args], { env: { PATH: process.env['PATH'] ?? '' } });
const version = (JSON.parse(readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

describe('codegen-mcp on the command line', () => {
  it('prints its version with --version, -V or version', async () => {
    for (const flag of ['--version', '-V', 'version']) expect((await cli(flag)).stdout).toBe(`codegen-mcp ${version}\n`);
  });

  it("answers each command's --help with what it does and its own variables, with their defaults", async () => {
    const worker = (await cli('worker', '--help')).stdout;
    expect(worker).toMatch(/^Usage: codegen-mcp worker/);
    expect(worker).toMatch(/MAX_DISK_PER_SESSION\s+1073741824/);
    expect(worker).toMatch(/MAX_PROCESSES_PER_SESSION\s+256/);
    expect(worker).not.toMatch(/TENANT_MAX_SESSIONS/);
    const coordinator = (await cli('coordinator', '--help')).stdout;
    expect(coordinator).toMatch(/TENANT_MAX_SESSIONS\s+100/);
    expect(coordinator).toMatch(/CLIENT_TOKEN\s+—/);
    expect(coordinator).not.toMatch(/MAX_DISK_PER_SESSION/);
    expect((await cli('health', '--help')).stdout).toMatch(/ADDR\s+localhost:50051/);
    expect((await cli('keys', '--help')).stdout).toMatch(/^Usage: codegen-mcp keys/);
  });

  it('refuses an unknown command with exit status 2 and the list of commands', async () => {
    await expect(cli('frobnicate')).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/unknown command "frobnicate"[\s\S]*Commands:/) });
  });

  it('names a busy port and the variable to change in one line, and exits 1', async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const busy = (holder.address() as AddressInfo).port;
    const state = mkdtempSync(path.join(tmpdir(), 'codegen-busy-'));
    try {
      const start = (env: Record<string, string>) => run(process.execPath, [cliPath, 'coordinator'], { env: { PATH: process.env['PATH'] ?? '', CODEGEN_STATE_DIR: state, GRPC_HOST: '127.0.0.1', HTTP_HOST: '127.0.0.1', ...env }, timeout: 30_000 });
      for (const [variable, env] of [['GRPC_PORT', { GRPC_PORT: String(busy), HTTP_ENABLED: 'false' }], ['HTTP_PORT', { GRPC_PORT: '0', HTTP_PORT: String(busy) }]] as const) {
        const failed = await start(env).then(() => undefined, (err: { code: number; stderr: string }) => err);
        expect(failed?.code, variable).toBe(1);
        expect(failed!.stderr).toBe(`codegen-mcp: port ${busy} on 127.0.0.1 is already in use (${variable}); stop what holds it, or set ${variable} to a free port\n`);
      }
    } finally {
      holder.close();
      rmSync(state, { recursive: true, force: true });
    }
  });
});
