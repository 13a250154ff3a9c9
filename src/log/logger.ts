import pino, { type Logger } from 'pino';

export type { Logger };
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

export interface LoggerOptions {
  level: LogLevel;
  name: string;
  /** MCP stdio mode logs to stderr: its stdout carries JSON-RPC only. */
  stream?: 'stdout' | 'stderr';
  /** Human-readable lines; defaults to whether the stream is a terminal. */
  pretty?: boolean;
}

/** The process's one root logger; components take children of it. JSON lines unless a person is watching. */
export function createLogger(options: LoggerOptions): Logger {
  const fd = options.stream === 'stderr' ? 2 : 1;
  const tty = fd === 2 ? process.stderr.isTTY : process.stdout.isTTY;
  const pretty = options.pretty ?? Boolean(tty);
  const base = { level: options.level, name: options.name, base: { pid: process.pid } };
  if (pretty) {
    return pino(base, pino.transport({ target: 'pino-pretty', options: { destination: fd, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } }));
  }
  return pino(base, pino.destination({ fd, sync: true }));
}

/**
 * A component's logger. pino writes the bindings of every level into each line, so a component
 * made inside another (the MCP server inside the HTTP front door) keeps the outer one's name:
 * a second `component` would repeat the key in the JSON line.
 */
export function componentLogger(parent: Logger, component: string, bindings: Record<string, unknown> = {}): Logger {
  return parent.child('component' in parent.bindings() ? bindings : { component, ...bindings });
}

/** A logger that writes nothing, for tests. */
export const silentLogger = (): Logger => pino({ level: 'silent' });
