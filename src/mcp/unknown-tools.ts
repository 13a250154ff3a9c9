/**
 * A call to a tool this server does not have is a protocol error (JSON-RPC -32602), as the MCP
 * specification's tools page says, not a tool result with isError: the SDK's McpServer answers
 * the latter, and clients then take a typo for a tool that ran and failed.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';

type RequestHandler = (request: { params?: { name?: unknown } }, extra: unknown) => Promise<unknown>;

/** Wraps the registered tools/call handler; call after every tool is registered. */
export function refuseUnknownTools(server: McpServer): void {
  // The SDK keeps its handlers in a private map; McpServer offers no hook for an unknown name.
  const handlers = (server.server as unknown as { _requestHandlers?: Map<string, RequestHandler> })._requestHandlers;
  const call = handlers?.get('tools/call');
  if (!handlers || !call) throw new Error('refuseUnknownTools: no tools/call handler is registered (an SDK change?)');
  const tools = server as unknown as { _registeredTools: Record<string, { enabled: boolean } | undefined> };
  handlers.set('tools/call', (request, extra) => {
    const name = request.params?.name;
    if (typeof name === 'string' && !tools._registeredTools[name]?.enabled) {
      throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${JSON.stringify(name)}; tools/list names the tools this server has`);
    }
    return call(request, extra);
  });
}
