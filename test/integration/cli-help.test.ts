/** The command line's own answers: the version, each command's help with its variables, unknown commands. */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
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
});
