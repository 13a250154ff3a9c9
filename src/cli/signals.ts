import type { Logger } from '../log/logger.js';

export interface ShutdownOptions {
  /** The process runs under `codegen-mcp up`: a terminal's Ctrl-C reaches the whole group, and `up` drains everything in order, so SIGINT is left to it. */
  supervised?: boolean;
  /** Called on the second signal, before exiting (e.g. kill the children). */
  force?: () => void;
}

/**
 * Signals are handled once, here: the first SIGTERM/SIGINT starts a graceful stop bounded by
 * `boundMs`; a second one, or the bound running out, exits at once. A supervised process also
 * drains when its supervisor goes away (the IPC channel closes).
 */
export function onShutdown(logger: Logger, boundMs: number, stop: () => Promise<number | void>, opts: ShutdownOptions = {}): void {
  let stopping = false;
  const begin = (why: string) => {
    if (stopping) {
      logger.warn({ signal: why }, 'second signal: exiting now');
      opts.force?.();
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal: why, boundMs }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ boundMs }, 'graceful shutdown took too long; exiting');
      opts.force?.();
      process.exit(1);
    }, boundMs);
    timer.unref();
    stop().then(
      (code) => process.exit(typeof code === 'number' ? code : 0),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => begin('SIGTERM'));
  if (opts.supervised) {
    // The terminal's Ctrl-C also reached us; `up` turns it into one ordered drain (SIGTERM).
    process.on('SIGINT', () => logger.debug('SIGINT left to the supervisor'));
    process.on('disconnect', () => begin('supervisor gone'));
  } else {
    process.on('SIGINT', () => begin('SIGINT'));
  }
}
