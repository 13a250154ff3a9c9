/**
 * The Stately inspector's plumbing over real sockets on 127.0.0.1: the relay (`codegen-mcp
 * inspect`) passes each process's events to viewers and replays recent ones to a late viewer;
 * a viewer that never reads is dropped once its bounded buffer is full; an unreachable
 * STATELY_INSPECT_URL costs a task nothing, keeps a bounded backlog, logs once per outage,
 * retries with backoff, and delivers once the relay is there.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { request } from 'node:http';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from '../helpers/system.js';
import pino from 'pino';
import { Writable } from 'node:stream';
import { createActor, createMachine } from 'xstate';
import { WebSocket } from 'ws';
import { startRelay, type RunningRelay } from '../../src/inspection/relay.js';
import { startStatelyInspector, type StatelyInspector } from '../../src/inspection/stately.js';
import { InspectionHub } from '../../src/inspection/hub.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({ write: (chunk, _e, cb) => (lines.push(JSON.parse(String(chunk)) as Record<string, unknown>), cb()) });
  return { logger: pino({ level: 'info' }, stream), lines };
}

async function viewer(relay: RunningRelay): Promise<{ ws: WebSocket; got: string[] }> {
  const ws = new WebSocket(relay.wsUrl);
  const got: string[] = [];
  ws.on('message', (d) => got.push(String(d)));
  await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
  cleanups.push(() => ws.terminate());
  return { ws, got };
}

const until = async (ok: () => boolean, ms = 10_000, what = 'the condition') => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const toggle = createMachine({ id: 'toggle', initial: 'off', states: { off: { on: { flip: 'on' } }, on: { on: { flip: 'off' } } } });

describe('the relay', () => {
  it('binds loopback, passes messages between clients, and replays recent ones to a late viewer', async () => {
    const relay = await startRelay({ port: 0, replay: 5 });
    cleanups.push(() => relay.close());
    expect(relay.host).toBe('127.0.0.1');
    const page = await fetch(relay.pageUrl);
    expect(await page.text()).toContain('stately.ai/inspect');
    const early = await viewer(relay);
    const { logger } = capturingLogger();
    const inspector = startStatelyInspector({ url: relay.wsUrl, processName: 'coordinator', logger });
    cleanups.push(() => inspector.stop());
    const hub = new InspectionHub();
    hub.add(inspector.listener);
    const actor = createActor(toggle, { inspect: hub.observe }).start();
    actor.send({ type: 'flip' });
    await until(() => early.got.some((t) => t.includes('"@xstate.snapshot"') && t.includes('"on"')), 10_000, 'the snapshot after flip');
    const kinds = early.got.map((t) => JSON.parse(t).type);
    expect(kinds).toEqual(expect.arrayContaining(['@xstate.actor', '@xstate.event', '@xstate.snapshot']));
    const registered = early.got.map((t) => JSON.parse(t)).find((e) => e.type === '@xstate.actor');
    expect(registered.sessionId).toMatch(/^coordinator\/x:/);
    expect(JSON.parse(registered.definition).states).toHaveProperty('off');
    const late = await viewer(relay);
    await until(() => late.got.length === 5, 5_000, 'the replay');
    expect(late.got).toEqual(early.got.slice(-5));
  });

  it("refuses another site's page (Origin) and a foreign Host (DNS rebinding)", async () => {
    const relay = await startRelay({ port: 0 });
    cleanups.push(() => relay.close());
    const refused = (headers: Record<string, string>) =>
      new Promise<boolean>((resolve) => {
        const ws = new WebSocket(relay.wsUrl, { headers });
        ws.once('open', () => (ws.close(), resolve(false)));
        ws.once('error', () => resolve(true));
      });
    expect(await refused({ Origin: 'http://evil.example' })).toBe(true);
    expect(await refused({ Host: 'evil.example' })).toBe(true);
    expect(await refused({ Origin: `http://127.0.0.1:${relay.port}` })).toBe(false);
    const status = await new Promise<number>((resolve, reject) =>
      request({ host: '127.0.0.1', port: relay.port, path: '/', headers: { Host: 'evil.example' } }, (r) => (r.resume(), resolve(r.statusCode ?? 0))).on('error', reject).end(),
    );
    expect(status).toBe(403);
  });

  it('drops a viewer that never reads once its buffer is full, and keeps serving the others', async () => {
    const relay = await startRelay({ port: 0, maxBufferedBytes: 64 * 1024, replay: 1 });
    cleanups.push(() => relay.close());
    const stuck = await viewer(relay);
    (stuck.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const reader = await viewer(relay);
    const sender = await viewer(relay);
    const big = JSON.stringify({ type: '@xstate.event', pad: 'x'.repeat(16 * 1024) });
    for (let i = 0; i < 2_000 && relay.clients() === 3; i++) {
      sender.ws.send(big);
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await until(() => relay.clients() === 2, 10_000, 'the stuck viewer dropped');
    const before = reader.got.length;
    sender.ws.send(JSON.stringify({ type: 'after' }));
    await until(() => reader.got.length > before && reader.got.at(-1)!.includes('after'), 5_000, 'the reader still served');
  });
});

describe('an unreachable STATELY_INSPECT_URL', () => {
  it('never slows the actors, keeps a bounded backlog, logs once, retries with backoff, and delivers when the relay comes', async () => {
    const port = await freePort();
    const { logger, lines } = capturingLogger();
    const inspector: StatelyInspector = startStatelyInspector({ url: `ws://127.0.0.1:${port}`, processName: 'worker-9', logger, maxBacklog: 100, backoff: { initialMs: 50, maxMs: 400 } });
    cleanups.push(() => inspector.stop());
    const hub = new InspectionHub();
    hub.add(inspector.listener);
    const actor = createActor(toggle, { inspect: hub.observe }).start();
    const began = performance.now();
    for (let i = 0; i < 2_000; i++) actor.send({ type: 'flip' });
    const took = performance.now() - began;
    // 2,000 sends with the inspector on and nowhere to send: no waiting on a socket (generous bound: it is a sanity check, not a benchmark).
    expect(took).toBeLessThan(2_000);
    await new Promise((r) => setTimeout(r, 1_500));
    const warnings = lines.filter((l) => String(l.msg).includes('unreachable'));
    expect(warnings).toHaveLength(1);
    expect(inspector.connected()).toBe(false);
    await until(() => inspector.dropped() >= 2_000 * 2 - 100, 5_000, 'the backlog bounded');
    // Now the relay appears on that port: the backlog (the most recent 100) arrives.
    const relay = await startRelay({ port });
    cleanups.push(() => relay.close());
    const v = await viewer(relay);
    await until(() => inspector.connected(), 5_000, 'the reconnect');
    await until(() => v.got.length >= 100, 5_000, 'the backlog delivered');
    expect(lines.some((l) => String(l.msg).includes('reachable again'))).toBe(true);
  });
});

describe('codegen-mcp inspect', () => {
  const cli = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

  it('prints the page and STATELY_INSPECT_URL, serves on loopback, and stops on Ctrl-C', async () => {
    const child = spawn(process.execPath, [cli, 'inspect', '--inspect-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (d) => (out += String(d)));
    await until(() => /STATELY_INSPECT_URL=ws:\/\/127\.0\.0\.1:\d+/.test(out), 10_000, 'the printed URL');
    const port = Number(/STATELY_INSPECT_URL=ws:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
    expect(out).toContain(`http://127.0.0.1:${port}/`);
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(200);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
  });

  it('names the busy port and the flag to change, in one line', async () => {
    const relay = await startRelay({ port: 0 });
    cleanups.push(() => relay.close());
    const r = spawnSync(process.execPath, [cli, 'inspect', '--inspect-port', String(relay.port)], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`port ${relay.port}`);
    expect(r.stderr).toContain('--inspect-port');
  });
});
