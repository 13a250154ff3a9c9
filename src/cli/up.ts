import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log/logger.js';
import { backoffDelay, hasRestartBudget, recordRestart } from '../../machines/supervision.js';

export interface UpOptions {
  workers: number;
  baseWorkspace: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}

const cliPath = () => path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js');

interface Child {
  name: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  proc?: ChildProcess;
  restarts: number[];
  attempt: number;
  timer?: NodeJS.Timeout;
}

/**
 * `codegen-mcp up`: a coordinator and N workers as child processes of this supervisor. Children
 * are permanent: one that dies is restarted after a capped exponential backoff; more than
 * 10 restarts of one child in a minute escalates (this supervisor stops everything, exit 1).
 */
export async function runUp(opts: UpOptions): Promise<{ stop(): Promise<void>; done: Promise<number> }> {
  const { logger } = opts;
  let stopping = false;
  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((r) => (resolveDone = r));
  const children: Child[] = [];

  const start = (child: Child, onReady?: (msg: any) => void) => {
    const proc = spawn(process.execPath, [cliPath(), ...child.args], { env: child.env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.proc = proc;
    proc.on('message', (msg: any) => {
      if (msg?.type === 'ready') {
        child.attempt = 0;
        onReady?.(msg);
      }
    });
    proc.on('exit', (code, signal) => {
      child.proc = undefined;
      if (stopping) return;
      const now = Date.now();
      const intensity = { maxRestarts: 10, windowMs: 60_000 };
      if (!hasRestartBudget(child.restarts, now, intensity)) {
        logger.error({ child: child.name }, 'child restarted too often; stopping everything');
        void stop().then(() => resolveDone(1));
        return;
      }
      child.restarts = recordRestart(child.restarts, now, intensity);
      const delay = backoffDelay(child.attempt++);
      logger.warn({ child: child.name, code, signal, restartInMs: delay }, 'child exited; restarting');
      child.timer = setTimeout(() => start(child), delay);
    });
  };

  const stop = async () => {
    if (stopping) return;
    stopping = true;
    // Workers first (they drain and deregister), then the coordinator.
    for (const group of [children.slice(1).reverse(), children.slice(0, 1)]) {
      await Promise.all(
        group.map(
          (c) =>
            new Promise<void>((resolve) => {
              clearTimeout(c.timer);
              const proc = c.proc;
              if (!proc || proc.exitCode !== null) return resolve();
              const kill = setTimeout(() => proc.kill('SIGKILL'), 20_000);
              proc.once('exit', () => {
                clearTimeout(kill);
                resolve();
              });
              proc.kill('SIGTERM');
            }),
        ),
      );
    }
  };

  const coordinator: Child = { name: 'coordinator', args: ['coordinator'], env: { ...opts.env }, restarts: [], attempt: 0 };
  children.push(coordinator);
  const ready = await new Promise<{ grpcPort: number; httpPort?: number }>((resolve, reject) => {
    start(coordinator, (msg) => {
      // Keep the port a restarted coordinator binds, so the workers find it again.
      coordinator.env = { ...coordinator.env, GRPC_PORT: String(msg.grpcPort), ...(msg.httpPort ? { HTTP_PORT: String(msg.httpPort) } : {}) };
      resolve(msg);
    });
    coordinator.proc?.once('exit', (code) => reject(new Error(`coordinator exited with code ${code} before it was ready`)));
  });

  for (let i = 1; i <= opts.workers; i++) {
    const workerId = `worker-${i}`;
    const child: Child = {
      name: workerId,
      args: ['worker'],
      env: {
        ...opts.env,
        WORKER_ID: workerId,
        COORDINATOR_ADDR: `127.0.0.1:${ready.grpcPort}`,
        BASE_WORKSPACE: path.join(opts.baseWorkspace, workerId),
      },
      restarts: [],
      attempt: 0,
    };
    children.push(child);
    start(child);
  }
  logger.info({ grpcPort: ready.grpcPort, httpPort: ready.httpPort, workers: opts.workers }, 'system up');
  return { stop: async () => { await stop(); resolveDone(0); }, done };
}
