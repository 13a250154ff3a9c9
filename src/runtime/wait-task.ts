import type { TaskOutcome } from '../domain/tasks.js';
import type { CoordinatorPort } from './port.js';

/** A task's outcome, or undefined when `timeoutMs` passes first: watchTask with a timer, for any port. */
export async function waitForOutcome(port: Pick<CoordinatorPort, 'watchTask'>, taskId: string, timeoutMs: number): Promise<TaskOutcome | undefined> {
  let resolve!: (o: TaskOutcome | undefined) => void;
  const result = new Promise<TaskOutcome | undefined>((r) => (resolve = r));
  const timer = setTimeout(() => resolve(undefined), Math.max(0, timeoutMs));
  const watch = await port.watchTask(taskId, undefined, (u) => {
    if (u.type === 'outcome') resolve(u.outcome);
  });
  try {
    return await result;
  } finally {
    clearTimeout(timer);
    watch.detach();
  }
}
