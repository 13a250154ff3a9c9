import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { supervisorIdOf } from '../../machines/supervisor.machine.js';
import { LINK_ID, POOL_ID } from '../../machines/worker/worker.machine.js';
import { flush, sessionDescription, taskSpec, workerHarness, type WorkerHarnessOptions } from '../helpers/machine-fakes.js';
import type { WorkerInput } from '../../machines/worker/worker.machine.js';

const fastIntensity = (maxRestarts: number) => ({ intensity: { maxRestarts, windowMs: 60_000 }, backoff: { initialMs: 100, maxMs: 1_000, factor: 2 } });

function start(overrides: Partial<WorkerInput> = {}, options: WorkerHarnessOptions = {}) {
  return workerHarness(overrides, options);
}
type Worker = ReturnType<typeof start>;

/** The link loses the coordinator and registers again once its backoff has passed (the worker answers link.collect itself). */
async function reregister(w: Worker, registrationId: string): Promise<void> {
  w.heartbeats.last().sendBack({ type: 'link.failed', reason: 'coordinator restarted' });
  w.clock.increment(1_000);
  await w.connect(registrationId);
}

describe('worker machine', () => {
  beforeEach(() => {
    // sends to finished actors are expected here; keep the dev warnings out of the output
    vi.spyOn(console, 'warn').mockImplementation(() => {});
  });
  afterEach(() => vi.restoreAllMocks());

  describe('starting', () => {
    it('starts the pool, then the link, which registers with no sessions when none were adopted', async () => {
      const w = start();
      await flush();
      expect(Object.keys(w.actor.getSnapshot().children)).toEqual([supervisorIdOf(POOL_ID), supervisorIdOf(LINK_ID)]);
      expect(w.pool.active()).toHaveLength(1);
      expect(w.register.last().input).toEqual({ workerId: 'w1', attempt: 0, sessions: [] });
      expect(w.errors).toEqual([]);
    });

    it('starts every adopted session at entry, before the link, and registers with them', async () => {
      const d1 = sessionDescription({ sessionId: 'a1', metadata: { k: 'v' }, metadataVersion: 4 });
      const d2 = sessionDescription({ sessionId: 'a2' });
      const w = start({ adopt: [d1, d2] });
      await flush();
      expect(Object.keys(w.actor.getSnapshot().children)).toEqual(['sup:pool', 'sup:session:a1', 'sup:session:a2', 'sup:link']);
      expect(w.prepare.calls.map((c) => c.input)).toEqual([
        { description: d1, origin: 'adopt', restarts: 0 },
        { description: d2, origin: 'adopt', restarts: 0 },
      ]);
      expect(w.register.last().input.sessions.map((r) => [r.description.sessionId, r.state])).toEqual([
        ['a1', 'INITIALIZING'],
        ['a2', 'INITIALIZING'],
      ]);
      expect(w.sessionState('a1')).toBe('READY');
      expect(w.reports('a1').at(-1)).toMatchObject({ state: 'READY', description: { metadata: { k: 'v' }, survivalNote: expect.stringContaining('its worker restarted') } });
      expect(w.context().adopt).toEqual([]);
    });
  });

  describe('commands', () => {
    it('creates a session on command.create: answers ok at once and reports it INITIALIZING then READY', async () => {
      const w = start({}, { autoPrepare: false });
      w.create({ sessionId: 's1' }, 'r1');
      expect(w.reply('r1')).toEqual({ requestId: 'r1', sessionId: 's1', ok: true });
      expect(w.prepare.last().input).toMatchObject({ origin: 'create', description: { sessionId: 's1' } });
      expect(w.reports('s1').map((r) => r.state)).toEqual(['INITIALIZING']);
      w.prepare.last().resolve({ workspacePath: '/ws/s1', description: w.prepare.last().input.description, atMs: 10 });
      await flush();
      expect(w.reports('s1').map((r) => r.state)).toEqual(['INITIALIZING', 'READY']);
      expect(w.context().held.s1).toMatchObject({ state: 'READY', workspacePath: '/ws/s1' });
    });

    it('refuses a second session with the same id with FAILED_PRECONDITION', async () => {
      const w = start();
      await w.createReady('s1');
      w.create({ sessionId: 's1' }, 'r2');
      expect(w.reply('r2')).toEqual({ requestId: 'r2', sessionId: 's1', ok: false, error: expect.objectContaining({ code: 'FAILED_PRECONDITION' }) });
      expect(w.prepare.calls).toHaveLength(1);
    });

    it('refuses sessions beyond MAX_SESSIONS with CAPACITY_EXHAUSTED, counting adopted ones', async () => {
      const w = start({ maxSessions: 2, adopt: [sessionDescription({ sessionId: 'a1' })] });
      await w.createReady('s1');
      w.create({ sessionId: 's2' }, 'r3');
      expect(w.reply('r3')).toEqual({ requestId: 'r3', sessionId: 's2', ok: false, error: expect.objectContaining({ code: 'CAPACITY_EXHAUSTED', retriable: true }) });
      expect(w.reply('r3')!.error!.message).toContain('MAX_SESSIONS');
      expect(w.session('s2')).toBeUndefined();
    });

    it('destroys a held session: removes its workspace, reports it gone and frees its place', async () => {
      const w = start({ maxSessions: 1 });
      await w.createReady('s1');
      w.actor.send({ type: 'command.destroy', requestId: 'd1', sessionId: 's1', atMs: 5 });
      expect(w.release.last().input).toEqual({ sessionId: 's1', remove: true });
      w.release.last().resolve({ removedArtifacts: ['plot.png', 'sub/data.csv'] });
      await flush();
      // Its last report says which artifacts went (DestroySession answers them).
      expect(w.reports('s1').at(-1)).toMatchObject({ state: 'TERMINATED', gone: true, removedArtifacts: ['plot.png', 'sub/data.csv'] });
      expect(w.context().held).toEqual({});
      expect(w.context().live).toEqual([]);
      expect(w.actor.getSnapshot().children['sup:session:s1']).toBeUndefined();
      w.create({ sessionId: 's2' }, 'r2');
      expect(w.reply('r2')?.ok).toBe(true);
    });

    it('answers a destroy of a session it does not hold with ok (it is already gone)', () => {
      const w = start();
      w.actor.send({ type: 'command.destroy', requestId: 'd1', sessionId: 'ghost', atMs: 0 });
      expect(w.reply('d1')).toEqual({ requestId: 'd1', sessionId: 'ghost', ok: true });
    });

    it('runs command.task in its session and cancels it on command.cancel', async () => {
      const w = start();
      await w.createReady('s1');
      w.task('t1', 's1');
      expect(w.exec.active().map((r) => r.spec.taskId)).toEqual(['t1']);
      expect(w.sessionState('s1')).toBe('BUSY');
      w.actor.send({ type: 'command.cancel', requestId: 'c1', sessionId: 's1', taskId: 't1', reason: 'client', atMs: 0 });
      expect(w.exec.run('t1').cancels).toEqual(['client']);
    });

    it('answers command.task for a session it does not hold with task.error SESSION_NOT_FOUND', () => {
      const w = start();
      w.task('t1', 'ghost');
      expect(w.taskErrors()).toEqual([{ type: 'task.error', sessionId: 'ghost', taskId: 't1', error: expect.objectContaining({ code: 'SESSION_NOT_FOUND' }) }]);
      expect(w.exec.runs).toHaveLength(0);
    });

    it("passes a session's task.refused on as task.error", async () => {
      const w = start({}, { autoPrepare: false });
      w.create({ sessionId: 's1' });
      w.prepare.last().reject(new Error('disk full'));
      await flush();
      w.task('t1', 's1');
      expect(w.taskErrors()).toEqual([{ type: 'task.error', sessionId: 's1', taskId: 't1', error: expect.objectContaining({ code: 'FAILED_PRECONDITION' }) }]);
    });

    it('puts metadata into a held session, answering once it is saved, and answers SESSION_NOT_FOUND for others', async () => {
      const w = start();
      await w.createReady('s1');
      w.actor.send({ type: 'command.put_metadata', requestId: 'm1', sessionId: 's1', metadata: { a: 'b' }, merge: true, atMs: 0 });
      await flush();
      expect(w.reports('s1').at(-1)).toMatchObject({ description: { metadata: { a: 'b' }, metadataVersion: 1 } });
      expect(w.context().held.s1!.description.metadataVersion).toBe(1);
      expect(w.reply('m1')).toEqual({ requestId: 'm1', sessionId: 's1', ok: true });
      expect(w.context().metadataAsks).toEqual({});
      w.actor.send({ type: 'command.put_metadata', requestId: 'm2', sessionId: 'ghost', metadata: {}, merge: false, atMs: 0 });
      expect(w.reply('m2')).toMatchObject({ ok: false, error: { code: 'SESSION_NOT_FOUND' } });
    });

    it('receives commands through its coordinator link', async () => {
      const w = start();
      await w.connect();
      w.streams.last().sendBack({ type: 'command.create', requestId: 'r1', description: sessionDescription({ sessionId: 's7' }), atMs: 0 });
      expect(w.reply('r1')?.ok).toBe(true);
      expect(w.session('s7')).toBeDefined();
    });
  });

  describe('registration', () => {
    it("answers link.collect with every held session's latest report", async () => {
      const w = start({ maxSessions: 3 });
      await w.connect('reg-1');
      await w.createReady('s1');
      await w.createReady('s2');
      w.task('t1', 's2');
      w.actor.send({ type: 'command.put_metadata', requestId: 'm', sessionId: 's1', metadata: { x: 'y' }, merge: true, atMs: 0 });
      await reregister(w, 'reg-1');
      const listed = w.register.last().input.sessions;
      expect(listed.map((r) => [r.description.sessionId, r.state])).toEqual([
        ['s1', 'READY'],
        ['s2', 'BUSY'],
      ]);
      expect(listed[0]!.description.metadata).toEqual({ x: 'y' });
      expect(listed).toEqual([w.reports('s1').at(-1), w.reports('s2').at(-1)]);
    });

    it('cancels the tasks it runs when the link registers under a new registration id', async () => {
      const w = start();
      await w.connect('reg-1');
      await w.createReady('s1');
      w.task('t1', 's1');
      await reregister(w, 'reg-2');
      expect(w.exec.run('t1').cancels).toHaveLength(1);
      expect(w.exec.run('t1').cancels[0]).toContain('WORKER_LOST');
      expect(w.sessionState('s1')).toBe('BUSY');
    });

    it('keeps its tasks when the link registers again under the same id', async () => {
      const w = start();
      await w.connect('reg-1');
      await w.createReady('s1');
      w.task('t1', 's1');
      await reregister(w, 'reg-1');
      expect(w.exec.run('t1').cancels).toEqual([]);
    });

    it('keeps the tasks that started before its first registration', async () => {
      const w = start();
      await w.createReady('s1');
      w.task('t1', 's1');
      await w.connect('reg-1');
      expect(w.exec.run('t1').cancels).toEqual([]);
      expect(w.context().registrationId).toBe('reg-1');
    });
  });

  describe('supervising sessions', () => {
    it('restarts a crashed session from its description; it reports again, noting the restart', async () => {
      const w = start({ faults: true });
      await w.createReady('s1');
      const before = w.reports('s1').length;
      w.actor.send({ type: 'worker.fault' });
      expect(w.session('s1')).toBeUndefined();
      w.clock.increment(1_000);
      await flush();
      expect(w.prepare.calls.map((c) => c.input.restarts)).toEqual([0, 1]);
      expect(w.sessionState('s1')).toBe('READY');
      const again = w.reports('s1').slice(before);
      expect(again.map((r) => r.state)).toEqual(['INITIALIZING', 'READY']);
      expect(again.at(-1)!.description.survivalNote).toContain('crashed');
      expect(again.at(-1)!.description.restartedAtMs).toBe(1_000);
      expect(w.errors).toEqual([]);
    });

    it('starts a restarted session actor from its latest description (with its metadata), not the one it was created with', async () => {
      const w = start({ faults: true });
      await w.createReady('s1');
      w.actor.send({ type: 'command.put_metadata', requestId: 'm1', sessionId: 's1', metadata: { kept: 'yes' }, merge: true, atMs: 0 });
      await flush();
      expect(w.reply('m1')).toMatchObject({ ok: true });
      w.actor.send({ type: 'worker.fault' });
      w.clock.increment(1_000);
      await flush();
      expect(w.prepare.calls).toHaveLength(2);
      expect(w.prepare.last().input.description).toMatchObject({ metadata: { kept: 'yes' }, metadataVersion: 1 });
    });

    it('keeps a session that crashes too often held, reported FAILED, with its supervisor gone', async () => {
      const w = start({ faults: true, sessions: fastIntensity(1) });
      await w.createReady('s1');
      w.actor.send({ type: 'worker.fault' });
      w.clock.increment(1_000);
      await flush();
      w.actor.send({ type: 'worker.fault' });
      await flush();
      expect(w.reports('s1').at(-1)).toMatchObject({ state: 'FAILED', gone: false, failureReason: expect.stringContaining('the session actor kept crashing') });
      expect(w.context().held.s1).toMatchObject({ state: 'FAILED' });
      expect(w.context().live).toEqual([]);
      expect(w.actor.getSnapshot().children['sup:session:s1']).toBeUndefined();
      expect(w.release.calls).toHaveLength(0);
      await w.connect('reg-1');
      await reregister(w, 'reg-1');
      expect(w.register.last().input.sessions.map((r) => [r.description.sessionId, r.state])).toEqual([['s1', 'FAILED']]);
    });

    it('answers commands for a session whose actor is restarting with UNAVAILABLE: tasks and metadata changes', async () => {
      const w = start({ faults: true });
      await w.createReady('s1');
      w.actor.send({ type: 'worker.fault' });
      await flush();
      expect(w.context().down).toEqual(['s1']);
      w.actor.send({ type: 'command.task', requestId: 'r-t', spec: taskSpec('t-down', 's1'), atMs: w.clock.now() });
      expect(w.taskErrors().at(-1)).toMatchObject({ taskId: 't-down', error: { code: 'UNAVAILABLE', retriable: true } });
      w.actor.send({ type: 'command.put_metadata', requestId: 'r-m', sessionId: 's1', metadata: { a: 'b' }, merge: true, atMs: w.clock.now() });
      expect(w.reply('r-m')).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE', message: expect.stringContaining('restarting') } });
      // Restarted and reporting again: up, without the refused change.
      w.clock.increment(1_000);
      await flush();
      expect(w.sessionState('s1')).toBe('READY');
      expect(w.context().down).toEqual([]);
      expect(w.reports('s1').at(-1)?.description).toMatchObject({ metadata: {}, metadataVersion: 0 });
    });

    it('fails a metadata change its session actor took but had not saved when it crashed, saying so', async () => {
      const w = start({ faults: true }, { holdSaves: true });
      await w.createReady('s1');
      w.actor.send({ type: 'command.put_metadata', requestId: 'r-m', sessionId: 's1', metadata: { a: 'b' }, merge: true, atMs: w.clock.now() });
      await flush();
      expect(w.reply('r-m')).toBeUndefined();
      w.actor.send({ type: 'worker.fault' });
      await flush();
      expect(w.reply('r-m')).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE', message: expect.stringContaining('before the metadata change was saved') } });
      expect(w.context().metadataAsks).toEqual({});
    });

    it('destroys a session that keeps crashing: its files go, the destroy is answered and the session is gone', async () => {
      const w = start({ faults: true, sessions: fastIntensity(1) });
      await w.createReady('s1');
      w.actor.send({ type: 'worker.fault' });
      w.clock.increment(1_000);
      await flush();
      w.actor.send({ type: 'worker.fault' });
      await flush();
      w.actor.send({ type: 'command.task', requestId: 'r-t', spec: taskSpec('t-failed', 's1'), atMs: w.clock.now() });
      expect(w.taskErrors().at(-1)).toMatchObject({ taskId: 't-failed', error: { code: 'FAILED_PRECONDITION' } });
      w.actor.send({ type: 'command.destroy', requestId: 'r-d', sessionId: 's1', atMs: w.clock.now() });
      expect(w.discard.last().input).toEqual({ sessionId: 's1' });
      expect(w.reply('r-d')).toBeUndefined();
      w.discard.last().resolve();
      await flush();
      expect(w.reply('r-d')).toMatchObject({ ok: true, sessionId: 's1' });
      expect(w.reports('s1').at(-1)).toMatchObject({ gone: true });
      expect(w.context().held).toEqual({});
      // The place it took is free again.
      await w.createReady('s2');
      expect(w.sessionState('s2')).toBe('READY');
    });

    it('ignores worker.fault when faults are not enabled', async () => {
      const w = start();
      await w.createReady('s1');
      w.actor.send({ type: 'worker.fault' });
      expect(w.sessionState('s1')).toBe('READY');
      expect(w.prepare.calls).toHaveLength(1);
    });
  });

  describe('supervising the link and the pool', () => {
    it('restarts a crashed link, which registers again', async () => {
      const w = start();
      await w.connect('reg-1');
      const before = w.link();
      w.heartbeats.last().crash('heartbeat timer threw');
      w.clock.increment(1_000);
      await flush();
      expect(w.link()).toBeDefined();
      expect(w.link()).not.toBe(before);
      expect(w.register.calls).toHaveLength(2);
      expect(w.value()).toBe('running');
    });

    it('shuts down, with the escalation recorded, when the link crashes too often', async () => {
      const w = start({ link: { ...fastIntensity(1), shutdownTimeoutMs: 5_000 } });
      await w.createReady('s1');
      await w.connect('reg-1');
      w.heartbeats.last().crash('boom');
      w.clock.increment(1_000);
      await w.connect('reg-1');
      w.heartbeats.last().crash('boom again');
      expect(w.context().escalation).toMatch(/^coordinator link: link restarted 1 times/);
      expect(w.value()).toBe('draining');
      expect(w.release.last().input).toEqual({ sessionId: 's1', remove: false });
      w.release.last().resolve();
      await flush();
      expect(w.deregister.calls).toHaveLength(0);
      expect(w.pool.last().stopped).toBe(true);
      expect(w.actor.getSnapshot().status).toBe('done');
      expect(w.errors).toEqual([]);
    });

    it('restarts a crashed pool, and only warns when the pool crashes too often', async () => {
      const w = start({ pool: fastIntensity(1) });
      w.pool.last().crash('venv build failed');
      w.clock.increment(1_000);
      expect(w.pool.instances).toHaveLength(2);
      expect(w.pool.last().stopped).toBe(false);
      w.pool.last().crash('venv build failed');
      expect(w.warnings()).toEqual([{ type: 'worker.warning', message: expect.stringContaining('venv pool failed too often'), details: { reason: expect.any(String) } }]);
      expect(w.value()).toBe('running');
      await w.createReady('s1');
      expect(w.sessionState('s1')).toBe('READY');
    });
  });

  describe('shutdown', () => {
    it('drains sessions (files kept), then deregisters the link, then stops the pool, then ends', async () => {
      const w = start();
      await w.connect('reg-1');
      await w.createReady('s1');
      await w.createReady('s2');
      w.task('t1', 's1');
      w.actor.send({ type: 'worker.shutdown', atMs: 100 });
      expect(w.value()).toBe('draining');
      // the idle session goes at once; the busy one waits for its task
      expect(w.release.calls.map((c) => c.input)).toEqual([{ sessionId: 's2', remove: false }]);
      expect(w.exec.run('t1').cancels).toEqual([]);
      w.release.calls[0]!.resolve();
      await flush();
      expect(w.value()).toBe('draining');
      w.exec.run('t1').finish();
      expect(w.outcomes.get('t1')).toHaveLength(1);
      expect(w.release.last().input).toEqual({ sessionId: 's1', remove: false });
      expect(w.deregister.calls).toHaveLength(0);
      w.release.last().resolve();
      await flush();
      expect(w.value()).toBe('deregistering');
      expect(w.deregister.last().input).toEqual({ workerId: 'w1', registrationId: 'reg-1', reason: 'worker shutting down' });
      expect(w.pool.last().stopped).toBe(false);
      w.deregister.last().resolve();
      await flush();
      expect(w.pool.last().stopped).toBe(true);
      expect(w.actor.getSnapshot().status).toBe('done');
      expect(w.value()).toBe('stopped');
      expect(w.reports().some((r) => r.gone)).toBe(false);
      expect(w.context().escalation).toBe('');
      expect(w.errors).toEqual([]);
    });

    it('refuses new sessions with UNAVAILABLE and new tasks with task.error UNAVAILABLE while draining', async () => {
      const w = start();
      await w.createReady('s1');
      w.task('t1', 's1');
      w.actor.send({ type: 'worker.shutdown', atMs: 0 });
      w.create({ sessionId: 's3' }, 'r3');
      expect(w.reply('r3')).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE', retriable: true } });
      expect(w.session('s3')).toBeUndefined();
      w.task('t2', 's1');
      expect(w.taskErrors()).toEqual([{ type: 'task.error', sessionId: 's1', taskId: 't2', error: expect.objectContaining({ code: 'UNAVAILABLE' }) }]);
      expect(w.exec.runs.map((r) => r.spec.taskId)).toEqual(['t1']);
    });

    it('cancels a task that outlives the drain timeout', async () => {
      const w = start({ drainTimeoutMs: 2_000 }, { exec: { finishOnCancel: true } });
      await w.connect();
      await w.createReady('s1');
      w.task('t1', 's1');
      w.actor.send({ type: 'worker.shutdown', atMs: 0 });
      w.clock.increment(1_999);
      expect(w.exec.run('t1').cancels).toEqual([]);
      w.clock.increment(1);
      expect(w.exec.run('t1').cancels).toEqual(['drain timeout']);
      w.release.last().resolve();
      await flush();
      expect(w.value()).toBe('deregistering');
    });

    it('removes the files of a session it already drained when a destroy comes before the link goes, and refuses its metadata UNAVAILABLE', async () => {
      const w = start();
      await w.connect('reg-1');
      await w.createReady('s1');
      await w.createReady('s2');
      w.task('t1', 's1');
      w.actor.send({ type: 'worker.shutdown', atMs: 0 });
      // s2 drained (files kept) while s1's task keeps the worker, and its link, up.
      w.release.calls[0]!.resolve();
      await flush();
      expect(w.context().live).toEqual(['s1']);
      w.actor.send({ type: 'command.put_metadata', requestId: 'm2', sessionId: 's2', metadata: { a: 'b' }, merge: true, atMs: 0 });
      expect(w.reply('m2')).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE', message: expect.stringContaining('shut down with this worker') } });
      w.actor.send({ type: 'command.destroy', requestId: 'd2', sessionId: 's2', atMs: 0 });
      expect(w.discard.last().input).toEqual({ sessionId: 's2' });
      expect(w.reply('d2')).toBeUndefined();
      w.discard.last().resolve();
      await flush();
      expect(w.reply('d2')).toMatchObject({ ok: true, sessionId: 's2' });
      expect(w.reports('s2').at(-1)).toMatchObject({ gone: true });
      expect(Object.keys(w.context().held)).toEqual(['s1']);
    });

    it('still destroys a session on command while draining', async () => {
      const w = start();
      await w.createReady('s1');
      w.task('t1', 's1');
      w.actor.send({ type: 'worker.shutdown', atMs: 0 });
      w.actor.send({ type: 'command.destroy', requestId: 'd1', sessionId: 's1', atMs: 0 });
      expect(w.exec.run('t1').cancels).toEqual(['session destroyed']);
    });

    it('ends without a deregister call when the link never registered', async () => {
      const w = start();
      await flush();
      w.actor.send({ type: 'worker.shutdown', atMs: 0 });
      await flush();
      expect(w.deregister.calls).toHaveLength(0);
      expect(w.register.last().signal.aborted).toBe(true);
      expect(w.actor.getSnapshot().status).toBe('done');
    });

    it('stops a session waiting for its restart without starting it again', async () => {
      const w = start({ faults: true });
      await w.connect();
      await w.createReady('s1');
      w.actor.send({ type: 'worker.fault' });
      w.actor.send({ type: 'worker.shutdown', atMs: 0 });
      await flush();
      w.deregister.last().resolve();
      await flush();
      w.clock.increment(10_000);
      expect(w.prepare.calls).toHaveLength(1);
      expect(w.actor.getSnapshot().status).toBe('done');
    });
  });
});
