import type { CoordinatorPort } from '../coordinator/port.js';

type Awaitable<T> = T | Promise<T>;

/**
 * The CoordinatorPort as the MCP front door calls it: every method may answer now or later.
 * The in-process port (synchronous reads) and the gRPC remote port (all asynchronous) both fit,
 * and the MCP code awaits every call.
 */
export type McpCoordinatorPort = {
  [K in keyof CoordinatorPort]: CoordinatorPort[K] extends (...args: infer A) => infer R ? (...args: A) => Awaitable<Awaited<R>> : never;
};
