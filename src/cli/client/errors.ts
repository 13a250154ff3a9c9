/**
 * The command line's errors: each becomes one line on stderr that names what is wrong and what
 * to do, and an exit status (1, or 2 for a usage error). Never a stack trace.
 */
import { CodegenError } from '../../domain/errors.js';

/** The command was called wrongly (a missing operand, a bad flag value): exit status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A failure the command already phrased for people: exit status `exitCode` (default 1). */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 1,
    readonly code = 'FAILED',
  ) {
    super(message);
  }
}

export interface ErrorReport {
  message: string;
  exitCode: number;
  /** A stable name for --json output: the coordinator's code, USAGE, or FAILED. */
  code: string;
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ').trim();

/** What to print for `err` when talking to the coordinator at `address`. */
export function describeError(err: unknown, address: string): ErrorReport {
  if (err instanceof UsageError) return { message: oneLine(err.message), exitCode: 2, code: 'USAGE' };
  if (err instanceof CliError) return { message: oneLine(err.message), exitCode: err.exitCode, code: err.code };
  if (err instanceof CodegenError) return { message: oneLine(advise(err, address)), exitCode: 1, code: err.code };
  const message = err instanceof Error ? err.message : String(err);
  return { message: oneLine(message), exitCode: 1, code: 'FAILED' };
}

/** The coordinator's (or the channel's) error with the advice a person needs next. */
function advise(err: CodegenError, address: string): string {
  const m = err.message;
  switch (err.code) {
    case 'UNAUTHENTICATED':
      return `the coordinator at ${address} refused the credential (${m}); set CLIENT_TOKEN (or --token) to an API key from "codegen-mcp keys add" or to the coordinator's client token`;
    case 'SESSION_NOT_FOUND':
      return `${m}; "codegen-mcp sessions" lists yours`;
    case 'UNAVAILABLE':
      // No code from the coordinator: the channel itself failed (nothing listens, TLS, a timeout).
      if (/^cannot reach |did not answer in time/.test(m)) {
        const tls = /ssl|tls|certificate|handshake/i.test(m) ? '; for a coordinator that serves TLS set TLS_CA (and TLS_SERVER_NAME)' : '';
        // grpc-js says "No connection established. Last error: Error: connect ECONNREFUSED …": the socket's own words are the useful part.
        const why = /\b((?:connect|getaddrinfo) E[A-Z]+(?: \S+?)?)\.?(?:\s|$)/.exec(m)?.[1] ?? m.replace(`cannot reach the coordinator at ${address}: `, '');
        return `cannot reach the coordinator at ${address} (${why}); is it running? Set COORDINATOR_ADDR (or --addr) to its host:port${tls}`;
      }
      return m;
    default:
      return m;
  }
}
