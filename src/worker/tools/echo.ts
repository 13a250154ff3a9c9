import type { EchoInput } from '../../domain/tools.js';
import type { ToolContext, ToolExecution } from './types.js';

/** echo: the message back, unchanged. */
export async function runEcho(input: EchoInput, _ctx: ToolContext): Promise<ToolExecution> {
  return { status: 'SUCCESS', reply: { tool: 'echo', output: { message: input.message ?? '' } } };
}
