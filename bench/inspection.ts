/**
 * What the Stately inspector costs (issue 10: "at 10,000 sessions the inspector must not slow the
 * system by more than 10%"). The in-process tree of bench/scale.ts (one worker, 10,000
 * CreateSession calls one after the other, each READY) runs in a child process with the inspector
 * off, then on (STATELY_INSPECT_URL to a relay in this process with a viewer reading everything),
 * interleaved ROUNDS times. The verdict is on the median of the rounds' paired ratios (on / off of
 * the same round): this machine moves a run by ±30%, and the best of each side alone favours
 * whichever had the luckier outlier; the best-of figures are printed too. Each create gets a turn of the event loop
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
  /** Best "on" over best "off". */
  ratioWall: number;
  ratioCpu: number;
  /** The median of the rounds' paired ratios (on / off of the same round), and their range. */
  pairedWall: { median: number; min: number; max: number };
  pairedCpu: { median: number; min: number; max: number };
  eventsReceived: number;
}

const ROUNDS = Number(process.env['INSPECTION_ROUNDS'] ?? 5);

function spread(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s.at(-1)! };
}

export async function runInspectionBench(): Promise<InspectionFigures> {
  const relay = await startRelay({ port: 0 });
  const viewer = new WebSocket(relay.wsUrl);
  let eventsReceived = 0;
  viewer.on('message', () => eventsReceived++);
  await new Promise((r, j) => (viewer.once('open', r), viewer.once('error', j)));
  const runs: Record<'off' | 'on', Create[]> = { off: [], on: [] };
  try {
    for (let round = 0; round < ROUNDS; round++) {
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
  const pairedWall = spread(runs.on.map((r, i) => r.createMs / runs.off[i]!.createMs));
  const pairedCpu = spread(runs.on.map((r, i) => r.createCpuMs / runs.off[i]!.createCpuMs));
  const figures = { off, on, ratioWall: on.createMs / off.createMs, ratioCpu: on.createCpuMs / off.createCpuMs, pairedWall, pairedCpu, eventsReceived };
  const f = (n: number) => n.toFixed(0);
  const r = (x: { median: number; min: number; max: number }) => `${x.median.toFixed(2)}× (${x.min.toFixed(2)}–${x.max.toFixed(2)})`;
  const dropped = runs.on.reduce((n, x) => n + x.inspectorDropped, 0);
  console.log(`\n### The Stately inspector at 10,000 sessions (in-process tree, 10,000 CreateSession one by one, ${ROUNDS} interleaved rounds)\n`);
  console.log('| measure | inspector off | inspector on | ratio | target |');
  console.log('|---|---|---|---|---|');
  console.log(`| wall time, median of the paired rounds (range) | ${runs.off.map((x) => f(x.createMs)).join(', ')} ms | ${runs.on.map((x) => f(x.createMs)).join(', ')} ms | ${r(pairedWall)} | ≤ 1.10× ${pairedWall.median <= 1.1 && dropped === 0 ? '✅' : '❌'} |`);
  console.log(`| CPU time, median of the paired rounds (range) | ${runs.off.map((x) => f(x.createCpuMs)).join(', ')} ms | ${runs.on.map((x) => f(x.createCpuMs)).join(', ')} ms | ${r(pairedCpu)} | |`);
  console.log(`| wall time, best of each | ${f(off.createMs)} ms | ${f(on.createMs)} ms | ${figures.ratioWall.toFixed(2)}× | |`);
  console.log(`| CPU time, best of each | ${f(off.createCpuMs)} ms | ${f(on.createCpuMs)} ms | ${figures.ratioCpu.toFixed(2)}× | |`);
  console.log(`| heap after | ${(off.heapBytes / 2 ** 20).toFixed(1)} MiB | ${(on.heapBytes / 2 ** 20).toFixed(1)} MiB | | |`);
  console.log(`| inspection events the viewer received (both "on" runs) | | ${eventsReceived} | | |`);
  console.log(`| events folded into their actor's latest state by the CPU budget (best "on" run) | | ${on.inspectorCoalesced} | | |`);
  console.log(`| time after the last create until the inspector had sent every actor's latest state | | ${f(on.inspectorCatchUpMs)} ms | | |`);
  console.log(`| events the inspector dropped (all "on" runs) | | ${dropped} | | 0 ${dropped === 0 ? '✅' : '❌ (the figures above do not count)'} |`);
  console.log(`\n${JSON.stringify({ inspection: figures })}`);
  return figures;
}
