#!/usr/bin/env node
import path from 'node:path';
import { coordinatorConfig, CoordinatorEnv } from '../config/coordinator.js';
import { isAddressInUse, PortInUseError } from '../runtime/port-in-use.js';
import { ConfigError, flagsToEnv, parseConfig, bool, seconds } from '../config/load.js';
import { workerConfig, WorkerEnv } from '../config/worker.js';
import { createLogger, type LogLevel } from '../log/logger.js';
import { localOperator } from '../auth/authenticator.js';
import { findClientToken } from './client/credentials.js';
import { CLIENT_COMMANDS } from './client/names.js';
import { checkHealth } from './health.js';
import { runKeys } from './keys.js';
import { commandHelp, type CommandHelp } from './help.js';
import { packageVersion } from '../config/package-info.js';
import { onShutdown } from './signals.js';
import { z } from 'zod';

const HELP = `codegen-mcp — isolated Python sessions for AI agents (coordinator + workers, gRPC and MCP)

Usage: codegen-mcp <command> [--option value ...]

Commands:
  coordinator   serve gRPC (GRPC_PORT, default 50051) and MCP over HTTP (HTTP_PORT, default 8080, /mcp)
  worker        dial the coordinator (COORDINATOR_ADDR) and run sessions in BASE_WORKSPACE
  up            a coordinator and N workers as supervised child processes (--workers N, default 1)
  mcp           an MCP server on stdio; with COORDINATOR_ADDR it uses that coordinator,
                without it an embedded coordinator and worker
  inspect       a loopback relay for the Stately inspector: prints the page to open and STATELY_INSPECT_URL
  health        check a coordinator's gRPC health (--addr host:port, default localhost:50051; TLS_CA for TLS)
  keys          manage tenants' API keys: keys add TENANT [--admin] | keys ls | keys rm KEY_ID
  --version     print the version

Commands for people, over gRPC to a running coordinator (COORDINATOR_ADDR, default localhost:50051;
CLIENT_TOKEN or the token file a coordinator on this host made; --json for machine output):
  sessions      list your sessions: state, worker, age, usage
  session       session create [-e KEY=VALUE] [--network]  (prints the id) | session rm ID...
  run           run FILE | -c CODE [--session ID] [-- ARGS]: output streamed, its exit code ours
                (without --session in a throwaway session, destroyed afterwards)
  cp            cp SRC DST: one file between here and a session, a session's side as SESSION_ID:path
  ls            ls SESSION_ID:[path]: a session's files
  pip           pip install PKG... --session ID
  repl          repl [--session ID]: a Python prompt whose state persists (Ctrl-C interrupts, Ctrl-D exits)
  status        the coordinator's health, its workers and your sessions; exits 1 when no worker is online

\`codegen-mcp <command> --help\` lists a command's variables with their defaults.

Every option mirrors an environment variable: --max-sessions 3 is MAX_SESSIONS=3.
Coordinator: ${Object.keys(CoordinatorEnv.shape).join(', ')}
Worker:      ${Object.keys(WorkerEnv.shape).join(', ')}
See README.md for defaults and meanings.
`;

const UpEnv = z.object({ WORKERS: z.coerce.number().int().min(1).max(64).default(1), BASE_WORKSPACE: z.string().default('./tmp/workspaces'), LOG_LEVEL: z.string().default('info') });
const McpEnv = z.object({
  COORDINATOR_ADDR: z.string().default(''),
  /** With COORDINATOR_ADDR: the credential sent (else the token file a coordinator on this host made). */
  CLIENT_TOKEN: z.string().default(''),
  CLIENT_TOKEN_FILE: z.string().default(''),
  CODEGEN_STATE_DIR: z.string().default(''),
  TLS_CA: z.string().default(''),
  TLS_SERVER_NAME: z.string().default(''),
  MCP_WAIT_LIMIT_SECONDS: seconds(50),
  LEGACY_TOOL_NAMES: bool(false),
  LOG_LEVEL: z.string().default('info'),
  BASE_WORKSPACE: z.string().default('./tmp/workspaces'),
});

const HealthEnv = z.object({ ADDR: z.string().default('localhost:50051'), SERVICE: z.string().default(''), TLS_CA: z.string().default(''), TLS_SERVER_NAME: z.string().default('') });

const InspectEnv = z.object({
  INSPECT_HOST: z.string().default('127.0.0.1'),
  INSPECT_PORT: z.coerce.number().int().min(0).max(65535).default(8090),
  /** The inspector page the bridge embeds (the hosted Stately inspector). */
  INSPECTOR_PAGE: z.string().default('https://stately.ai/inspect'),
});

const commandHelps: Record<string, CommandHelp> = {
  inspect: { usage: 'Usage: codegen-mcp inspect [--inspect-port N] [--inspect-host ADDR]', summary: 'Runs a relay for the Stately inspector on loopback: set STATELY_INSPECT_URL to the ws:// URL it prints on the coordinator and the workers, and open the page it prints (which embeds the hosted Stately inspector) in a browser.', schemas: [InspectEnv] },
  coordinator: { usage: 'Usage: codegen-mcp coordinator [--option value ...]', summary: 'Serves gRPC (the codegen.v1 services, health, reflection) and MCP over Streamable HTTP at /mcp; workers dial it.', schemas: [CoordinatorEnv] },
  worker: { usage: 'Usage: codegen-mcp worker [--option value ...]', summary: "Dials the coordinator (COORDINATOR_ADDR) and runs sessions in BASE_WORKSPACE, each task in the sandbox.", schemas: [WorkerEnv] },
  up: { usage: 'Usage: codegen-mcp up [--workers N] [--option value ...]', summary: 'A coordinator and N workers as supervised child processes; Ctrl-C drains and stops them in order. Takes every coordinator and worker variable too.', schemas: [UpEnv, CoordinatorEnv, WorkerEnv] },
  mcp: { usage: 'Usage: codegen-mcp mcp [--option value ...]', summary: 'An MCP server on stdio: with COORDINATOR_ADDR it uses that coordinator (sending CLIENT_TOKEN, or the token file), else an embedded coordinator and worker.', schemas: [McpEnv] },
  health: { usage: 'Usage: codegen-mcp health [--addr host:port] [--service NAME] | --url http://host:port/healthz', summary: "Asks a coordinator's grpc.health.v1 (or, with --url, GETs an HTTP probe such as /healthz or /readyz); prints its status and exits 0 when it is SERVING (HTTP 200).", schemas: [HealthEnv] },
};

/** Under `codegen-mcp up` (it sets this in its children's environment). */
const supervised = (): boolean => process.env['CODEGEN_SUPERVISED'] === '1';

function merged(argv: string[], known: string[]): Record<string, string | undefined> {
  return { ...process.env, ...flagsToEnv(argv, known) };
}

/** Tells a supervising `up` (over IPC) that this child is ready and where it listens. */
function signalReady(msg: Record<string, unknown>): void {
  if (process.send) process.send({ type: 'ready', ...msg });
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return command ? 0 : 2;
  }
  if (command === '--version' || command === '-V' || command === 'version') {
    process.stdout.write(`codegen-mcp ${packageVersion()}\n`);
    return 0;
  }
  // The commands for people parse their own flags (commander), --help included.
  if (CLIENT_COMMANDS.has(command)) {
    const { runClient } = await import('./client/program.js');
    return runClient(argv);
  }
  if (command !== 'keys' && (rest.includes('--help') || rest.includes('-h'))) {
    const help = commandHelps[command];
    process.stdout.write(help ? commandHelp(command, help) : HELP);
    return 0;
  }
  switch (command) {
    case 'coordinator': {
      const config = coordinatorConfig(merged(rest, Object.keys(CoordinatorEnv.shape)));
      const logger = createLogger({ level: config.logLevel, name: 'coordinator' });
      const { startCoordinator } = await import('../coordinator/main.js');
      const running = await startCoordinator(config, logger);
      onShutdown(logger, config.drainTimeoutMs + 15_000, running.stop, { supervised: supervised() });
      signalReady({ grpcPort: running.grpcPort, httpPort: running.httpPort });
      return new Promise<number>(() => {});
    }
    case 'worker': {
      const config = workerConfig(merged(rest, Object.keys(WorkerEnv.shape)));
      const logger = createLogger({ level: config.logLevel, name: 'worker' }).child({ workerId: config.workerId });
      const { startWorker } = await import('../worker/main.js');
      const running = await startWorker(config, logger);
      onShutdown(logger, config.drainTimeoutMs + 20_000, async () => {
        await running.stop();
        return running.finished;
      }, { supervised: supervised() });
      // A root that stopped on its own (an escalation: the link kept failing) ends the process for its supervisor to restart.
      void running.finished.then(async (code) => {
        await running.stop();
        process.exit(code);
      });
      if (config.testFaults) process.on('SIGUSR2', () => running.injectFault());
      signalReady({ workerId: config.workerId });
      return new Promise<number>(() => {});
    }
    case 'up': {
      const known = [...new Set([...Object.keys(UpEnv.shape), ...Object.keys(CoordinatorEnv.shape), ...Object.keys(WorkerEnv.shape)])];
      const env = merged(rest, known);
      const up = parseConfig(UpEnv, env);
      coordinatorConfig(env); // fail fast on bad options before starting anything
      const logger = createLogger({ level: up.LOG_LEVEL as LogLevel, name: 'up' });
      const { runUp } = await import('./up.js');
      const childEnv: NodeJS.ProcessEnv = { ...process.env };
      for (const [k, v] of Object.entries(env)) if (v !== undefined) childEnv[k] = v;
      const sup = await runUp({ workers: up.WORKERS, baseWorkspace: path.resolve(up.BASE_WORKSPACE), env: childEnv, logger });
      // Ctrl-C from a terminal reaches every process of the group at once; the children leave it to us, and we drain them in order.
      onShutdown(logger, 120_000, async () => {
        await sup.stop();
        return sup.done;
      }, { force: sup.force });
      return sup.done;
    }
    case 'mcp': {
      const env = merged(rest, [...new Set([...Object.keys(McpEnv.shape), ...Object.keys(WorkerEnv.shape), ...Object.keys(CoordinatorEnv.shape)])]);
      const m = parseConfig(McpEnv, env);
      // stdout carries JSON-RPC only: every log line goes to stderr.
      const logger = createLogger({ level: m.LOG_LEVEL as LogLevel, name: 'mcp', stream: 'stderr' });
      const { runMcpStdio } = await import('../mcp/stdio.js');
      const common = { logger, waitLimitMs: Math.round(m.MCP_WAIT_LIMIT_SECONDS * 1000), legacyToolNames: m.LEGACY_TOOL_NAMES };
      if (m.COORDINATOR_ADDR) {
        const { RemoteCoordinatorPort } = await import('../grpc/remote-port.js');
        const coordinator = new RemoteCoordinatorPort(m.COORDINATOR_ADDR, { connect: { token: clientTokenOf(m), ...(m.TLS_CA ? { tls: { ca: path.resolve(m.TLS_CA), serverName: m.TLS_SERVER_NAME } } : {}) } });
        const finished = deferred();
        // A signal ends stdin: runMcpStdio then destroys the connection's default session.
        onShutdown(logger, 10_000, () => (process.stdin.destroy(), finished.promise));
        await runMcpStdio({ ...common, coordinator });
        coordinator.close();
        finished.resolve();
        return 0;
      }
      const { startCoordinator } = await import('../coordinator/main.js');
      const { startWorker } = await import('../worker/main.js');
      const c = await startCoordinator(coordinatorConfig({ ...env, GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_ENABLED: 'false', RECOVERY_GRACE_SECONDS: '0' }), logger.child({ process: 'coordinator' }));
      const w = await startWorker(workerConfig({ ...env, COORDINATOR_ADDR: `127.0.0.1:${c.grpcPort}`, WORKER_ID: env['WORKER_ID'] ?? 'embedded-worker', BASE_WORKSPACE: m.BASE_WORKSPACE }), logger.child({ process: 'worker' }));
      const finished = deferred();
      onShutdown(logger, 20_000, () => (process.stdin.destroy(), finished.promise));
      await waitForWorker(c.coordinator, 30_000);
      // The person who started the process is the operator of its embedded coordinator.
      await runMcpStdio({ ...common, coordinator: c.tenancy.portFor(localOperator) });
      await w.stop();
      await c.stop();
      finished.resolve();
      return 0;
    }
    case 'inspect': {
      const env = parseConfig(InspectEnv, merged(rest, Object.keys(InspectEnv.shape)));
      const { startRelay } = await import('../inspection/relay.js');
      let relay;
      try {
        relay = await startRelay({ host: env.INSPECT_HOST, port: env.INSPECT_PORT, inspectorUrl: env.INSPECTOR_PAGE });
      } catch (err) {
        if (isAddressInUse(err)) {
          process.stderr.write(`codegen-mcp inspect: port ${env.INSPECT_PORT} on ${env.INSPECT_HOST} is in use; choose another with --inspect-port N (INSPECT_PORT)\n`);
          return 1;
        }
        throw err;
      }
      process.stdout.write(`Stately inspector relay listening on ${relay.host}:${relay.port}\n\nOpen in a browser:   ${relay.pageUrl}\nThen start the coordinator and workers with:\n  STATELY_INSPECT_URL=${relay.wsUrl}\n\nCtrl-C stops the relay.\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await relay.close();
      return 0;
    }
    case 'keys':
      return runKeys(rest, process.env, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
    case 'health': {
      // --url is a flag only: an URL variable in the environment is too common a name to act on.
      let url: string | undefined;
      const args = rest.filter((a, i) => {
        if (a.startsWith('--url=')) return ((url = a.slice('--url='.length)), false);
        if (a === '--url') return ((url = rest[i + 1]), false);
        return rest[i - 1] !== '--url';
      });
      const env = merged(args, ['ADDR', 'SERVICE', 'TLS_CA', 'TLS_SERVER_NAME']);
      if (url) env['URL'] = url;
      if (env['URL']) {
        try {
          const res = await fetch(env['URL'], { signal: AbortSignal.timeout(3_000) });
          process.stdout.write(`${env['URL']}: ${res.status} ${(await res.text()).slice(0, 500)}\n`);
          return res.status === 200 ? 0 : 1;
        } catch (err) {
          process.stderr.write(`unhealthy: ${env['URL']}: ${(err as Error).message}\n`);
          return 1;
        }
      }
      const addr = env['ADDR'] ?? 'localhost:50051';
      try {
        const status = await checkHealth(addr, env['SERVICE'] ?? '', 3_000, env['TLS_CA'] ? { ca: path.resolve(env['TLS_CA']), serverName: env['TLS_SERVER_NAME'] ?? '' } : undefined);
        process.stdout.write(`${addr}: ${status}\n`);
        return status === 'SERVING' ? 0 : 1;
      } catch (err) {
        process.stderr.write(`unhealthy: ${(err as Error).message}\n`);
        return 1;
      }
    }
    default:
      process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${HELP}`);
      return 2;
  }
}

/** CLIENT_TOKEN, else the token file in the state folder (where a coordinator on this host wrote it). */
function clientTokenOf(m: { CLIENT_TOKEN: string; CLIENT_TOKEN_FILE: string; CODEGEN_STATE_DIR: string }): string {
  const { token, file } = findClientToken({ token: m.CLIENT_TOKEN, tokenFile: m.CLIENT_TOKEN_FILE, stateDir: m.CODEGEN_STATE_DIR });
  if (!token) throw new ConfigError([`CLIENT_TOKEN: not set, and no token file at ${file}; set CLIENT_TOKEN to an API key ("codegen-mcp keys add") or to the coordinator's client token`]);
  return token;
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function waitForWorker(port: { listWorkers(): Promise<{ state: string }[]> }, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await port.listWorkers()).some((w) => w.state === 'online')) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Exits once stdout and stderr have taken what was written: writes to a pipe are asynchronous,
 * and process.exit drops what is still queued (`codegen-mcp cp $S:big.bin - | gzip` lost its tail).
 */
async function exitWhenFlushed(code: number): Promise<never> {
  const flushed = (stream: NodeJS.WriteStream) => new Promise<void>((resolve) => (stream.writableLength === 0 ? resolve() : stream.write('', () => resolve())));
  await Promise.race([Promise.all([flushed(process.stdout), flushed(process.stderr)]), new Promise((r) => setTimeout(r, 30_000).unref())]);
  process.exit(code);
}

main(process.argv.slice(2)).then(
  (code) => exitWhenFlushed(code),
  (err) => {
    if (err instanceof ConfigError || err instanceof PortInUseError) process.stderr.write(`codegen-mcp: ${err.message}\n`);
    else process.stderr.write(`codegen-mcp: ${err instanceof Error ? err.stack : String(err)}\n`);
    return exitWhenFlushed(1);
  },
);
