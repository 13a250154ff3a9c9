/**
 * Helpers of the Docker Compose end-to-end suites (test/e2e/docker-*.test.ts).
 * Those suites run only from scripts/docker/run-compose-test.sh (make
 * docker-test / docker-test-multi), which starts the stack and sets the
 * variables below; under a plain `npm test` they skip themselves.
 */
import { execFileSync } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { connectCoordinator, unary, type CoordinatorClients } from '../../src/wire/client.js';

export const dockerEnv = {
  enabled: process.env.CODEGEN_DOCKER_E2E === '1' && Boolean(process.env.CODEGEN_DOCKER_GRPC_ADDR),
  mode: process.env.CODEGEN_DOCKER_MODE ?? 'single',
  grpcAddr: process.env.CODEGEN_DOCKER_GRPC_ADDR ?? '',
  mcpUrl: process.env.CODEGEN_DOCKER_MCP_URL ?? '',
  /** The coordinator's CLIENT_TOKEN (scripts/docker/run-compose-test.sh sets both). */
  clientToken: process.env.CODEGEN_DOCKER_CLIENT_TOKEN ?? '',
  /** Host folder mounted at /wheels in the workers (PIP_FIND_LINKS=/wheels, PIP_NO_INDEX=1). */
  wheels: process.env.CODEGEN_DOCKER_WHEELS ?? '',
  /** The stack's compose command, as a JSON array (e.g. [".../compose.sh", "-p", "codegen-test", "-f", "docker-compose.test.yml"]). */
  compose: JSON.parse(process.env.CODEGEN_DOCKER_COMPOSE_JSON ?? '[]') as string[],
};

/** `docker compose restart <service>` on the test stack, as an operator would type it. */
export function composeRestart(service: string): void {
  const [cmd, ...args] = dockerEnv.compose;
  if (!cmd) throw new Error('CODEGEN_DOCKER_COMPOSE_JSON is not set (run through scripts/docker/run-compose-test.sh)');
  execFileSync(cmd, [...args, 'restart', service], { stdio: 'inherit', timeout: 180_000 });
}

/** Retries `fn` while it fails (the coordinator or the worker is still coming back), up to `timeoutMs`. */
export async function untilItWorks<T>(fn: () => Promise<T>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

export interface Session {
  session_id: string;
  worker_id: string;
  workspace_path: string;
  state: string;
}

export class GrpcDriver {
  readonly clients: CoordinatorClients;

  constructor(addr: string) {
    this.clients = connectCoordinator(addr, {}, { token: dockerEnv.clientToken });
  }

  createSession(metadata: Record<string, string> = {}): Promise<Session> {
    return unary<Session>(this.clients.sessions, 'CreateSession', { metadata }, { deadlineMs: 180_000 });
  }

  destroySession(sessionId: string): Promise<unknown> {
    return unary(this.clients.sessions, 'DestroySession', { session_id: sessionId, force: true }, { deadlineMs: 60_000 });
  }

  /** ExecuteTask to its end: the typed response of the tool (`run_python`, `fs_write`, ...) and the final status. */
  execute(sessionId: string, typedRequest: Record<string, unknown>, timeoutMs = 180_000): Promise<{ status: string; response: any; logs: string[] }> {
    return new Promise((resolve, reject) => {
      const call = this.clients.tasks.ExecuteTask(
        { session_id: sessionId, typed_request: typedRequest },
        new grpc.Metadata(),
        { deadline: new Date(Date.now() + timeoutMs) },
      ) as grpc.ClientReadableStream<any>;
      const logs: string[] = [];
      let done: { status: string; response: any; logs: string[] } | undefined;
      let failure: Error | undefined;
      call.on('data', (msg: any) => {
        if (msg.log) logs.push(String(msg.log.line));
        if (msg.result) {
          const typed = msg.result.typed_response ?? {};
          const kind = typed.response ?? Object.keys(typed).find((k) => k !== 'response' && typed[k]);
          done = { status: msg.result.status, response: kind ? typed[kind] : undefined, logs };
        }
        if (msg.error) failure = new Error(`task error ${msg.error.code}: ${msg.error.message} ${msg.error.details ?? ''}`);
      });
      call.on('error', reject);
      call.on('end', () => {
        if (failure) reject(failure);
        else if (done) resolve(done);
        else reject(new Error('ExecuteTask stream ended with neither result nor error'));
      });
    });
  }

  async runPython(sessionId: string, code: string): Promise<{ stdout: string; stderr: string; exit_code: number }> {
    const r = await this.execute(sessionId, { run_python: { code } });
    return { stdout: r.response?.stdout ?? '', stderr: r.response?.stderr ?? '', exit_code: Number(r.response?.exit_code ?? -1) };
  }

  close(): void {
    this.clients.close();
  }
}

/** An MCP client over Streamable HTTP; `call` returns the tool's structuredContent (and fails on isError). */
export class McpDriver {
  readonly client = new Client({ name: 'codegen-docker-e2e', version: '1.0.0' });

  static async connect(url: string): Promise<McpDriver> {
    const d = new McpDriver();
    await d.client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${dockerEnv.clientToken}` } } }));
    return d;
  }

  async call(name: string, args: Record<string, unknown>): Promise<any> {
    const res: any = await this.client.callTool({ name, arguments: args }, undefined, { timeout: 180_000 });
    if (res.isError) throw new Error(`${name} failed: ${JSON.stringify(res.content)}`);
    if (res.structuredContent) return res.structuredContent;
    const text = (res.content ?? []).find((c: any) => c.type === 'text')?.text;
    return text ? JSON.parse(text) : res;
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

/** Python that reports, as JSON, which of `modules` import and their `value`. */
export function probeImports(modules: string[]): string {
  return [
    'import importlib, json',
    'out = {}',
    `for m in ${JSON.stringify(modules)}:`,
    '    try:',
    '        out[m] = importlib.import_module(m).value',
    '    except ImportError:',
    '        out[m] = None',
    'print(json.dumps(out))',
  ].join('\n');
}

export function countBy<T>(items: T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const it of items) out[key(it)] = (out[key(it)] ?? 0) + 1;
  return out;
}
