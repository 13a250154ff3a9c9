import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { processMachine, type ProcessInput } from '../../machines/process.machine.js';
import { supervisorMachine, type SupervisorInput, type SupervisorParentEvent } from '../../machines/supervisor.machine.js';
import type { RestartType } from '../../machines/supervision.js';
import { fakeProcessRunner, underParent } from '../helpers/machine-fakes.js';

const input: ProcessInput = { name: 'worker-1', args: ['worker'], env: { WORKER_ID: 'worker-1' } };

function startProcess() {
  const run = fakeProcessRunner();
  const t = underParent(processMachine.provide({ actors: { run: run.logic } }), input);
  return { ...t, run, proc: () => run.latest('worker-1'), status: () => t.child.getSnapshot().status, output: () => t.child.getSnapshot().output };
}

function supervisedProcess(restart: RestartType, overrides: Partial<SupervisorInput> = {}) {
  const clock = new SimulatedClock();
  const run = fakeProcessRunner();
  const sup: SupervisorInput = {
    childId: 'worker-1',
    restart,
    intensity: { maxRestarts: 3, windowMs: 60_000 },
    backoff: { initialMs: 100, maxMs: 1_000, factor: 2 },
    shutdownTimeoutMs: 2_000,
    stopEvent: { type: 'process.stop' },
    childInput: input as unknown as Record<string, unknown>,
    seed: 1,
    ...overrides,
  };
  const t = underParent(supervisorMachine.provide({ actors: { child: processMachine.provide({ actors: { run: run.logic } }) } }), sup, { clock });
  return { ...t, clock, run, value: () => t.child.getSnapshot().value as string, output: () => t.child.getSnapshot().output as { end: string; reason: string } | undefined };
}

describe('process machine', () => {
  it('runs its process with its name, arguments and environment', () => {
    const p = startProcess();
    expect(p.run.procs.map((x) => x.input)).toEqual([input]);
    expect(p.child.getSnapshot().value).toBe('running');
  });

  it('ends normally when its process exits 0', () => {
    const p = startProcess();
    p.proc().exit(0);
    expect(p.status()).toBe('done');
    expect(p.output()).toEqual({ exit: 'normal', reason: 'worker-1 exited 0' });
  });

  it.each([
    [3, null, 'worker-1 exited with code 3'],
    [null, 'SIGKILL', 'worker-1 exited with signal SIGKILL'],
  ] as const)('ends abnormally when its process exits with code %s / signal %s', (code, signal, reason) => {
    const p = startProcess();
    p.proc().exit(code, signal);
    expect(p.output()).toEqual({ exit: 'abnormal', reason });
  });

  it('asks its process to drain (terminate) on process.stop and ends when it exits', () => {
    const p = startProcess();
    p.child.send({ type: 'process.stop' });
    expect(p.proc().terminated).toBe(1);
    expect(p.status()).toBe('active');
    p.proc().exit(0);
    expect(p.status()).toBe('done');
    expect(p.proc().killed).toBe(false);
  });

  it('kills its process when the actor is stopped with the process still running', () => {
    const p = startProcess();
    p.parent.stop();
    expect(p.proc().killed).toBe(true);
  });
});

describe('process machine under a supervisor', () => {
  it('is restarted, with the same input, when its process exits non-zero (a crash)', () => {
    const s = supervisedProcess('transient');
    s.run.latest('worker-1').exit(1);
    expect(s.sent<Extract<SupervisorParentEvent, { type: 'supervisor.child_exited' }>>('supervisor.child_exited')).toEqual([
      { type: 'supervisor.child_exited', childId: 'worker-1', abnormal: true, reason: 'exited abnormally: worker-1 exited with code 1', restarting: true },
    ]);
    expect(s.value()).toBe('backoff');
    s.clock.increment(1_000);
    expect(s.run.starts('worker-1').map((p) => p.input)).toEqual([input, input]);
  });

  it('is not restarted when transient and its process exits 0', () => {
    const s = supervisedProcess('transient');
    s.run.latest('worker-1').exit(0);
    expect(s.output()).toMatchObject({ end: 'exited', reason: 'exited normally' });
    s.clock.increment(60_000);
    expect(s.run.procs).toHaveLength(1);
  });

  it('is restarted when permanent even after exit 0', () => {
    const s = supervisedProcess('permanent');
    s.run.latest('worker-1').exit(0);
    s.clock.increment(1_000);
    expect(s.run.procs).toHaveLength(2);
  });

  it('drains on a supervisor stop and ends stopped when its process exits in time', () => {
    const s = supervisedProcess('permanent');
    s.child.send({ type: 'supervisor.stop' });
    const proc = s.run.latest('worker-1');
    expect(proc.terminated).toBe(1);
    proc.exit(0);
    expect(s.output()).toMatchObject({ end: 'stopped' });
    expect(proc.killed).toBe(false);
    s.clock.increment(60_000);
    expect(s.run.procs).toHaveLength(1);
  });

  it('kills a process that does not exit within the shutdown timeout', () => {
    const s = supervisedProcess('permanent', { shutdownTimeoutMs: 2_000 });
    s.child.send({ type: 'supervisor.stop' });
    const proc = s.run.latest('worker-1');
    s.clock.increment(1_999);
    expect(proc.killed).toBe(false);
    s.clock.increment(1);
    expect(proc.killed).toBe(true);
    expect(s.output()).toMatchObject({ end: 'stopped' });
  });
});
