import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface BenchSystem {
  grpcAddr: string;
  /** The client token the bench gives the coordinator (clients send it as their bearer credential). */
  token: string;
  httpUrl: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');

/** `codegen-mcp up` on 127.0.0.1 with ephemeral ports; ready when every worker has registered. */
export async function startSystem(workers: number, env: Record<string, string> = {}): Promise<BenchSystem> {
  const base = mkdtempSync(path.join(tmpdir(), 'codegen-bench-'));
  const token = `bench-${randomBytes(16).toString('hex')}`;
  const proc = spawn(process.execPath, [cli, 'up', '--workers', String(workers)], {
    env: { ...process.env, GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_PORT: '0', BASE_WORKSPACE: path.join(base, 'ws'), CODEGEN_STATE_DIR: path.join(base, 'state'), CLIENT_TOKEN: token, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let grpcPort = 0;
  let httpPort = 0;
  let registered = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('system did not start within 60 s')), 60_000);
    proc.once('exit', (code) => reject(new Error(`up exited with ${code}`)));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      try {
        const rec = JSON.parse(line) as { msg?: string; grpcPort?: number; httpPort?: number };
        if (rec.msg === 'system up') {
          grpcPort = rec.grpcPort!;
          httpPort = rec.httpPort!;
        }
        if (rec.msg === 'Successfully registered with coordinator') registered++;
        if (grpcPort && registered >= workers) {
          clearTimeout(timer);
          resolve();
        }
      } catch {
        // not a JSON log line
      }
    });
  });
  return {
    grpcAddr: `127.0.0.1:${grpcPort}`,
    token,
    httpUrl: `http://127.0.0.1:${httpPort}/mcp`,
    proc,
    stop: async () => {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}
