/**
 * Bench-only synthetic workers: they speak the real worker protocol (worker_lifecycle.proto)
 * over real gRPC, with the real worker's codecs, and answer every command at once — no
 * workspace, no Python. RegisterWorker (with instance_id and the `sessions` it holds), Heartbeat
 * on the interval the coordinator gives, TaskStream with the hello first; then every
 * CoordinatorMessage is answered in the same tick:
 *
 * - create_session → CommandReply ok, then a SessionReport READY (with a workspace path);
 * - destroy_session → CommandReply ok, then a `gone` SessionReport;
 * - assign_task → the task's result (echo's reply echoes the message; other tools SUCCESS, no reply);
 * - cancel_task, put_metadata → CommandReply ok.
 *
 * Many of them share one process and one grpc-js client (one channel, one HTTP/2 connection):
 * each worker has its own TaskStream call on it, as the protocol needs.
 */
import { metadataInterceptor } from '../src/wire/client.js';
import { WORKER_TOKEN_METADATA } from '../src/wire/metadata.js';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { errorInfo } from '../src/domain/errors.js';
import type { SessionReport } from '../src/domain/sessions.js';
import type { TaskOutcome } from '../src/domain/tasks.js';
import { unary } from '../src/wire/client.js';
import type { CoordinatorMessage, CoordinatorMessage__Output, WorkerLifecycleClient, WorkerMessage, WorkerMessage__Output } from '../src/wire/messages.js';
import { loadProtos } from '../src/wire/protos.js';
import { decodeCommand, encodeReply, encodeReport, encodeReportMessage, encodeTaskUpdateMessage } from '../src/wire/worker-codecs.js';

/**
 * What a synthetic worker answers to one command (decoded by the real worker codec). `incarnation`
 * names the run of the session's actor in its reports, as a real worker's `<instance>#<restarts>`.
 */
export function answerCommand(workerId: string, incarnation: string, held: Map<string, SessionReport>, msg: CoordinatorMessage__Output, atMs: number): WorkerMessage[] {
  const command = decodeCommand(msg, atMs);
  switch (command.type) {
    case 'command.create': {
      const d = command.description;
      const report: SessionReport = { description: d, state: 'READY', workspacePath: `/synthetic/${workerId}/${d.workspaceId || d.sessionId}`, failureReason: '', gone: false, incarnation: `${workerId}#0` };
      held.set(d.sessionId, report);
      return [encodeReply({ requestId: command.requestId, sessionId: d.sessionId, ok: true }), encodeReportMessage(report)];
    }
    case 'command.destroy': {
      const last = held.get(command.sessionId);
      held.delete(command.sessionId);
      const out = [encodeReply({ requestId: command.requestId, sessionId: command.sessionId, ok: true })];
      if (last) out.push(encodeReportMessage({ ...last, state: 'TERMINATED', gone: true }));
      return out;
    }
    case 'command.task': {
      const spec = command.spec;
      const outcome: TaskOutcome = {
        type: 'result',
        status: 'SUCCESS',
        ...(spec.call.tool === 'echo' ? { reply: { tool: 'echo' as const, output: { message: spec.call.input.message } } } : {}),
        artifacts: [],
        metadata: { workerId, startedAtMs: atMs, finishedAtMs: atMs, durationMs: 0, queuedMs: 0 },
      };
      return [encodeTaskUpdateMessage(spec.sessionId, spec.taskId, { type: 'outcome', outcome })];
    }
    case 'command.cancel':
      return [encodeReply({ requestId: command.requestId, sessionId: command.sessionId, ok: true })];
    case 'command.put_metadata': {
      const last = held.get(command.sessionId);
      if (!last) return [encodeReply({ requestId: command.requestId, sessionId: command.sessionId, ok: false, error: { code: 'SESSION_NOT_FOUND', message: `no session ${command.sessionId}`, details: '', retriable: false } })];
      const metadata = command.merge ? { ...last.description.metadata, ...command.metadata } : { ...command.metadata };
      const report: SessionReport = { ...last, description: { ...last.description, metadata, metadataVersion: last.description.metadataVersion + 1 } };
      held.set(command.sessionId, report);
      // Like the real worker: the report, then the reply once "saved".
      return [encodeReportMessage(report), encodeReply({ requestId: command.requestId, sessionId: command.sessionId, ok: true })];
    }
  }
}

const commandFields = ['create_session', 'destroy_session', 'assign_task', 'cancel_task', 'put_metadata'] as const;
const bodyFields = ['hello', 'reply', 'task_update', 'session_report'] as const;

/**
 * A message as the coordinator built it, in the shape grpc-js hands the other end with the
 * contract's loader options (`oneofs: true` names the set field). For in-process streams, where
 * no protobuf encoding happens: the decoders read the same fields either way.
 */
export function asReceivedCommand(msg: CoordinatorMessage): CoordinatorMessage__Output {
  const command = commandFields.find((f) => msg[f] !== undefined && msg[f] !== null);
  return { ...msg, command } as unknown as CoordinatorMessage__Output;
}

export function asReceivedWorkerMessage(msg: WorkerMessage): WorkerMessage__Output {
  const body = bodyFields.find((f) => msg[f] !== undefined && msg[f] !== null);
  return { ...msg, body } as unknown as WorkerMessage__Output;
}

/** One grpc-js WorkerLifecycle client (its own channel and connection) for many synthetic workers. */
export function workerLifecycleClient(address: string, workerToken: string): WorkerLifecycleClient {
  const { services } = loadProtos();
  // Its own subchannel pool: the workers' HTTP/2 connection is not the API client's.
  return new services.WorkerLifecycle(address, grpc.credentials.createInsecure(), {
    interceptors: [metadataInterceptor({ [WORKER_TOKEN_METADATA]: workerToken })],
    'grpc.use_local_subchannel_pool': 1,
    'grpc.max_send_message_length': -1,
    'grpc.max_receive_message_length': -1,
  });
}

export interface SyntheticWorkerOptions {
  workerId: string;
  client: WorkerLifecycleClient;
  maxSessions: number;
  /** Sessions it holds at start: listed in its registration. */
  sessions?: SessionReport[];
  /** A new one per start, as a real worker process has. */
  instanceId?: string;
}

type TaskStreamCall = grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output>;

export class SyntheticWorker {
  readonly workerId: string;
  readonly held = new Map<string, SessionReport>();
  readonly counts = { commands: 0, creates: 0, destroys: 0, tasks: 0, heartbeatFailures: 0 };
  registrationId = '';
  heartbeatIntervalMs = 0;
  private call: TaskStreamCall | undefined;
  private firstBeat: NodeJS.Timeout | undefined;
  private beats: NodeJS.Timeout | undefined;
  private readonly instanceId: string;

  constructor(private readonly opts: SyntheticWorkerOptions) {
    this.workerId = opts.workerId;
    this.instanceId = opts.instanceId ?? `inst-${randomBytes(8).toString('hex')}`;
    for (const r of opts.sessions ?? []) this.held.set(r.description.sessionId, r);
  }

  /** RegisterWorker with every session held; returns when the coordinator answered. */
  async register(): Promise<void> {
    const res = await unary(
      this.opts.client,
      'RegisterWorker',
      {
        worker_id: this.workerId,
        instance_id: this.instanceId,
        max_sessions: this.opts.maxSessions,
        hostname: 'synthetic',
        version: 'bench',
        isolation: 'none',
        capabilities: ['echo'],
        sessions: [...this.held.values()].map(encodeReport),
      },
      { deadlineMs: 60_000 },
    );
    this.registrationId = String(res.registration_id);
    this.heartbeatIntervalMs = Number(res.heartbeat_interval_ms) || 5_000;
  }

  /** Opens the task stream (hello first) and starts heartbeating; the first beat at a random point of the interval, as a fleet's would be. */
  openStream(): void {
    const call = this.opts.client.TaskStream(new grpc.Metadata()) as TaskStreamCall;
    this.call = call;
    call.on('data', (msg: CoordinatorMessage__Output) => {
      this.counts.commands++;
      if (msg.command === 'create_session') this.counts.creates++;
      else if (msg.command === 'destroy_session') this.counts.destroys++;
      else if (msg.command === 'assign_task') this.counts.tasks++;
      let answers: WorkerMessage[];
      try {
        answers = answerCommand(this.workerId, `${this.instanceId}#0`, this.held, msg, Date.now());
      } catch (err) {
        console.error(`synthetic worker ${this.workerId}: could not answer ${msg.command}: ${String(err)}`);
        return;
      }
      for (const a of answers) call.write(a);
    });
    // A cut stream ends with CANCELLED; the coordinator's end is what the bench measures.
    call.on('error', () => {});
    call.on('end', () => {});
    call.write({ hello: { worker_id: this.workerId, registration_id: this.registrationId } });
    const beat = () => {
      unary(this.opts.client, 'Heartbeat', { worker_id: this.workerId, registration_id: this.registrationId, active_sessions: this.held.size }, { deadlineMs: Math.max(1_000, this.heartbeatIntervalMs) }).catch(() => {
        this.counts.heartbeatFailures++;
      });
    };
    this.firstBeat = setTimeout(() => {
      beat();
      this.beats = setInterval(beat, this.heartbeatIntervalMs);
    }, Math.floor(Math.random() * this.heartbeatIntervalMs));
  }

  async start(): Promise<void> {
    await this.register();
    this.openStream();
  }

  private stopBeats(): void {
    clearTimeout(this.firstBeat);
    clearInterval(this.beats);
    this.firstBeat = this.beats = undefined;
  }

  /** As a crash or a partition: the stream is cancelled and heartbeats stop, without a word to the coordinator. */
  cut(): void {
    this.stopBeats();
    this.call?.cancel();
    this.call = undefined;
  }

  /** A clean stop: deregister, then end the stream. */
  async stop(): Promise<void> {
    this.stopBeats();
    if (this.call) {
      await unary(this.opts.client, 'DeregisterWorker', { worker_id: this.workerId, registration_id: this.registrationId, reason: 'bench done' }, { deadlineMs: 5_000 }).catch(() => {});
      this.call.end();
      this.call = undefined;
    }
  }
}

/** A session a worker holds, READY, for registration lists. */
export function heldSession(workerId: string, sessionId: string, atMs: number, incarnation = ''): SessionReport {
  return {
    description: {
      sessionId,
      workspaceId: sessionId,
      userId: '', tenant: '',
      config: { env_vars: {}, allow_network: false, language: 'python' },
      metadata: {},
      metadataVersion: 0,
      createdAtMs: atMs,
      lastActivityMs: atMs,
      restartedAtMs: 0,
      survivalNote: '',
      idleTimeoutMs: 0,
    },
    state: 'READY',
    workspacePath: `/synthetic/${workerId}/${sessionId}`,
    failureReason: '',
    gone: false,
    incarnation: `${workerId}#0`,
  };
}
