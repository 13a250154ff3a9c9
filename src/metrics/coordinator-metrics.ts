/**
 * GET /metrics: the fleet in Prometheus text format, from one scrape of the coordinator.
 * Gauges are read from the actors when scraped; task counts and durations are observed as each
 * task ends in its proxy here; what only a worker knows (its sandbox kills) comes in its
 * heartbeats and is summed across workers (a worker that restarts starts its figures again from
 * zero: the last figures of its earlier instance are kept, so the counters only go up).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { TaskOutcome } from '../domain/tasks.js';
import type { SessionView, WorkerView } from '../domain/sessions.js';
import { sessionStates } from '../../machines/domain/sessions.js';

export type KillReason = 'timeout' | 'cancel' | 'limit';
export const KILL_REASONS: readonly KillReason[] = ['timeout', 'cancel', 'limit'];

/** A worker's cumulative figures since its process started, as its heartbeat carries them. */
export interface WorkerFigures {
  instanceId: string;
  sandboxKills: Record<KillReason, number>;
}

export interface FleetSource {
  listSessions(): Promise<SessionView[]>;
  listWorkers(): Promise<WorkerView[]>;
  queuedTasks(): number;
}

/** The status label of an ended task: its status, or the error's code when it ended in an error. */
export const statusLabelOf = (outcome: TaskOutcome): string => (outcome.type === 'result' ? outcome.status : outcome.error.code);

export class CoordinatorMetrics {
  readonly registry = new Registry();
  private readonly tasks: Counter<'tool' | 'status'>;
  private readonly durations: Histogram<'tool'>;
  private readonly checkpointBytes: Counter;
  /** Per worker: the latest instance's figures, plus what earlier instances had counted. */
  private readonly figures = new Map<string, { latest: WorkerFigures; earlier: Record<KillReason, number> }>();

  constructor(source: FleetSource) {
    const registry = this.registry;
    collectDefaultMetrics({ register: registry });
    new Gauge({
      name: 'codegen_sessions',
      help: 'Sessions by state',
      labelNames: ['state'],
      registers: [registry],
      async collect() {
        this.reset();
        // Every state, 0 included: a series that vanishes reads as "no data", not as none.
        const counts = new Map<string, number>(sessionStates.map((s) => [s, 0]));
        for (const s of await source.listSessions()) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'codegen_workers',
      help: 'Workers by state',
      labelNames: ['state'],
      registers: [registry],
      async collect() {
        this.reset();
        const counts = new Map<string, number>([['online', 0], ['offline', 0]]);
        for (const w of await source.listWorkers()) counts.set(w.state, (counts.get(w.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'codegen_task_queue_depth',
      help: 'Tasks accepted and not yet started, across the fleet',
      registers: [registry],
      collect() {
        this.set(source.queuedTasks());
      },
    });
    this.tasks = new Counter({ name: 'codegen_tasks_total', help: 'Tasks ended, by tool and status (an error code when the task ended in an error)', labelNames: ['tool', 'status'], registers: [registry] });
    this.durations = new Histogram({
      name: 'codegen_task_duration_seconds',
      help: 'Task run time on the worker, by tool',
      labelNames: ['tool'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    });
    this.checkpointBytes = new Counter({ name: 'codegen_checkpoint_bytes_total', help: 'Bytes checkpoints added to the checkpoint store', registers: [registry] });
    const figures = this.figures;
    new Counter({
      name: 'codegen_sandbox_kills_total',
      help: 'Sandboxed programs killed, by reason (timeout, cancel, limit), summed over the workers; a program that ran out of time or was cancelled and also hit a limit counts under both',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const reason of KILL_REASONS) {
          let n = 0;
          for (const f of figures.values()) n += f.earlier[reason] + f.latest.sandboxKills[reason];
          this.inc({ reason }, n);
        }
      },
    });
  }

  taskEnded(tool: string, outcome: TaskOutcome): void {
    this.tasks.inc({ tool, status: statusLabelOf(outcome) });
    if (outcome.type === 'result') this.durations.observe({ tool }, Math.max(0, outcome.metadata.durationMs) / 1000);
  }

  checkpointAdded(bytes: number): void {
    if (bytes > 0) this.checkpointBytes.inc(bytes);
  }

  workerFigures(workerId: string, latest: WorkerFigures): void {
    const known = this.figures.get(workerId);
    if (!known) {
      this.figures.set(workerId, { latest, earlier: { timeout: 0, cancel: 0, limit: 0 } });
      return;
    }
    if (known.latest.instanceId !== latest.instanceId) {
      for (const r of KILL_REASONS) known.earlier[r] += known.latest.sandboxKills[r];
    }
    known.latest = latest;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
