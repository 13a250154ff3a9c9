import { fromCallback, type AnyActorRef, type EventObject } from 'xstate';
import { toErrorInfo } from '../domain/errors.js';
import { newRequestId } from '../domain/ids.js';
import type { Logger } from '../log/logger.js';
import type { WorkerStream, WorkerStreamLink } from '../runtime/port.js';
import type { WorkerMessage__Output } from '../wire/messages.js';
import { decodeInspectionBatch, decodeWorkerMessage, encodeCommand, type WorkerFact } from '../wire/worker-codecs.js';
import type { LiveRegistry } from '../live/registry.js';
import { sessionProxyIdOf } from '../../machines/coordinator/session-proxy.machine.js';
import { taskProxyIdOf } from '../../machines/coordinator/task-proxy.machine.js';
import type { WorkerConnectionEvent } from '../../machines/coordinator/worker-connection.machine.js';

/**
 * Open task streams, by id: the gRPC call stays here, and actors name it by its id (their
 * contexts and inputs stay plain data). A stream is adopted by its worker's connection actor,
 * whose `workerStream` logic writes the commands it is sent and routes what the worker sends
 * back straight to the actor it is about, by systemId: replies and reports to the session's
 * proxy, task updates to the task's proxy. Nothing is kept here about sessions or tasks.
 */
interface OpenStream {
  stream: WorkerStream;
  onMessage: ((msg: WorkerMessage__Output) => void) | undefined;
  onClose: ((reason: string) => void) | undefined;
  closed: string | undefined;
  /** Messages that arrived before the connection actor adopted the stream. */
  early: WorkerMessage__Output[];
}

export class StreamTable {
  private readonly open = new Map<string, OpenStream>();
  private counter = 0;

  /** Registers a new stream; the returned link feeds it from the front door. */
  add(stream: WorkerStream): { streamId: string; link: WorkerStreamLink } {
    const streamId = `stream-${++this.counter}-${newRequestId()}`;
    const entry: OpenStream = { stream, onMessage: undefined, onClose: undefined, closed: undefined, early: [] };
    this.open.set(streamId, entry);
    const link: WorkerStreamLink = {
      receive: (msg) => {
        if (entry.closed !== undefined) return;
        if (entry.onMessage) entry.onMessage(msg);
        else if (entry.early.length < 1_000) entry.early.push(msg);
      },
      close: (reason) => {
        if (entry.closed !== undefined) return;
        entry.closed = reason;
        this.open.delete(streamId);
        entry.onClose?.(reason);
      },
    };
    return { streamId, link };
  }

  /** The connection actor takes the stream; undefined when it closed in the meantime. */
  adopt(streamId: string, onMessage: (msg: WorkerMessage__Output) => void, onClose: (reason: string) => void): WorkerStream | undefined {
    const entry = this.open.get(streamId);
    if (!entry || entry.closed !== undefined) return undefined;
    entry.onMessage = onMessage;
    entry.onClose = onClose;
    for (const msg of entry.early.splice(0)) onMessage(msg);
    return entry.stream;
  }

  /** Forgets a stream the actors never took (its call is answered by the front door). */
  forget(streamId: string): void {
    this.open.delete(streamId);
  }

  drop(streamId: string): void {
    const entry = this.open.get(streamId);
    this.open.delete(streamId);
    if (entry && entry.closed === undefined) {
      entry.closed = 'dropped';
      try {
        entry.stream.end();
      } catch {
        // already gone
      }
    }
  }

  closeAll(): void {
    for (const id of [...this.open.keys()]) this.drop(id);
  }
}

/**
 * Sends what a worker said to the actor it is about, by systemId: replies and reports to the
 * session's proxy, task updates to the task's proxy. False when that actor is not there (a task
 * update for a task that already ended here — WORKER_LOST, or cancelled at the grace — is
 * expected and counts as delivered).
 */
export function routeWorkerFact(fact: WorkerFact, workerId: string, atMs: number, to: (systemId: string) => AnyActorRef | undefined): boolean {
  switch (fact.kind) {
    case 'reply': {
      const proxy = to(sessionProxyIdOf(fact.sessionId));
      proxy?.send({ type: 'command.replied', requestId: fact.requestId, ok: fact.ok, ...(fact.error ? { error: fact.error } : {}), atMs });
      return proxy !== undefined;
    }
    case 'task_update': {
      const task = to(taskProxyIdOf(fact.taskId));
      const u = fact.update;
      if (u.type === 'progress') task?.send({ type: 'task.progressed', progress: u.progress, atMs });
      else if (u.type === 'log') task?.send({ type: 'task.logged', log: u.log, atMs });
      else task?.send({ type: 'task.finished', outcome: u.outcome, atMs });
      return true;
    }
    case 'report': {
      const proxy = to(sessionProxyIdOf(fact.report.description.sessionId));
      proxy?.send({ type: 'session.reported', workerId, report: fact.report, atMs });
      return proxy !== undefined;
    }
  }
}

export interface StreamLogicOptions {
  streams: StreamTable;
  logger: Logger;
  /** The coordinator's live view: each worker's forwarded records go here, and leave with its stream. */
  live?: LiveRegistry;
}

/** The connection actor's `workerStream` logic: the one writer to a worker, and the router of what it sends. */
export function workerStreamLogic(opts: StreamLogicOptions) {
  return fromCallback<EventObject, { workerId: string; registrationId: string; streamId: string }>(({ input, receive, sendBack, system }) => {
    const log = opts.logger.child({ workerId: input.workerId });
    const to = (systemId: string): AnyActorRef | undefined => system.get(systemId) as AnyActorRef | undefined;
    const route = (msg: WorkerMessage__Output): void => {
      if (msg.body === 'inspection') {
        // The worker's live-view records: names and states, for the live view only.
        try {
          if (opts.live && msg.inspection) opts.live.applyRemote(input.workerId, decodeInspectionBatch(msg.inspection), input.streamId);
        } catch (err) {
          log.warn({ err: toErrorInfo(err) }, 'dropped a malformed live-view batch from the worker');
        }
        return;
      }
      const atMs = Date.now();
      let fact;
      try {
        fact = decodeWorkerMessage(msg);
      } catch (err) {
        log.warn({ err: toErrorInfo(err), body: msg.body }, 'dropped a malformed message from the worker');
        return;
      }
      if (routeWorkerFact(fact, input.workerId, atMs, to)) return;
      if (fact.kind === 'reply') log.debug({ sessionId: fact.sessionId }, 'a reply about a session this coordinator does not know');
      else if (fact.kind === 'report' && !fact.report.gone) {
        log.warn({ sessionId: fact.report.description.sessionId, state: fact.report.state }, 'a report about a session this coordinator does not know was ignored; the worker lists it at its next registration');
      }
    };
    const stream = opts.streams.adopt(input.streamId, route, (reason) => sendBack({ type: 'stream.closed', reason, atMs: Date.now() } satisfies WorkerConnectionEvent));
    if (!stream) {
      sendBack({ type: 'stream.closed', reason: 'the stream closed before it was taken', atMs: Date.now() } satisfies WorkerConnectionEvent);
      return () => {};
    }
    receive((e) => {
      const event = e as WorkerConnectionEvent;
      if (event.type !== 'worker.command') return;
      try {
        stream.write(encodeCommand(event.command.requestId || newRequestId(), event.command));
      } catch (err) {
        sendBack({ type: 'stream.closed', reason: `write failed: ${toErrorInfo(err).message}`, atMs: Date.now() } satisfies WorkerConnectionEvent);
      }
    });
    return () => {
      opts.streams.drop(input.streamId);
      opts.live?.dropProcess(input.workerId, input.streamId);
    };
  });
}
