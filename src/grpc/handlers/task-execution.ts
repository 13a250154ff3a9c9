import type * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '../../domain/errors.js';
import type { CoordinatorPort } from '../../coordinator/port.js';
import { decodeConstraints, decodeToolRequest, encodeOutcome, encodeTaskStatus, encodeTaskUpdate } from '../../wire/codecs.js';
import type { TaskExecutionHandlers, TaskRequest__Output, TaskResponse } from '../../wire/messages.js';
import { toServiceError, unaryHandler } from '../../wire/status.js';

/** TaskExecution: ExecuteTask streams what the task actor emits; the rest are questions to the port. */
export function taskExecutionHandlers(port: CoordinatorPort): TaskExecutionHandlers {
  const executeTask = (call: grpc.ServerWritableStream<TaskRequest__Output, TaskResponse>) => {
    let ended = false;
    let taskId = '';
    let owner = false;
    let clientGone = false;
    let detach = () => {};
    const cancelOwnTask = () => {
      // The client that started the task went away: nobody will read the result, so stop the
      // work too. A client that only attached to an earlier run (a repeated task_id) cancels nothing.
      if (taskId && owner) port.cancelTask(taskId, 'client cancelled the ExecuteTask call').catch(() => {});
    };
    const fail = (err: unknown) => {
      if (ended) return;
      ended = true;
      call.emit('error', toServiceError(err));
    };
    call.on('cancelled', () => {
      if (ended) return;
      ended = true;
      clientGone = true;
      detach();
      cancelOwnTask();
    });
    try {
      const req = call.request;
      const sessionId = typeof req.session_id === 'string' ? req.session_id : '';
      if (!sessionId) throw invalidArgument('session_id', 'is required');
      const callSpec = decodeToolRequest(req.typed_request);
      const constraints = decodeConstraints(req.constraints);
      const sequence = Number(req.sequence ?? 0);
      port
        .submitTask({ taskId: String(req.task_id ?? ''), sessionId, call: callSpec, constraints, sequence }, (update, id) => {
          if (ended) return;
          call.write(encodeTaskUpdate(id, update));
          if (update.type === 'outcome') {
            ended = true;
            call.end();
          }
        })
        .then((handle) => {
          taskId = handle.taskId;
          owner = !handle.duplicate;
          detach = handle.detach;
          if (ended) handle.detach();
          if (clientGone) cancelOwnTask();
        }, fail);
    } catch (err) {
      fail(err);
    }
  };

  return {
    ExecuteTask: executeTask,
    CancelTask: unaryHandler(async (req) => {
      const r = await port.cancelTask(String(req.task_id ?? ''), String(req.reason ?? ''), String(req.session_id ?? '') || undefined);
      return { cancelled: r.cancelled, state: r.state };
    }),
    GetTaskStatus: unaryHandler((req) => {
      const t = port.getTask(String(req.task_id ?? ''), String(req.session_id ?? '') || undefined);
      const out = t.outcome ? encodeOutcome(t.outcome) : {};
      return {
        task_id: t.taskId,
        status: t.outcome?.type === 'result' ? encodeTaskStatus(t.outcome.status) : 'STATUS_UNSPECIFIED',
        progress: t.progress ? { stage: t.progress.stage, message: t.progress.message, percent: t.progress.percent, elapsed_ms: t.progress.elapsedMs } : undefined,
        elapsed_ms: t.elapsedMs,
        state: t.state,
        error: out.error,
      };
    }),
  };
}
