import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor, SimulatedClock } from 'xstate';
import { processMachine } from '../../machines/process.machine.js';
import { supervisorMachine } from '../../machines/supervisor.machine.js';
import { UP_ID, upMachine, type UpEmitted, type UpInput } from '../../machines/up.machine.js';
import { collectEmitted, fakeProcessRunner, type FakeProcess } from '../helpers/machine-fakes.js';

function startUp(overrides: Partial<UpInput> = {}, runner: Parameters<typeof fakeProcessRunner>[0] = {}) {
  const clock = new SimulatedClock();
  const run = fakeProcessRunner(runner);
  const processSupervisor = supervisorMachine.provide({ actors: { child: processMachine.provide({ actors: { run: run.logic } }) } });
  const input: UpInput = {
    coordinator: { name: 'coordinator', args: ['coordinator'], env: { BASE: '1' } },
    workers: [
      { name: 'worker-1', args: ['worker'], env: { WORKER_ID: 'worker-1' } },
      { name: 'worker-2', args: ['worker'], env: { WORKER_ID: 'worker-2' } },
    ],
    intensity: { maxRestarts: 2, windowMs: 60_000 },
    backoff: { initialMs: 100, maxMs: 1_000, factor: 2 },
    shutdownTimeoutMs: 5_000,
    seed: 3,
    ...overrides,
  };
  const actor = createActor(upMachine.provide({ actors: { processSupervisor } }), { systemId: UP_ID, input, clock });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  const emitted = collectEmitted(actor) as UpEmitted[];
  actor.start();
  return {
    actor,
    clock,
    run,
    errors,
    emitted,
    of: <T extends UpEmitted['type']>(type: T) => emitted.filter((e): e is Extract<UpEmitted, { type: T }> => e.type === type),
    value: () => actor.getSnapshot().value as string,
    status: () => actor.getSnapshot().status as string,
    context: () => actor.getSnapshot().context,
    coordinator: (): FakeProcess => run.latest('coordinator'),
    worker: (n: number): FakeProcess => run.latest(`worker-${n}`),
    /** Lets backoffs pass (the longest is maxMs). */
    afterBackoff: () => clock.increment(1_000),
  };
}

type Up = ReturnType<typeof startUp>;
const ready = (u: Up, grpcPort = 50_051, httpPort = 8_080) => u.coordinator().ready(grpcPort, httpPort);

describe('up machine', () => {
  beforeEach(() => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  describe('starting', () => {
    it('starts only the coordinator until it says it is ready', () => {
      const u = startUp();
      expect(u.run.procs.map((p) => p.input.name)).toEqual(['coordinator']);
      expect(u.coordinator().input).toEqual({ name: 'coordinator', args: ['coordinator'], env: { BASE: '1' } });
      expect(u.value()).toBe('starting');
      u.clock.increment(60_000);
      expect(u.run.procs).toHaveLength(1);
    });

    it("ignores a process.ready that is not the coordinator's", () => {
      const u = startUp();
      u.actor.send({ type: 'process.ready', name: 'worker-1', grpcPort: 1 });
      expect(u.value()).toBe('starting');
      expect(u.run.procs).toHaveLength(1);
    });

    it("starts the workers once the coordinator is ready, each given the coordinator's address, and says so", () => {
      const u = startUp();
      ready(u, 50_051, 8_080);
      expect(u.value()).toBe('running');
      expect(u.run.procs.map((p) => p.input)).toEqual([
        { name: 'coordinator', args: ['coordinator'], env: { BASE: '1' } },
        { name: 'worker-1', args: ['worker'], env: { WORKER_ID: 'worker-1', COORDINATOR_ADDR: '127.0.0.1:50051' } },
        { name: 'worker-2', args: ['worker'], env: { WORKER_ID: 'worker-2', COORDINATOR_ADDR: '127.0.0.1:50051' } },
      ]);
      expect(u.of('up.ready')).toEqual([{ type: 'up.ready', grpcPort: 50_051, httpPort: 8_080, workers: 2 }]);
      expect(u.context().running).toEqual(['sup:coordinator', 'sup:worker-1', 'sup:worker-2']);
    });
  });

  describe('restarts', () => {
    it('restarts a coordinator that exits on the ports it bound the first time, and says so', () => {
      const u = startUp();
      ready(u, 50_051, 8_080);
      u.coordinator().exit(1);
      expect(u.of('up.restarting')).toEqual([{ type: 'up.restarting', name: 'coordinator', reason: 'exited abnormally: coordinator exited with code 1' }]);
      u.afterBackoff();
      expect(u.run.starts('coordinator')).toHaveLength(2);
      expect(u.coordinator().input.env).toEqual({ BASE: '1', GRPC_PORT: '50051', HTTP_PORT: '8080' });
      // the workers keep running through it
      expect(u.run.starts('worker-1')).toHaveLength(1);
      expect(u.worker(1).killed).toBe(false);
    });

    it('passes no HTTP_PORT to a restarted coordinator that served no HTTP', () => {
      const u = startUp();
      u.coordinator().ready(50_051);
      u.coordinator().exit(1);
      u.afterBackoff();
      expect(u.coordinator().input.env).toEqual({ BASE: '1', GRPC_PORT: '50051' });
    });

    it('restarts a worker that exits, still pointed at the coordinator', () => {
      const u = startUp();
      ready(u);
      u.worker(2).exit(null, 'SIGKILL');
      u.afterBackoff();
      expect(u.run.starts('worker-2')).toHaveLength(2);
      expect(u.worker(2).input.env.COORDINATOR_ADDR).toBe('127.0.0.1:50051');
    });
  });

  describe('stopping', () => {
    it('stops the workers first and the coordinator only once every worker has exited, then ends', () => {
      const u = startUp();
      ready(u);
      u.actor.send({ type: 'up.stop' });
      expect(u.value()).toBe('stopping');
      expect([u.worker(1).terminated, u.worker(2).terminated, u.coordinator().terminated]).toEqual([1, 1, 0]);
      u.worker(2).exit(0);
      expect(u.coordinator().terminated).toBe(0);
      u.worker(1).exit(0);
      expect(u.value()).toBe('stoppingCoordinator');
      expect(u.coordinator().terminated).toBe(1);
      u.coordinator().exit(0);
      expect(u.status()).toBe('done');
      expect(u.context().escalation).toBe('');
      expect(u.run.alive()).toEqual([]);
      u.clock.increment(60_000);
      expect(u.run.procs).toHaveLength(3);
    });

    it('kills a worker that does not drain within the shutdown timeout, then stops the coordinator', () => {
      const u = startUp({ shutdownTimeoutMs: 5_000 }, { exitOnTerminate: (p) => (p.input.name === 'worker-2' ? undefined : 0) });
      ready(u);
      u.actor.send({ type: 'up.stop' });
      expect(u.coordinator().terminated).toBe(0);
      u.clock.increment(4_999);
      expect(u.worker(2).killed).toBe(false);
      u.clock.increment(1);
      expect(u.worker(2).killed).toBe(true);
      expect(u.coordinator().terminated).toBe(1);
      expect(u.status()).toBe('done');
    });

    it('stops the coordinator at once when stopped before it was ready', () => {
      const u = startUp({}, { exitOnTerminate: () => 0 });
      u.actor.send({ type: 'up.stop' });
      expect(u.coordinator().terminated).toBe(1);
      expect(u.status()).toBe('done');
      expect(u.run.procs).toHaveLength(1);
    });
  });

  describe('escalation', () => {
    it('stops everything (workers first) when the coordinator restarts too often, and records why', () => {
      const u = startUp({ intensity: { maxRestarts: 2, windowMs: 60_000 } }, { exitOnTerminate: () => 0 });
      ready(u);
      for (let i = 0; i < 2; i++) {
        u.coordinator().exit(1);
        u.afterBackoff();
      }
      expect(u.run.starts('coordinator')).toHaveLength(3);
      u.coordinator().exit(1);
      expect(u.of('up.escalated')).toEqual([{ type: 'up.escalated', name: 'coordinator', reason: expect.stringContaining('restarted 2 times') }]);
      expect(u.context().escalation).toMatch(/^coordinator: /);
      expect(u.worker(1).terminated).toBe(1);
      expect(u.worker(2).terminated).toBe(1);
      expect(u.status()).toBe('done');
      u.clock.increment(60_000);
      expect(u.run.starts('coordinator')).toHaveLength(3);
      expect(u.run.alive()).toEqual([]);
    });

    it('stops the other workers and then the coordinator when one worker restarts too often', () => {
      const u = startUp({ intensity: { maxRestarts: 1, windowMs: 60_000 } });
      ready(u);
      u.worker(1).exit(1);
      u.afterBackoff();
      u.worker(1).exit(1);
      expect(u.context().escalation).toMatch(/^worker-1: /);
      expect(u.value()).toBe('stopping');
      expect(u.worker(2).terminated).toBe(1);
      expect(u.coordinator().terminated).toBe(0);
      u.worker(2).exit(0);
      expect(u.coordinator().terminated).toBe(1);
      u.coordinator().exit(0);
      expect(u.status()).toBe('done');
      expect(u.errors).toEqual([]);
    });
  });
});
