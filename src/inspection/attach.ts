import { componentLogger, type Logger } from '../log/logger.js';
import { inspectionLogger } from '../log/inspection.js';
import { InspectionHub } from './hub.js';
import { startStatelyInspector, type StatelyInspector } from './stately.js';
import { LiveRegistry } from '../live/registry.js';

/** A process's inspection: the hub its root is made with, the transition log on it, and the Stately inspector when a URL is set. */
export function processInspection(opts: { logger: Logger; statelyUrl: string; processName: string; forwarding?: boolean }): { hub: InspectionHub; live: LiveRegistry; stately: StatelyInspector | undefined; stop(): void } {
  const hub = new InspectionHub();
  hub.add(inspectionLogger(componentLogger(opts.logger, 'inspect')));
  // The live view's records: names and states of every actor (a worker forwards its own to the coordinator).
  const live = new LiveRegistry(opts.processName, opts.forwarding ?? false);
  hub.add(live.listener);
  // XState says nothing when an actor stops: the stopped ones are forgotten on a timer.
  const sweep = setInterval(() => live.sweep(), 1_000);
  sweep.unref();
  let stately: StatelyInspector | undefined;
  if (opts.statelyUrl) {
    stately = startStatelyInspector({ url: opts.statelyUrl, processName: opts.processName, logger: componentLogger(opts.logger, 'stately-inspect') });
    hub.add(stately.listener);
  }
  return {
    hub,
    live,
    stately,
    stop: () => {
      clearInterval(sweep);
      stately?.stop();
    },
  };
}
