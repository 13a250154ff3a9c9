import { fromCallback, fromPromise } from 'xstate';
import { CodegenError } from '../domain/errors.js';
import type { SessionConfig } from '../domain/sessions.js';
import type { TaskSpec } from '../domain/tasks.js';
import type { Logger } from '../log/logger.js';
import { coordinatorMachine } from '../../machines/coordinator.machine.js';
import { sessionMachine } from '../../machines/session.machine.js';
import { taskMachine, type ExecutorEvent, type TaskEvent } from '../../machines/task.machine.js';
import { workerConnectionMachine, type StreamHandle } from '../../machines/worker-connection.machine.js';
import type { WorkerChannel, WorkerLinks } from './worker-channel.js';

/** The coordinator's effects: every one goes through a worker's task stream. */
export interface CoordinatorEffectsOptions {
  links: WorkerLinks;
  logger: Logger;
  /** How long a worker has to answer a create or destroy command. */
  commandTimeoutMs: number;
}

function linkTo(links: WorkerLinks, workerId: string): WorkerChannel {
  const channel = links.get(workerId);
  if (!channel || channel.closed) throw new CodegenError('WORKER_LOST', `worker ${workerId} is not connected`);
  return channel;
}

export function coordinatorActors(opts: CoordinatorEffectsOptions) {
  const { links, logger } = opts;

  const prepareWorkspace = fromPromise<{ workspacePath: string }, { sessionId: string; workerId: string; config: SessionConfig }>(async ({ input }) => {
    const reply = await linkTo(links, input.workerId).createSession(input.sessionId, input.config, opts.commandTimeoutMs);
    if (!reply.ok) throw new CodegenError(reply.error?.code ?? 'INTERNAL', reply.error?.message ?? 'the worker refused the session');
    return { workspacePath: reply.workspacePath };
  });

  const releaseWorkspace = fromPromise<void, { sessionId: string; workerId: string; remove: boolean; force: boolean }>(async ({ input }) => {
    const channel = links.get(input.workerId);
    if (!channel || channel.closed) return; // the worker is gone; it drops orphans when it registers again
    const reply = await channel.destroySession(input.sessionId, input.force, opts.commandTimeoutMs);
    if (!reply.ok) logger.warn({ sessionId: input.sessionId, error: reply.error }, 'worker could not release the session');
  });

  // Forwards one task to its worker and turns the worker's updates into task events.
  const executor = fromCallback<ExecutorEvent, { spec: TaskSpec; workerId: string }>(({ input, sendBack, receive }) => {
    const back = (e: TaskEvent) => sendBack(e);
    let channel: WorkerChannel;
    try {
      channel = linkTo(links, input.workerId);
    } catch (err) {
      back({ type: 'task.finished', outcome: { type: 'error', error: (err as CodegenError).toJSON() } });
      return () => {};
    }
    let done = false;
    channel.runTask(input.spec, (update) => {
      if (done) return;
      if (update.type === 'progress') back({ type: 'task.progressed', progress: update.progress });
      else if (update.type === 'log') back({ type: 'task.logged', log: update.log });
      else {
        done = true;
        back({ type: 'task.finished', outcome: update.outcome });
      }
    });
    receive((e) => {
      if (e.type === 'executor.cancel') channel.cancelTask(input.spec.taskId, input.spec.sessionId, e.reason);
    });
    return () => {
      // Stopped before an outcome (the session was torn down): make sure nothing keeps running.
      if (!done) channel.cancelTask(input.spec.taskId, input.spec.sessionId, 'task actor stopped');
    };
  });

  // Owns one worker's open stream for as long as its connection actor is online.
  const workerStream = fromCallback<import('xstate').EventObject, { workerId: string; registrationId: string; stream: StreamHandle }>(({ input, sendBack }) => {
    const channel = input.stream as unknown as WorkerChannel;
    links.set(channel);
    channel.onClose((reason) => sendBack({ type: 'stream.closed', reason }));
    return () => {
      links.delete(channel);
      channel.close('connection actor stopped');
    };
  });

  return { prepareWorkspace, releaseWorkspace, executor, workerStream };
}

/** The coordinator's root machine with its effects provided. */
export function provideCoordinator(opts: CoordinatorEffectsOptions) {
  const a = coordinatorActors(opts);
  return coordinatorMachine.provide({
    actors: {
      session: sessionMachine.provide({
        actors: {
          task: taskMachine.provide({ actors: { executor: a.executor } }),
          prepareWorkspace: a.prepareWorkspace,
          releaseWorkspace: a.releaseWorkspace,
        },
      }),
      workerConnection: workerConnectionMachine.provide({ actors: { workerStream: a.workerStream } }),
    },
  });
}
