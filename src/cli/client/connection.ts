/**
 * What every command that talks to the coordinator shares: the flags that say where it is and
 * who we are (each mirrors the variable `codegen-mcp mcp` reads), and the connection itself, the
 * same gRPC client the MCP server's remote mode uses.
 */
import path from 'node:path';
import { Option, type Command } from 'commander';
import { RemoteCoordinatorPort } from '../../grpc/remote-port.js';
import type { ConnectOptions } from '../../wire/client.js';
import { CliError } from './errors.js';
import { findClientToken } from './credentials.js';

export const DEFAULT_ADDR = 'localhost:50051';

export interface ConnectionFlags {
  addr: string;
  token?: string;
  tokenFile?: string;
  tlsCa?: string;
  tlsServerName?: string;
  json?: boolean;
}

/** The connection and output flags, with the variables they default to. */
export function withConnection(cmd: Command): Command {
  return cmd
    .addOption(new Option('--addr <host:port>', "the coordinator's gRPC client port").env('COORDINATOR_ADDR').default(DEFAULT_ADDR))
    .addOption(new Option('--token <key>', 'the credential: an API key ("codegen-mcp keys add") or the client token; CLIENT_TOKEN keeps it out of ps').env('CLIENT_TOKEN'))
    .addOption(new Option('--token-file <path>', 'read the credential from this file when no token is given (default: client-token in CODEGEN_STATE_DIR, which a coordinator on this host made)').env('CLIENT_TOKEN_FILE'))
    .addOption(new Option('--tls-ca <pem>', "verify a TLS coordinator's certificate with this CA").env('TLS_CA'))
    .addOption(new Option('--tls-server-name <name>', 'the name to check in its certificate (default: the host of --addr)').env('TLS_SERVER_NAME'))
    .option('--json', 'machine output on stdout: one JSON document (JSON lines for streams)', false);
}

export interface Client {
  port: RemoteCoordinatorPort;
  address: string;
  tls: ConnectOptions['tls'];
  close(): void;
}

/** Large enough for the biggest file the fs tools move (64 MiB, base64 in a message). */
const MAX_MESSAGE_BYTES = 96 * 1024 * 1024;

export function connect(flags: ConnectionFlags): Client {
  const { token, file } = findClientToken({ ...(flags.token ? { token: flags.token } : {}), ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}) });
  if (!token) {
    throw new CliError(`no credential: CLIENT_TOKEN is not set and there is no token file at ${file}; set CLIENT_TOKEN (or --token) to an API key from "codegen-mcp keys add" or to the coordinator's client token, or CLIENT_TOKEN_FILE to a file that holds one`, 1, 'UNAUTHENTICATED');
  }
  const tls = flags.tlsCa ? { ca: path.resolve(flags.tlsCa), ...(flags.tlsServerName ? { serverName: flags.tlsServerName } : {}) } : undefined;
  const port = new RemoteCoordinatorPort(flags.addr, {
    connect: { token, ...(tls ? { tls } : {}) },
    channelOptions: { 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES, 'grpc.max_send_message_length': MAX_MESSAGE_BYTES },
  });
  return { port, address: flags.addr, tls, close: () => port.close() };
}
