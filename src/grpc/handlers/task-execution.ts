import * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '../../domain/errors.js';
import type { TaskHandle } from '../../runtime/port.js';
import type { ClientAccess } from '../client-access.js';
import { decodeConstraints, decodeToolRequest, encodeOutcome, encodeTaskStatus, encodeTaskUpdate } from '../../wire/codecs.js';
import type { StatusRequest__Output, TaskExecutionHandlers, TaskRequest__Output, TaskResponse } from '../../wire/messages.js';
import { TASK_DUPLICATE_METADATA, TASK_ID_METADATA } from '../../wire/metadata.js';
import { toServiceError, unaryHandler } from '../../wire/status.js';

/**
 * TaskExecution: ExecuteTask streams what the task's actor emits; the rest are questions to the
 * port. The response headers go out as soon as the task is accepted, so a client knows it was
 * not refused. Whether a client going away cancels the task is the task's actor's call.
 */
export function taskExecutionHandlers(access: ClientAccess): TaskExecutionHandlers {
  const executeTask = (call: grpc.ServerWritableStream<TaskRequest__Output, TaskResponse>) => {
    let ended = false;
    let handle: TaskHandle | undefined;
    const fail = (err: unknown) => {
      if (ended) return;
      ended = true;
      call.emit('error', toServiceError(err));
    };
    call.on('cancelled', () => {
      ended = true;
      handle?.abandon('the client cancelled the ExecuteTask call');
    });
    try {
      const port = access.portFor(call.metadata, call.getPeer());
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
        .then((h) => {
          handle = h;
          if (!ended) {
            const md = new grpc.Metadata();
            md.set(TASK_ID_METADATA, h.taskId);
            md.set(TASK_DUPLICATE_METADATA, String(h.duplicate));
            call.sendMetadata(md);
          } else if (call.cancelled) h.abandon('the client cancelled the ExecuteTask call');
        }, fail);
    } catch (err) {
      fail(err);
    }
  };

  // WatchTask: the same stream, for a task started by anyone; leaving it never cancels the task.
  const watchTask = (call: grpc.ServerWritableStream<StatusRequest__Output, TaskResponse>) => {
    let ended = false;
    let detach = () => {};
    call.on('cancelled', () => {
      ended = true;
      detach();
    });
    Promise.resolve()
      .then(() => access.portFor(call.metadata, call.getPeer()).watchTask(String(call.request.task_id ?? ''), String(call.request.session_id ?? '') || undefined, (update, id) => {
        if (ended) return;
        call.write(encodeTaskUpdate(id, update));
        if (update.type === 'outcome') {
          ended = true;
          call.end();
        }
      }))
      .then(
        (w) => {
          detach = w.detach;
          if (ended) w.detach();
          else call.sendMetadata(new grpc.Metadata());
        },
        (err) => {
          if (ended) return;
          ended = true;
          call.emit('error', toServiceError(err));
        },
      );
  };

  return {
    ExecuteTask: executeTask,
    WatchTask: watchTask,
    CancelTask: unaryHandler(async (req, call) => {
      const r = await access.portFor(call.metadata, call.getPeer()).cancelTask(String(req.task_id ?? ''), String(req.reason ?? ''), String(req.session_id ?? '') || undefined);
      return { cancelled: r.cancelled, state: r.state };
    }),
    GetTaskStatus: unaryHandler(async (req, call) => {
      const t = await access.portFor(call.metadata, call.getPeer()).getTask(String(req.task_id ?? ''), String(req.session_id ?? '') || undefined);
      const out = t.outcome ? encodeOutcome(t.outcome) : {};
      return {
        task_id: t.taskId,
        session_id: t.sessionId,
        tool: t.tool,
        status: t.outcome?.type === 'result' ? encodeTaskStatus(t.outcome.status) : 'STATUS_UNSPECIFIED',
        progress: t.progress ? { stage: t.progress.stage, message: t.progress.message, percent: t.progress.percent, elapsed_ms: t.progress.elapsedMs } : null,
        elapsed_ms: t.elapsedMs,
        state: t.state,
        error: out.error ?? null,
        result: out.result ?? null,
      };
    }),
  };
}
