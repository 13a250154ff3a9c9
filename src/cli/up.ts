import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createActor, fromCallback, type AnyActorRef } from 'xstate';
import type { Logger } from '../log/logger.js';
import { processMachine, type ProcessEvent, type ProcessInput } from '../../machines/process.machine.js';
import { upMachine, UP_ID, type ProcessSpec } from '../../machines/up.machine.js';
import { supervisorMachine } from '../../machines/supervisor.machine.js';

export interface UpOptions {
  workers: number;
  baseWorkspace: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}

/** Set in the children's environment: a supervised process leaves Ctrl-C (SIGINT) to `up`, which drains them in order. */
export const SUPERVISED_ENV = 'CODEGEN_SUPERVISED';

const cliPath = () => path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js');

/**
 * The process actor's logic: spawns one child process, reports its exit, sends it SIGTERM when
 * asked to stop (it drains), and SIGKILL when the actor is stopped with the process still there.
 */
function runProcess(live: Set<ChildProcess>, logger: Logger) {
  return fromCallback<{ type: 'terminate' }, ProcessInput>(({ input, receive, sendBack, system }) => {
    const proc = spawn(process.execPath, [cliPath(), ...input.args], { env: { ...input.env, [SUPERVISED_ENV]: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    live.add(proc);
    let exited = false;
    proc.on('message', (msg: { type?: string; grpcPort?: number; httpPort?: number }) => {
      if (msg?.type !== 'ready') return;
      const up = system.get(UP_ID) as AnyActorRef | undefined;
      up?.send({ type: 'process.ready', name: input.name, ...(msg.grpcPort ? { grpcPort: msg.grpcPort } : {}), ...(msg.httpPort ? { httpPort: msg.httpPort } : {}) });
    });
    proc.once('exit', (code, signal) => {
      exited = true;
      live.delete(proc);
      sendBack({ type: 'process.exited', code, signal } satisfies ProcessEvent);
    });
    proc.once('error', (err) => {
      logger.error({ child: input.name, err }, 'could not start the child process');
    });
    receive((e) => {
      if (e.type === 'terminate' && !exited) proc.kill('SIGTERM');
    });
    return () => {
      if (!exited) proc.kill('SIGKILL');
    };
  });
}

/**
 * `codegen-mcp up`: a coordinator and N workers as supervised child processes (see
 * machines/up.machine.ts). Resolves once the coordinator is ready; `done` gives the exit status.
 */
export async function runUp(opts: UpOptions): Promise<{ stop(): Promise<void>; force(): void; done: Promise<number> }> {
  const { logger } = opts;
  const live = new Set<ChildProcess>();
  const env = Object.fromEntries(Object.entries(opts.env).filter((e): e is [string, string] => e[1] !== undefined));
  const workers: ProcessSpec[] = Array.from({ length: opts.workers }, (_, i) => {
    const workerId = `worker-${i + 1}`;
    return { name: workerId, args: ['worker'], env: { ...env, WORKER_ID: workerId, BASE_WORKSPACE: path.join(opts.baseWorkspace, workerId) } };
  });
  const processSupervisor = supervisorMachine.provide({
    actors: { child: processMachine.provide({ actors: { run: runProcess(live, logger) } }) },
  });
  const actor = createActor(upMachine.provide({ actors: { processSupervisor } }), {
    systemId: UP_ID,
    input: {
      coordinator: { name: 'coordinator', args: ['coordinator'], env: { ...env } },
      workers,
      intensity: { maxRestarts: 10, windowMs: 60_000 },
      backoff: { initialMs: 250, maxMs: 10_000, factor: 2 },
      shutdownTimeoutMs: 30_000,
      seed: process.pid,
    },
  });
  const ready = new Promise<{ grpcPort: number; httpPort: number }>((resolve) => actor.on('up.ready', (e) => resolve(e)));
  actor.on('up.restarting', (e) => logger.warn({ child: e.name, reason: e.reason }, 'child exited; restarting'));
  actor.on('up.escalated', (e) => logger.error({ child: e.name, reason: e.reason }, 'child restarted too often; stopping everything'));
  actor.subscribe({ error: (err) => logger.fatal({ err }, 'up supervisor failed') });
  const done = new Promise<number>((resolve) => actor.subscribe({ complete: () => resolve(actor.getSnapshot().context.escalation ? 1 : 0), error: () => resolve(1) }));
  actor.start();
  const first = await Promise.race([ready, done.then((code) => ({ failed: code }))]);
  if ('failed' in first) throw new Error('the coordinator could not be started (see its log above)');
  logger.info({ grpcPort: first.grpcPort, httpPort: first.httpPort, workers: opts.workers }, 'system up');
  return {
    stop: async () => {
      actor.send({ type: 'up.stop' });
      await done;
    },
    force: () => {
      for (const proc of live) proc.kill('SIGKILL');
    },
    done,
  };
}
