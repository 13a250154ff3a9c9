import type { CoordinatorPort } from '../runtime/port.js';

/** The MCP front door uses the one async port, in-process or over gRPC (remote mode). */
export type McpCoordinatorPort = CoordinatorPort;
