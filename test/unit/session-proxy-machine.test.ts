import { describe, expect, it, vi } from 'vitest';
import { fromCallback, type AnyActorRef } from 'xstate';
import {
  isSettled,
  sessionProxyIdOf,
  sessionViewOf,
  type SessionProxyContext,
  type SessionProxyEmitted,
  type SessionProxyInput,
  type SessionProxyOutput,
  type SessionProxySnapshot,
} from '../../machines/coordinator/session-proxy.machine.js';
import { TASK_CANCEL_GRACE_MS, taskProxyIdOf, type TaskProxyEmitted } from '../../machines/coordinator/task-proxy.machine.js';
import type { ErrorCode } from '../../machines/domain/errors.js';
import type { SessionReport } from '../../machines/domain/sessions.js';
import { recordOf, type TaskOutcome } from '../../machines/domain/tasks.js';
import { coordinatorTree, creatingReport, errorOf, hostWithWorker, proxyInput, resultOutcome, sessionDescription, sessionReport, simulatedClock, T0, taskSpec } from '../helpers/coordinator-fakes.js';

type Accepted = Extract<SessionProxyEmitted, { type: 'task.accepted' }>;
type Rejected = Extract<SessionProxyEmitted, { type: 'task.rejected' }>;
type MetadataAnswer = Extract<SessionProxyEmitted, { type: 'metadata.answered' }>;
type DestroyAnswer = Extract<SessionProxyEmitted, { type: 'destroy.answered' }>;

/** A host with an online worker w1 and session proxies next to it (they share one system). */
function startProxies(opts: { crashingTasks?: boolean } = {}) {
  const clock = simulatedClock();
  const tree = coordinatorTree(clock);
  const sessionProxy = opts.crashingTasks
    ? tree.sessionProxy.provide({
        actors: {
          taskProxy: fromCallback(({ receive }) =>
            receive((e) => {
              if (e.type === 'task.cancel') throw new Error('task proxy bug');
            }),
          ) as unknown as typeof tree.taskProxy,
        },
      })
    : tree.sessionProxy;
  const host = hostWithWorker({ connection: tree.connection, sessionProxy }, clock);
  let requests = 0;
  const rid = (what: string) => `${what}-${++requests}`;
  const worker = () => tree.streams.of('w1');

  /** The proxy of `sessionId`, held by reference: a final actor leaves the system's registry. */
  function proxyOf(sessionId: string) {
    const id = sessionProxyIdOf(sessionId);
    const held = host.must(id);
    const ref = (): AnyActorRef => held;
    const snap = () => ref().getSnapshot() as SessionProxySnapshot;
    return {
      id,
      ref,
      snap,
      ctx: (): SessionProxyContext => snap().context,
      view: () => sessionViewOf(snap()),
      value: () => snap().value as unknown,
      output: () => snap().output as SessionProxyOutput,
      submit(taskId: string, sequence = 0, followerId = 'client-1'): Accepted | Rejected {
        return host.ask(ref(), { type: 'task.submit', requestId: rid('submit'), spec: taskSpec(taskId, sessionId, sequence), followerId, atMs: clock.now() }, ['task.accepted', 'task.rejected']);
      },
      rejected(taskId: string, sequence = 0): Rejected {
        const a = this.submit(taskId, sequence);
        if (a.type !== 'task.rejected') throw new Error(`task ${taskId} was accepted`);
        return a;
      },
      cancel(taskId: string) {
        return host.ask<Extract<SessionProxyEmitted, { type: 'cancel.answered' }>>(ref(), { type: 'task.cancel', requestId: rid('cancel'), taskId, reason: '', atMs: clock.now() }, 'cancel.answered');
      },
      /** Sends metadata.put; returns its request id and, later, its answer (none until the worker replies, or a refusal at once). */
      putMetadata(metadata: Record<string, string>, merge: boolean): { requestId: string; answer: () => MetadataAnswer | undefined } {
        const requestId = rid('meta');
        ref().send({ type: 'metadata.put', requestId, metadata, merge, atMs: clock.now() });
        return { requestId, answer: () => host.emitted<MetadataAnswer>('metadata.answered', id).find((a) => a.requestId === requestId) };
      },
      /** Sends session.destroy; returns the destroy.answered it emitted at once, if any. */
      destroy(force = false): DestroyAnswer | undefined {
        const before = host.emitted('destroy.answered', id).length;
        ref().send({ type: 'session.destroy', requestId: rid('destroy'), force, atMs: clock.now() });
        return host.emitted<DestroyAnswer>('destroy.answered', id).slice(before)[0];
      },
      destroyAnswers: () => host.emitted<DestroyAnswer>('destroy.answered', id),
      lose(reason = 'heartbeats stopped') {
        ref().send({ type: 'worker.lost', reason, atMs: clock.now() });
      },
      online() {
        ref().send({ type: 'worker.online', atMs: clock.now() });
      },
      /** What the proxy told its parent (the bucket, here the host). */
      toParent: (type?: string) => host.toHost(type, id),
    };
  }

  /** Spawns the proxy of a session next to the worker's connection. */
  function spawn(input: Partial<SessionProxyInput> = {}) {
    const full = proxyInput(input);
    host.spawn('sessionProxy', sessionProxyIdOf(full.report.description.sessionId), full);
    return proxyOf(full.report.description.sessionId);
  }

  const outcomesOf = (taskId: string): TaskOutcome[] =>
    host
      .emitted<TaskProxyEmitted>('task.update', taskProxyIdOf(taskId))
      .flatMap((e) => (e.update.type === 'outcome' ? [e.update.outcome] : []));

  return { clock, tree, host, worker, spawn, proxyOf, outcomesOf, commands: tree.streams.commands, commandsOf: tree.streams.commandsOf };
}

const codeOf = (a: Accepted | Rejected): ErrorCode | 'accepted' => (a.type === 'task.accepted' ? 'accepted' : a.error.code);

describe('session proxy: creating a session', () => {
  function creating() {
    const t = startProxies();
    const description = sessionDescription('s1');
    const p = t.spawn({ mode: 'create', report: creatingReport(description) });
    return { ...t, p, description };
  }

  it('asks its worker to create the session and becomes active when the worker reports it READY', () => {
    const t = creating();
    expect(t.p.value()).toBe('creating');
    expect(t.commands('w1')).toEqual([{ kind: 'create_session', description: t.description, requestId: 'create:s1' }]);
    expect(isSettled(t.p.snap())).toBe(false);
    t.worker().report(sessionReport('s1', { state: 'INITIALIZING', workspacePath: '/ws/s1' }));
    expect(t.p.value()).toBe('creating');
    t.worker().report(sessionReport('s1', { state: 'READY' }));
    expect(t.p.value()).toBe('active');
    expect(isSettled(t.p.snap())).toBe(true);
    expect(t.p.view()).toMatchObject({ sessionId: 's1', workerId: 'w1', state: 'READY', workspacePath: '/ws/s1', unreachableSinceMs: 0 });
  });

  it('answers a destroy made while the session is being made, also when the worker does not finish it in time', () => {
    const t = creating();
    t.p.destroy(true);
    expect(t.p.view().state).toBe('DRAINING');
    t.clock.increment(60_000);
    expect(t.p.destroyAnswers()).toEqual([expect.objectContaining({ type: 'destroy.answered', requestId: expect.stringMatching(/^destroy-/), error: expect.objectContaining({ code: 'INTERNAL' }) })]);
  });

  it('is refused with the code the worker refused the command with, not INTERNAL', () => {
    const t = creating();
    t.worker().reply('s1', false, errorOf('CAPACITY_EXHAUSTED', 'worker full'));
    expect(t.p.snap().status).toBe('done');
    expect(t.p.output()).toMatchObject({ sessionId: 's1', end: 'refused', error: { code: 'CAPACITY_EXHAUSTED', message: 'worker full' } });
  });

  it('is refused INTERNAL with the reason when the worker reports FAILED, and asks the worker to destroy what it made', () => {
    const t = creating();
    t.worker().report(sessionReport('s1', { state: 'FAILED', failureReason: 'venv broken' }));
    expect(t.p.output()).toMatchObject({ end: 'refused', error: { code: 'INTERNAL', message: expect.stringContaining('venv broken') } });
    expect(t.commandsOf('destroy_session', 'w1')).toEqual([{ kind: 'destroy_session', sessionId: 's1', requestId: 'destroy:s1' }]);
  });

  it('is refused INTERNAL when the worker drops the session while making it', () => {
    const t = creating();
    t.worker().report(sessionReport('s1', { state: 'TERMINATED', gone: true, failureReason: 'disk full' }));
    expect(t.p.output()).toMatchObject({ end: 'refused', error: { code: 'INTERNAL', message: expect.stringContaining('disk full') } });
  });

  it('is refused UNAVAILABLE when the worker does not make it ready within createTimeout, and the worker is told to drop it', () => {
    const t = creating();
    t.clock.increment(30_000 - 1);
    expect(t.p.value()).toBe('creating');
    t.clock.increment(1);
    expect(t.p.output()).toMatchObject({ end: 'refused', error: { code: 'UNAVAILABLE', retriable: true, message: expect.stringContaining('30000 ms') } });
    expect(t.commandsOf('destroy_session', 'w1')).toEqual([{ kind: 'destroy_session', sessionId: 's1', requestId: 'destroy:s1' }]);
  });

  it('is refused UNAVAILABLE when its worker is lost before the session is ready', () => {
    const t = creating();
    t.p.lose('stream closed');
    expect(t.p.output()).toMatchObject({ end: 'refused', error: { code: 'UNAVAILABLE', message: expect.stringContaining('stream closed') } });
  });

  it('is refused UNAVAILABLE at once when its worker registers again without it (the create never reached the worker)', () => {
    const t = creating();
    t.p.ref().send({ type: 'session.unreported', reason: 'not listed', atMs: t.clock.now() });
    expect(t.p.output()).toMatchObject({ end: 'refused', error: { code: 'UNAVAILABLE', message: expect.stringContaining('restarted before session s1 was ready') } });
  });

  it('refuses tasks as UNAVAILABLE while the session is being made, and metadata changes as FAILED_PRECONDITION', () => {
    const t = creating();
    const answer = t.p.rejected('t1');
    expect(answer.error).toMatchObject({ code: 'UNAVAILABLE', retriable: true });
    expect(t.p.putMetadata({ a: '1' }, true).answer()?.error).toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect(t.commandsOf('assign_task', 'w1')).toEqual([]);
    expect(t.commandsOf('put_metadata', 'w1')).toEqual([]);
  });

  it('mirrors, and never creates again, a session its worker lists while it is still initializing', () => {
    const t = startProxies();
    const p = t.spawn({ mode: 'mirror', report: sessionReport('s1', { state: 'INITIALIZING', workspacePath: '' }) });
    expect(t.commandsOf('create_session', 'w1')).toEqual([]);
    expect(p.value()).toBe('active');
  });
});

describe('session proxy: accepting tasks', () => {
  it('accepts a task: sends the whole spec to the worker, follows it with a task proxy, and counts it live', () => {
    const t = startProxies();
    const p = t.spawn();
    const answer = p.submit('t1', 1);
    expect(answer).toEqual({ type: 'task.accepted', requestId: expect.any(String), taskId: 't1', duplicate: false });
    expect(t.commandsOf('assign_task', 'w1')).toEqual([{ kind: 'assign_task', spec: taskSpec('t1', 's1', 1) }]);
    expect(t.host.get(taskProxyIdOf('t1'))).toBeDefined();
    expect(p.view()).toMatchObject({ activeTasks: 1, recentTasks: ['t1'] });
    // The payload goes to the worker, not into the proxy's context.
    expect(JSON.stringify(p.ctx())).not.toContain('"message":"t1"');
  });

  it('answers a repeat by task id or by sequence with the first task, marked duplicate, and sends nothing again', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1', 5);
    expect(p.submit('t1', 0)).toMatchObject({ type: 'task.accepted', taskId: 't1', duplicate: true });
    expect(p.submit('t-other-id', 5)).toMatchObject({ type: 'task.accepted', taskId: 't1', duplicate: true });
    expect(t.commandsOf('assign_task', 'w1')).toHaveLength(1);
    t.worker().finish('t1', resultOutcome());
    expect(p.submit('t1', 0)).toMatchObject({ type: 'task.accepted', taskId: 't1', duplicate: true });
  });

  it('refuses INVALID_ARGUMENT a task id that a live task of another session holds', () => {
    const t = startProxies();
    const a = t.spawn({ report: sessionReport('s1') });
    const b = t.spawn({ report: sessionReport('s2') });
    a.submit('t1');
    expect(b.rejected('t1').error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('t1') });
    expect(t.commandsOf('assign_task', 'w1').map((c) => c.spec.sessionId)).toEqual(['s1']);
  });

  it('refuses INVALID_ARGUMENT a task id the result cache holds for another session, and accepts it for its own', () => {
    const t = startProxies();
    const p = t.spawn();
    t.tree.remembered.set('t9', 's-other');
    t.tree.remembered.set('t8', 's1');
    expect(p.rejected('t9').error.code).toBe('INVALID_ARGUMENT');
    expect(codeOf(p.submit('t8'))).toBe('accepted');
  });

  it('refuses UNAVAILABLE (retriable) while its worker is unreachable, saying since when', () => {
    const t = startProxies();
    const p = t.spawn();
    p.lose();
    const { error } = p.rejected('t1');
    expect(error).toMatchObject({ code: 'UNAVAILABLE', retriable: true, message: expect.stringContaining(new Date(T0).toISOString()) });
    expect(error.message).toContain('unreachable');
  });

  it('refuses FAILED_PRECONDITION when the session is FAILED, with the reason', () => {
    const t = startProxies();
    const p = t.spawn({ report: sessionReport('s1', { state: 'FAILED', failureReason: 'the interpreter died' }) });
    expect(p.rejected('t1').error).toMatchObject({ code: 'FAILED_PRECONDITION', retriable: false, message: expect.stringContaining('the interpreter died') });
  });

  it('refuses UNAVAILABLE once the coordinator drains', () => {
    const t = startProxies();
    const p = t.spawn();
    p.ref().send({ type: 'coordinator.draining' });
    expect(p.rejected('t1').error).toMatchObject({ code: 'UNAVAILABLE', message: expect.stringContaining('shutting down') });
  });

  it('refuses UNAVAILABLE when no connection to its worker exists', () => {
    const t = startProxies();
    const p = t.spawn({ workerId: 'w-without-connection' });
    expect(p.rejected('t1').error).toMatchObject({ code: 'UNAVAILABLE', message: expect.stringContaining('not connected') });
  });

  it('records how each task ended and frees it from the live count', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    p.submit('t2');
    t.worker().finish('t1', resultOutcome('FAILURE'));
    expect(recordOf(p.ctx().book, 't1')).toMatchObject({ state: 'failed', outcome: { type: 'result', status: 'FAILURE' } });
    expect(p.view().activeTasks).toBe(1);
    expect(t.host.get(taskProxyIdOf('t1'))).toBeUndefined();
  });

  it('cancels a live task through its proxy and says so; a task it does not know is not cancelled', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    expect(p.cancel('t1')).toMatchObject({ cancelled: true, state: 'queued' });
    expect(t.commandsOf('cancel_task', 'w1')).toEqual([{ kind: 'cancel_task', taskId: 't1', sessionId: 's1', reason: 'cancelled by the client' }]);
    expect(p.cancel('nope')).toMatchObject({ cancelled: false });
    t.clock.increment(TASK_CANCEL_GRACE_MS);
    expect(p.cancel('t1')).toMatchObject({ cancelled: false, state: 'cancelled' });
  });

  it('ends a task whose proxy crashed INTERNAL, once, and keeps working', () => {
    const t = startProxies({ crashingTasks: true });
    const p = t.spawn();
    p.submit('t1');
    p.cancel('t1');
    expect(recordOf(p.ctx().book, 't1')).toMatchObject({ state: 'errored', outcome: { type: 'error', error: { code: 'INTERNAL' } } });
    expect(p.snap().status).toBe('active');
    expect(t.host.errors).toEqual([]);
    expect(codeOf(p.submit('t2'))).toBe('accepted');
  });
});

describe('session proxy: its worker away and back', () => {
  it('ends every live task WORKER_LOST when the worker is lost, and remembers since when it is unreachable', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    p.submit('t2');
    t.worker().finish('t2', resultOutcome());
    t.clock.increment(1_000);
    p.lose('heartbeats stopped');
    expect(t.outcomesOf('t1')).toEqual([{ type: 'error', error: expect.objectContaining({ code: 'WORKER_LOST', retriable: true, message: expect.stringContaining('heartbeats stopped') }) }]);
    expect(t.outcomesOf('t2')).toEqual([resultOutcome()]);
    expect(p.view()).toMatchObject({ activeTasks: 0, unreachableSinceMs: T0 + 1_000, state: 'READY' });
    expect(p.snap().status).toBe('active');
  });

  it('keeps the first loss time through later losses, and clears it when the worker is online again', () => {
    const t = startProxies();
    const p = t.spawn();
    p.lose();
    t.clock.increment(5_000);
    p.lose();
    expect(p.ctx().unreachableSinceMs).toBe(T0);
    p.online();
    expect(p.ctx()).toMatchObject({ reachable: true, unreachableSinceMs: 0 });
    expect(codeOf(p.submit('t1'))).toBe('accepted');
  });

  it('shows a BUSY session as READY while its worker is unreachable, and BUSY while it runs a task', () => {
    const t = startProxies();
    const p = t.spawn({ report: sessionReport('s1', { state: 'BUSY' }) });
    // BUSY with no task the coordinator follows is a stale report (the result went out before READY).
    expect(p.view().state).toBe('READY');
    p.submit('t1');
    expect(p.view().state).toBe('BUSY');
    p.lose();
    expect(p.view().state).toBe('READY');
  });

  it('shows the DRAINING of a worker shutdown as READY while the worker is away: the session comes back READY', () => {
    const t = startProxies();
    const p = t.spawn();
    t.worker().report(sessionReport('s1', { state: 'DRAINING' }));
    expect(p.view().state).toBe('DRAINING');
    p.lose();
    expect(p.view().state).toBe('READY');
  });

  it('ends the tasks sent to an earlier run of the session actor when a report comes from a new run, and only those', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    t.worker().report(sessionReport('s1', { state: 'BUSY' }));
    expect(t.outcomesOf('t1')).toEqual([]);
    // The actor crashed and was restarted: a new run says INITIALIZING, then READY.
    t.worker().report(sessionReport('s1', { state: 'INITIALIZING', incarnation: 'inst-1#1' }));
    expect(t.outcomesOf('t1')).toEqual([{ type: 'error', error: expect.objectContaining({ code: 'WORKER_LOST', message: expect.stringContaining('restarted') }) }]);
    // A task sent to the new run lives on through its later reports, even one with a newer restart time.
    p.submit('t2');
    t.worker().report(sessionReport('s1', { state: 'READY', incarnation: 'inst-1#1', description: { restartedAtMs: T0 + 10, survivalNote: 'files kept' } }));
    expect(t.outcomesOf('t2')).toEqual([]);
    expect(p.view()).toMatchObject({ restartedAtMs: T0 + 10, survivalNote: 'files kept', state: 'READY', activeTasks: 1 });
  });

  it('ends every live task when the worker reports the session FAILED (it gave up on it)', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    t.worker().report(sessionReport('s1', { state: 'FAILED', failureReason: 'the session actor kept crashing' }));
    expect(t.outcomesOf('t1')).toEqual([{ type: 'error', error: expect.objectContaining({ code: 'WORKER_LOST', message: expect.stringContaining('kept crashing') }) }]);
  });

  it('goes FAILED with the reason when its worker registers without it, ending its live tasks', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    p.ref().send({ type: 'session.unreported', reason: 'its workspace is gone', atMs: t.clock.now() });
    expect(p.view()).toMatchObject({ state: 'FAILED', failureReason: 'its workspace is gone', activeTasks: 0 });
    expect(t.outcomesOf('t1')[0]).toMatchObject({ type: 'error', error: { code: 'WORKER_LOST' } });
    expect(p.rejected('t2').error.code).toBe('FAILED_PRECONDITION');
  });

  it('ends (gone, not FAILED) when its worker was destroying it and registers without it: the destroy finished, its last report was lost', () => {
    const t = startProxies();
    const p = t.spawn();
    t.worker().report(sessionReport('s1', { state: 'DRAINING', removing: true }));
    p.ref().send({ type: 'session.unreported', reason: 'not listed', atMs: t.clock.now() });
    expect(p.ref().getSnapshot().status).toBe('done');
  });

  it('mirrors its worker\'s reports', () => {
    const t = startProxies();
    const p = t.spawn();
    t.worker().report(sessionReport('s1', { state: 'IDLE', description: { lastActivityMs: T0 + 99 } }));
    expect(p.view()).toMatchObject({ state: 'IDLE', lastActivityMs: T0 + 99 });
  });
});

describe('session proxy: metadata', () => {
  const start = () => {
    const t = startProxies();
    const p = t.spawn({ report: sessionReport('s1', { description: { metadata: { x: '0' }, metadataVersion: 3 } }) });
    return { ...t, p };
  };

  it('sends the change to the worker and answers only when the worker replies, with the metadata it reported', () => {
    const t = start();
    const merged = t.p.putMetadata({ a: '1' }, true);
    const replaced = t.p.putMetadata({ b: '2' }, false);
    expect(t.commandsOf('put_metadata', 'w1')).toEqual([
      { kind: 'put_metadata', requestId: merged.requestId, sessionId: 's1', metadata: { a: '1' }, merge: true },
      { kind: 'put_metadata', requestId: replaced.requestId, sessionId: 's1', metadata: { b: '2' }, merge: false },
    ]);
    // Nothing is confirmed, or shown, before the worker saved it.
    expect(merged.answer()).toBeUndefined();
    expect(t.p.view().metadata).toEqual({ x: '0' });
    t.worker().report(sessionReport('s1', { description: { metadata: { x: '0', a: '1' }, metadataVersion: 4 } }));
    t.worker().reply('s1', true, undefined, merged.requestId);
    expect(merged.answer()).toMatchObject({ metadata: { x: '0', a: '1' }, error: null });
    expect(replaced.answer()).toBeUndefined();
    t.worker().report(sessionReport('s1', { description: { metadata: { b: '2' }, metadataVersion: 5 } }));
    t.worker().reply('s1', true, undefined, replaced.requestId);
    expect(replaced.answer()).toMatchObject({ metadata: { b: '2' }, error: null });
    expect(t.p.view().metadata).toEqual({ b: '2' });
    expect(t.p.ctx().metadataAsks).toEqual([]);
  });

  it("answers with the worker's error when it refuses the change", () => {
    const t = start();
    const put = t.p.putMetadata({ a: '1' }, true);
    t.worker().reply('s1', false, errorOf('UNAVAILABLE', 'session s1 is restarting'), put.requestId);
    expect(put.answer()).toMatchObject({ metadata: {}, error: { code: 'UNAVAILABLE', message: 'session s1 is restarting' } });
  });

  it('fails a change still waiting when its worker is lost (UNAVAILABLE) and when the session ends (FAILED_PRECONDITION)', () => {
    const t = start();
    const lost = t.p.putMetadata({ a: '1' }, true);
    t.p.lose();
    expect(lost.answer()).toMatchObject({ error: { code: 'UNAVAILABLE' } });
    expect(lost.answer()!.error!.message).toContain('may or may not have been saved');
    const u = start();
    const ended = u.p.putMetadata({ a: '1' }, true);
    u.worker().report(sessionReport('s1', { state: 'TERMINATED', gone: true }));
    expect(ended.answer()).toMatchObject({ error: { code: 'FAILED_PRECONDITION' } });
  });

  it("takes the worker's reported metadata, whatever its version", () => {
    const t = start();
    t.worker().report(sessionReport('s1', { state: 'IDLE', description: { metadata: { z: '9' }, metadataVersion: 6 } }));
    expect(t.p.view()).toMatchObject({ state: 'IDLE', metadata: { z: '9' } });
    t.worker().report(sessionReport('s1', { description: { metadata: { y: '1' }, metadataVersion: 2 } }));
    expect(t.p.view().metadata).toEqual({ y: '1' });
  });

  it('refuses UNAVAILABLE while its worker is unreachable, changing nothing', () => {
    const t = start();
    t.p.lose();
    expect(t.p.putMetadata({ a: '1' }, true).answer()).toMatchObject({ metadata: {}, error: { code: 'UNAVAILABLE' } });
    expect(t.commandsOf('put_metadata', 'w1')).toEqual([]);
    expect(t.p.view().metadata).toEqual({ x: '0' });
  });
});

describe('session proxy: destroying', () => {
  it('refuses FAILED_PRECONDITION while tasks are live and force is not given, naming BUSY and force', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    const answer = p.destroy(false);
    expect(answer?.error).toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/BUSY.*t1.*force/) });
    expect(p.value()).toBe('active');
    expect(t.commandsOf('destroy_session', 'w1')).toEqual([]);
  });

  it('with force: tells the worker, shows DRAINING, and ends after every task has its outcome', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    let outcomesWhenDone = -1;
    p.ref().subscribe((s) => {
      if (s.status === 'done' && outcomesWhenDone < 0) outcomesWhenDone = t.outcomesOf('t1').length;
    });
    expect(p.destroy(true)).toBeUndefined();
    expect(t.commandsOf('destroy_session', 'w1')).toEqual([{ kind: 'destroy_session', sessionId: 's1', requestId: 'destroy:s1' }]);
    expect(p.view().state).toBe('DRAINING');
    expect(p.rejected('t2').error.code).toBe('FAILED_PRECONDITION');
    // The worker cancels the task, then says the session is gone (in that order, on one stream).
    t.worker().finish('t1', resultOutcome('CANCELLED'));
    expect(p.snap().status).toBe('active');
    t.worker().report(sessionReport('s1', { state: 'TERMINATED', gone: true }));
    expect(p.snap().status).toBe('done');
    expect(outcomesWhenDone).toBe(1);
    expect(t.outcomesOf('t1')).toMatchObject([{ type: 'result', status: 'CANCELLED' }]);
    expect(p.output()).toMatchObject({ sessionId: 's1', end: 'terminated', error: null });
    expect(p.view().state).toBe('TERMINATED');
  });

  it('ends a task still live when the worker says the session is gone: it can send nothing more about it', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    p.destroy(true);
    t.worker().reply('s1', true);
    expect(p.snap().status).toBe('done');
    expect(t.outcomesOf('t1')).toMatchObject([{ type: 'error', error: { code: 'WORKER_LOST' } }]);
    // A late word from the worker changes nothing: one outcome only.
    t.worker().finish('t1', resultOutcome('CANCELLED'));
    expect(t.outcomesOf('t1')).toHaveLength(1);
  });

  it('ends when the worker reports the session gone, even before its reply', () => {
    const t = startProxies();
    const p = t.spawn();
    p.destroy();
    t.worker().report(sessionReport('s1', { state: 'TERMINATED', gone: true }));
    expect(p.output()).toMatchObject({ end: 'terminated' });
  });

  it('answers INTERNAL and goes back to active when the worker does not finish within destroyTimeout', () => {
    const t = startProxies();
    const p = t.spawn();
    p.destroy();
    t.clock.increment(10_000 - 1);
    expect(p.destroyAnswers()).toEqual([]);
    t.clock.increment(1);
    expect(p.destroyAnswers()).toEqual([{ type: 'destroy.answered', requestId: expect.any(String), error: expect.objectContaining({ code: 'INTERNAL', message: expect.stringContaining('DRAINING') }) }]);
    expect(p.value()).toBe('active');
  });

  it('answers with the worker\'s error and goes back to active when the worker refuses', () => {
    const t = startProxies();
    const p = t.spawn();
    p.destroy();
    t.worker().reply('s1', false, errorOf('FAILED_PRECONDITION', 'locked'));
    expect(p.destroyAnswers().map((a) => a.error)).toEqual([expect.objectContaining({ code: 'FAILED_PRECONDITION', message: 'locked' })]);
    expect(p.value()).toBe('active');
  });

  it('while its worker is unreachable: leaves a tombstone with its parent and is done, writing nothing', () => {
    const t = startProxies();
    const p = t.spawn();
    p.lose();
    p.destroy(true);
    expect(p.toParent('session.tombstone')).toEqual([{ type: 'session.tombstone', sessionId: 's1' }]);
    expect(p.snap().status).toBe('done');
    expect(p.output().end).toBe('terminated');
    expect(t.commandsOf('destroy_session', 'w1')).toEqual([]);
  });

  it('leaves a tombstone and ends its tasks when the worker is lost during the destroy', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    p.destroy(true);
    p.lose();
    expect(t.outcomesOf('t1')[0]).toMatchObject({ error: { code: 'WORKER_LOST' } });
    expect(p.toParent('session.tombstone')).toHaveLength(1);
    expect(p.snap().status).toBe('done');
  });

  // A forced destroy whose reply came before the tasks' outcomes must not wait forever when the worker then goes away.
  it('gives the tasks it waits for WORKER_LOST when the worker is lost after replying', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    p.destroy(true);
    t.worker().reply('s1', true);
    p.lose();
    expect(t.outcomesOf('t1')[0]).toMatchObject({ error: { code: 'WORKER_LOST' } });
    expect(p.snap().status).toBe('done');
  });
});

describe('session proxy: another worker reports the session', () => {
  const w2Report = (): SessionReport => sessionReport('s1', { state: 'READY', workspacePath: '/ws2/s1', description: { restartedAtMs: T0 + 7, survivalNote: 'adopted' } });

  it('moves there when its own worker is unreachable: ends with end "moved" and the new worker', () => {
    const t = startProxies();
    const p = t.spawn();
    p.submit('t1');
    p.lose();
    p.ref().send({ type: 'session.reported', workerId: 'w2', report: w2Report(), atMs: t.clock.now() });
    expect(p.snap().status).toBe('done');
    expect(p.output()).toMatchObject({ end: 'moved', movedTo: 'w2', error: null });
    expect(t.outcomesOf('t1')).toHaveLength(1);
  });

  // The shard that adopts the session must start from the new worker's report, not the old one's.
  it('hands on the new worker\'s report when it moves', () => {
    const t = startProxies();
    const p = t.spawn();
    p.lose();
    p.ref().send({ type: 'session.reported', workerId: 'w2', report: w2Report(), atMs: t.clock.now() });
    expect(p.output().report).toEqual(w2Report());
  });

  it('tells its parent of the conflict and changes nothing while its own worker is reachable', () => {
    const t = startProxies();
    const p = t.spawn();
    const before = p.ctx();
    p.ref().send({ type: 'session.reported', workerId: 'w2', report: sessionReport('s1', { state: 'IDLE' }), atMs: t.clock.now() });
    expect(p.toParent('session.conflict')).toEqual([{ type: 'session.conflict', sessionId: 's1', message: expect.stringContaining('w2') }]);
    expect(p.ctx()).toBe(before);
    expect(p.value()).toBe('active');
  });
});

describe('sessionViewOf', () => {
  it('shows DRAINING while the proxy destroys the session, and the view fields from the report', () => {
    const t = startProxies();
    const p = t.spawn({ report: sessionReport('s1', { description: { userId: 'ann', metadata: { k: 'v' } } }) });
    expect(p.view()).toEqual({
      sessionId: 's1',
      workerId: 'w1',
      workspaceId: 's1',
      userId: 'ann',
      tenant: 'default',
      workspacePath: '/ws/s1',
      state: 'READY',
      createdAtMs: T0,
      lastActivityMs: T0,
      activeTasks: 0,
      recentTasks: [],
      metadata: { k: 'v' },
      failureReason: '',
      restartedAtMs: 0,
      survivalNote: '',
      unreachableSinceMs: 0,
      usage: { memoryBytes: 0, cpuMillicores: 0, diskBytes: 0 },
      limits: { memoryBytes: 0, maxProcesses: 0, cpuSecondsPerTask: 0, cpuMillicores: 0, diskBytes: 0 },
    });
    p.destroy();
    expect(p.view().state).toBe('DRAINING');
    // the view is a copy: changing it does not change the proxy
    p.view().metadata.k = 'changed';
    expect(p.view().metadata).toEqual({ k: 'v' });
  });
});

// XState warns when a test talks to a final actor; not a failure.
vi.spyOn(console, 'warn').mockImplementation(() => {});
