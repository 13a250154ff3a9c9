/**
 * The live view in a real browser: Debian's chromium, driven by playwright-core (never a browser
 * download), against a real coordinator and worker. It signs in with /live?token=… (then a
 * cookie), sees a session created over gRPC appear, sees the worker's session BUSY during a task
 * and READY after, sees its statechart drawn with the active state marked, and checks that no
 * request left 127.0.0.1. A screenshot is saved as tmp/live-view.png for people to look at.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { python, repoRoot, startTask, TestSystem, unary, type Wire } from '../helpers/system.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
let sys: TestSystem;
let browser: Browser;
let page: Page;
const requested: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`chromium is not at ${CHROMIUM}: apt-get install chromium (make test installs it), or set CHROMIUM_PATH`);
  sys = new TestSystem({ label: 'live' });
  await sys.startUp(1, {});
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run'] });
  const context = await browser.newContext({ viewport: { width: 1500, height: 950 } });
  context.on('request', (r) => requested.push(r.url()));
  page = await context.newPage();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await sys?.stop();
}, 120_000);

const base = () => `http://127.0.0.1:${sys.httpPort}`;
const row = (key: string, id: string) => `#actor-list .actor[data-key^="${key}/"][data-id="${id}"]`;

describe('GET /live in chromium', () => {
  it('refuses a browser without the credential', async () => {
    const res = await page.goto(`${base()}/live`);
    expect(res!.status()).toBe(401);
    expect(await page.textContent('body')).toContain('/live?token=');
    expect((await fetch(`${base()}/live/api/actors`)).status).toBe(401);
    expect((await fetch(`${base()}/live?token=wrong`)).status).toBe(401);
  });

  it('signs in once, shows a new session, BUSY during a task and READY after, and draws its statechart', async () => {
    const res = await page.goto(`${base()}/live?token=${encodeURIComponent(sys.clientToken)}`);
    expect(res!.status()).toBe(200);
    expect(new URL(page.url()).search, 'the token leaves the address bar').toBe('');
    const s = (await unary(sys.clients.sessions, 'CreateSession', {})) as Wire;
    const sid = s['session_id'] as string;
    await page.fill('#filter', sid);
    const workerRow = row('worker-1', `session:${sid}`);
    await page.waitForSelector(workerRow, { timeout: 15_000 });
    await page.waitForSelector(row('coordinator', `session:${sid}`), { timeout: 15_000 });
    await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute('data-state')?.includes('READY'), workerRow, { timeout: 15_000 });
    await page.click(workerRow);
    await page.waitForSelector('#chart svg g.state', { timeout: 15_000 });
    const task = startTask(sys.clients, python(sid, 'import time; time.sleep(4); print("done")'));
    await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute('data-state')?.includes('BUSY'), workerRow, { timeout: 15_000 });
    await page.waitForFunction(() => document.querySelector('#current-state')?.textContent?.includes('BUSY'), undefined, { timeout: 10_000 });
    const activeBusy = await page.$$eval('#chart svg g.state.active', (gs) => gs.map((g) => g.getAttribute('data-path')));
    expect(activeBusy).toEqual(expect.arrayContaining(['running', 'running.BUSY']));
    mkdirSync(path.join(repoRoot, 'tmp'), { recursive: true });
    await page.screenshot({ path: path.join(repoRoot, 'tmp', 'live-view-busy.png') });
    await task.done;
    await page.waitForFunction(() => document.querySelector('#current-state')?.textContent?.includes('READY'), undefined, { timeout: 15_000 });
    await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute('data-state')?.includes('READY'), workerRow, { timeout: 15_000 });
    const activeReady = await page.$$eval('#chart svg g.state.active', (gs) => gs.map((g) => g.getAttribute('data-path')));
    expect(activeReady).toEqual(['READY']);
    // Every state of the machine's definition is drawn.
    const drawn = await page.$$eval('#chart svg g.state', (gs) => gs.map((g) => g.getAttribute('data-path')));
    expect(drawn).toEqual(expect.arrayContaining(['INITIALIZING', 'READY', 'IDLE', 'running', 'running.BUSY', 'running.CHECKPOINTING', 'DRAINING', 'TERMINATED', 'FAILED']));
    expect(await page.$$eval('#events li, #events tr, #events > *', (xs) => xs.length)).toBeGreaterThan(0);
    await page.fill('#filter', '');
    await page.screenshot({ path: path.join(repoRoot, 'tmp', 'live-view.png') });
  }, 90_000);

  it('made no request anywhere but 127.0.0.1', () => {
    expect(requested.length).toBeGreaterThan(3);
    const away = requested.filter((u) => !u.startsWith('data:') && !u.startsWith('blob:') && new URL(u).hostname !== '127.0.0.1');
    expect(away).toEqual([]);
  });
});
