/**
 * A coordinator in this process and one worker (the built CLI, a child process), for MCP tests
 * that open their own front doors on the coordinator's actors (startMcpHttp, no credentials).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { coordinatorConfig } from '../../src/config/coordinator.js';
import { startCoordinator, type RunningCoordinator } from '../../src/coordinator/main.js';
import { silentLogger } from '../../src/log/logger.js';
import { startMcpHttp } from '../../src/mcp/http.js';
import { mountsUnder, unmount } from '../../src/worker/disk-quota.js';
import { eventually, pidsWithToken, uniqueToken } from './processes.js';
import { cliPath } from './system.js';

export interface McpTestSystem {
  coordinator: RunningCoordinator;
  /** An open front door (loopback, no credentials) on the same actors, with its own wait limit; closed by stop(). */
  frontDoor(waitLimitMs: number): Promise<string>;
  /** Closes the front doors, stops the worker and the coordinator, and checks nothing of theirs is left. */
  stop(): Promise<void>;
}

export async function startMcpTestSystem(label: string): Promise<McpTestSystem> {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run npm run build first`);
  const token = uniqueToken(label);
  const base = mkdtempSync(path.join(tmpdir(), `${token}-`));
  const coordinator = await startCoordinator(
    coordinatorConfig({ GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_HOST: '127.0.0.1', HTTP_PORT: '0', LOG_LEVEL: 'silent', RECOVERY_GRACE_SECONDS: '0', CODEGEN_STATE_DIR: path.join(base, 'state') }),
    silentLogger(),
  );
  const worker: ChildProcess = spawn(process.execPath, [cliPath, 'worker'], {
    env: { ...process.env, COORDINATOR_ADDR: `127.0.0.1:${coordinator.grpcPort}`, WORKER_ID: `${label}-w1`, BASE_WORKSPACE: path.join(base, 'w1'), VENV_POOL_SIZE: '2', LOG_LEVEL: 'warn', CODEGEN_STATE_DIR: path.join(base, 'state') },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const online = await eventually(async () => (await coordinator.coordinator.listWorkers()).some((w) => w.state === 'online'), 60_000, 100);
  if (!online) throw new Error('the worker did not come online');
  const closers: Array<() => Promise<void>> = [];
  return {
    coordinator,
    async frontDoor(waitLimitMs) {
      const http = await startMcpHttp({ coordinator: coordinator.coordinator, logger: silentLogger(), host: '127.0.0.1', port: 0, waitLimitMs, legacyToolNames: false });
      closers.push(http.close);
      return `http://127.0.0.1:${http.port}/mcp`;
    },
    async stop() {
      for (const c of closers.splice(0).reverse()) await c().catch(() => {});
      if (worker.exitCode === null && worker.signalCode === null) {
        const gone = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
        worker.kill('SIGTERM');
        setTimeout(() => worker.kill('SIGKILL'), 20_000).unref();
        await gone;
      }
      await coordinator.stop();
      if (!(await eventually(() => pidsWithToken(token).length === 0, 10_000))) throw new Error(`processes of ${label} outlived the test: ${pidsWithToken(token).join(', ')}`);
      for (const m of mountsUnder(base)) await unmount(m);
      rmSync(base, { recursive: true, force: true });
    },
  };
}
