import type { Logger } from '../log/logger.js';

/**
 * Signals are handled once, here: the first SIGTERM/SIGINT starts a graceful stop bounded by
 * `boundMs`; a second one, or the bound running out, exits at once.
 */
export function onShutdown(logger: Logger, boundMs: number, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal, boundMs }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ boundMs }, 'graceful shutdown took too long; exiting');
      process.exit(1);
    }, boundMs);
    timer.unref();
    stop().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
