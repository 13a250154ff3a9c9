/**
 * What the Stately inspector costs (issue 10: "at 10,000 sessions the inspector must not slow the
 * system by more than 10%"). The in-process tree of bench/scale.ts (one worker, 10,000
 * CreateSession calls one after the other, each READY) runs in a child process with the inspector
 * off, then on (STATELY_INSPECT_URL to a relay in this process with a viewer reading everything),
 * interleaved three times; the best of each is compared. Each create gets a turn of the event loop
 * (a server gets one between requests), so the inspector sends as it goes; what its CPU budget
 * folds into actors' latest states is counted, with the time it took to catch up after the last
 * create. Alone: `node dist/bench/run.js inspection`.
 */
import { WebSocket } from 'ws';
import { startRelay } from '../src/inspection/relay.js';
import { runChild } from './scale.js';

interface Create {
  createMs: number;
  createCpuMs: number;
  heapBytes: number;
  inspectorDropped: number;
  inspectorCoalesced: number;
  inspectorCatchUpMs: number;
}

export interface InspectionFigures {
  off: Create;
  on: Create;
  ratioWall: number;
  ratioCpu: number;
  eventsReceived: number;
}

export async function runInspectionBench(): Promise<InspectionFigures> {
  const relay = await startRelay({ port: 0 });
  const viewer = new WebSocket(relay.wsUrl);
  let eventsReceived = 0;
  viewer.on('message', () => eventsReceived++);
  await new Promise((r, j) => (viewer.once('open', r), viewer.once('error', j)));
  const runs: Record<'off' | 'on', Create[]> = { off: [], on: [] };
  try {
    for (let round = 0; round < 3; round++) {
      for (const mode of ['off', 'on'] as const) {
        const env = { ...process.env, BENCH_INSPECT_URL: mode === 'on' ? relay.wsUrl : '' };
        runs[mode].push(await runChild<Create>('one:create', [], env));
      }
    }
  } finally {
    viewer.close();
    await relay.close();
  }
  const best = (xs: Create[]) => xs.reduce((a, b) => (b.createMs < a.createMs ? b : a));
  const off = best(runs.off);
  const on = best(runs.on);
  const figures = { off, on, ratioWall: on.createMs / off.createMs, ratioCpu: on.createCpuMs / off.createCpuMs, eventsReceived };
  const f = (n: number) => n.toFixed(0);
  console.log('\n### The Stately inspector at 10,000 sessions (in-process tree, 10,000 CreateSession one by one, best of 3 each, interleaved)\n');
  console.log('| measure | inspector off | inspector on | ratio | target |');
  console.log('|---|---|---|---|---|');
  console.log(`| wall time | ${f(off.createMs)} ms | ${f(on.createMs)} ms | ${figures.ratioWall.toFixed(2)}× | ≤ 1.10× ${figures.ratioWall <= 1.1 && on.inspectorDropped === 0 ? '✅' : '❌'} |`);
  console.log(`| CPU time | ${f(off.createCpuMs)} ms | ${f(on.createCpuMs)} ms | ${figures.ratioCpu.toFixed(2)}× | |`);
  console.log(`| heap after | ${(off.heapBytes / 2 ** 20).toFixed(1)} MiB | ${(on.heapBytes / 2 ** 20).toFixed(1)} MiB | | |`);
  console.log(`| inspection events the viewer received (both "on" runs) | | ${eventsReceived} | | |`);
  console.log(`| events folded into their actor's latest state by the CPU budget (best "on" run) | | ${on.inspectorCoalesced} | | |`);
  console.log(`| time after the last create until the inspector had sent every actor's latest state | | ${f(on.inspectorCatchUpMs)} ms | | |`);
  console.log(`| events the inspector dropped (best "on" run) | | ${on.inspectorDropped} | | 0 ${on.inspectorDropped === 0 ? '✅' : '❌ (the figure above does not count)'} |`);
  console.log(`\n${JSON.stringify({ inspection: figures })}`);
  return figures;
}
