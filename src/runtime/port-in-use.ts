/**
 * A port this process was told to listen on is taken. grpc-js answers that with a multi-line
 * stack ("No address added out of total 1 resolved"); a person needs one line naming the port
 * and the variable to change.
 */
export class PortInUseError extends Error {
  constructor(readonly variable: string, host: string, port: number) {
    super(`port ${port} on ${host} is already in use (${variable}); stop what holds it, or set ${variable} to a free port`);
    this.name = 'PortInUseError';
  }
}

export const isAddressInUse = (err: unknown): boolean => (err as { code?: unknown } | undefined)?.code === 'EADDRINUSE' || /EADDRINUSE|address already in use/i.test(err instanceof Error ? err.message : String(err));
