/**
 * MCP over stdio: one connection for the life of the process. Nothing but JSON-RPC goes to
 * stdout (logs go wherever the caller's logger writes: stderr in this mode).
 */
import { randomUUID } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { createMcpServer, type McpOptions } from './server.js';

export interface McpStdioStreams {
  /** Defaults to process.stdin / process.stdout; tests pass their own. */
  stdin?: Readable;
  stdout?: Writable;
}

/** Serves MCP on stdin/stdout; resolves when stdin ends (or the transport closes) and the connection is cleaned up. */
export async function runMcpStdio(opts: McpOptions & McpStdioStreams): Promise<void> {
  const stdin = opts.stdin ?? process.stdin;
  const stdout = opts.stdout ?? process.stdout;
  const connectionId = `stdio-${randomUUID()}`;
  // When stdin ends the client is gone for good (a new process means a new connection), and
  // clients stop waiting for the process soon after: no grace for the default session here.
  const { server, close } = createMcpServer({ ...opts, defaultSessionGraceMs: opts.defaultSessionGraceMs ?? 0, connectionId });
  const transport = new StdioServerTransport(stdin, stdout);
  const ended = new Promise<void>((resolve) => {
    stdin.once('end', resolve);
    stdin.once('close', resolve);
    server.server.onclose = () => resolve();
  });
  await server.connect(transport);
  opts.logger.info({ connection: connectionId }, 'MCP stdio server ready');
  await ended;
  await close();
}
