/**
 * `make bench`: figures, not assertions. Every comparison's baseline is measured in the same run.
 * Prints a Markdown table; BENCHMARKS.md records a run of it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { connectCoordinator, unary } from '../src/wire/client.js';
import { runCheckpointBench } from './checkpoints.js';
import { runInspectionBench } from './inspection.js';
import { runJupyterBench } from './jupyter.js';
import { execute, fmt, measureCreates, quantile } from './measure.js';
import { runScale } from './scale.js';
import { startSystem } from './system.js';

/** The real interpreter behind `python3` (here a pyenv shim, a shell script that would inflate the baseline). */
function realPython(): string {
  return execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
}

function bareSpawn(python: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const p = spawn(python, ['-c', 'print(1)'], { stdio: ['ignore', 'pipe', 'inherit'] });
    p.stdout.resume();
    p.on('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`exit ${code}`))));
  });
}

async function timed<T>(n: number, fn: () => Promise<T>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

function printTable(rows: string[][]): void {
  console.log(`\ncodegen-mcp benchmark — ${new Date().toISOString()} — ${cpus().length} cores, Node ${process.version}\n`);
  console.log('| measure | p50 / rate | p95 / detail | target | |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

async function main(): Promise<void> {
  // `node dist/bench/run.js checkpoints`: only the checkpoint figures.
  if (process.argv[2] === 'checkpoints') {
    printTable(await runCheckpointBench());
    return;
  }
  // `node dist/bench/run.js inspection`: only what the Stately inspector costs.
  if (process.argv[2] === 'inspection') {
    await runInspectionBench();
    return;
  }
  // `node dist/bench/run.js jupyter`: only the side-by-side with a Jupyter kernel (bench/jupyter.ts).
  if (process.argv[2] === 'jupyter') {
    printTable(await runJupyterBench());
    return;
  }
  const rows: string[][] = [];
  const sys = await startSystem(2, { MAX_SESSIONS: '12', VENV_POOL_SIZE: '4' });
  const c = connectCoordinator(sys.grpcAddr, {}, { token: sys.token });
  try {
    // Warm-up: connection, first venvs, Python's page cache.
    const warm = await unary(c.sessions, 'CreateSession', {});
    for (let i = 0; i < 5; i++) await execute(c, { session_id: warm.session_id, typed_request: { run_python: { code: 'print(1)' } } });
    await unary(c.sessions, 'DestroySession', { session_id: warm.session_id });

    // 1. CreateSession → READY (the pool refills in the background between creates, as in real use),
    // with the default disk quota (a loop-mounted image per session where the host allows it), and
    // without one on a second system started for it (the baseline of the quota's cost).
    const createMs = await measureCreates(c, 20);
    rows.push(['CreateSession → READY (disk quota: a filesystem per session)', fmt(quantile(createMs, 0.5)), fmt(quantile(createMs, 0.95)), '≤ 150 ms p50', quantile(createMs, 0.5) <= 150 ? 'met' : 'missed']);
    const noQuota = await startSystem(1, { MAX_SESSIONS: '12', VENV_POOL_SIZE: '4', MAX_DISK_PER_SESSION: '0' });
    const bc = connectCoordinator(noQuota.grpcAddr, {}, { token: noQuota.token });
    try {
      // Registered is not yet connected: wait for its task stream (the first create that works), and warm the pool up.
      const until = Date.now() + 30_000;
      for (;;) {
        const first = await unary(bc.sessions, 'CreateSession', {}).catch((err: unknown) => (Date.now() < until ? null : Promise.reject(err)));
        if (first) {
          await unary(bc.sessions, 'DestroySession', { session_id: first.session_id });
          break;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      const bareMs = await measureCreates(bc, 20);
      rows.push(['CreateSession → READY, no disk quota (MAX_DISK_PER_SESSION=0, baseline)', fmt(quantile(bareMs, 0.5)), fmt(quantile(bareMs, 0.95)), '', '']);
    } finally {
      bc.close();
      await noQuota.stop();
    }

    // 2. ExecuteTask print(1) round trip vs a bare python3 spawn, interleaved so both see the same load.
    const session = await unary(c.sessions, 'CreateSession', {});
    const python = realPython();
    // A second baseline: the same kind of interpreter a task runs, a fresh venv's, with no sandbox.
    const venvDir = mkdtempSync(path.join(tmpdir(), 'codegen-bench-venv-'));
    execFileSync(python, ['-m', 'venv', '--without-pip', venvDir]);
    const venvPython = path.join(venvDir, 'bin', 'python');
    const rt: number[] = [];
    const bare: number[] = [];
    const bareVenv: number[] = [];
    for (let i = 0; i < 40; i++) {
      bare.push(await bareSpawn(python));
      bareVenv.push(await bareSpawn(venvPython));
      const t0 = performance.now();
      await execute(c, { session_id: session.session_id, typed_request: { run_python: { code: 'print(1)' } } });
      rt.push(performance.now() - t0);
    }
    const ratio = quantile(rt, 0.5) / quantile(bare, 0.5);
    rows.push([`bare \`${python} -c 'print(1)'\` spawn (baseline)`, fmt(quantile(bare, 0.5)), fmt(quantile(bare, 0.95)), '', '']);
    rows.push(["bare venv python -c 'print(1)' spawn (no sandbox)", fmt(quantile(bareVenv, 0.5)), fmt(quantile(bareVenv, 0.95)), '', '']);
    rmSync(venvDir, { recursive: true, force: true });
    rows.push(['ExecuteTask run_python print(1), gRPC', fmt(quantile(rt, 0.5)), fmt(quantile(rt, 0.95)), `≤ 2× baseline p50 (${ratio.toFixed(2)}×)`, ratio <= 2 ? 'met' : 'missed']);

    // 3. The same over MCP Streamable HTTP, gRPC measured again right beside it.
    const mcp = new Client({ name: 'bench', version: '1' });
    await mcp.connect(new StreamableHTTPClientTransport(new URL(sys.httpUrl), { requestInit: { headers: { Authorization: `Bearer ${sys.token}` } } }));
    const mcpMs: number[] = [];
    const grpcMs: number[] = [];
    for (let i = 0; i < 40; i++) {
      let t0 = performance.now();
      const r = await mcp.callTool({ name: 'run_python', arguments: { session_id: session.session_id, code: 'print(1)' } });
      if (r.isError) throw new Error(JSON.stringify(r.content));
      mcpMs.push(performance.now() - t0);
      t0 = performance.now();
      await execute(c, { session_id: session.session_id, typed_request: { run_python: { code: 'print(1)' } } });
      grpcMs.push(performance.now() - t0);
    }
    await mcp.close();
    const mcpRatio = quantile(mcpMs, 0.5) / quantile(grpcMs, 0.5);
    rows.push(['run_python print(1), MCP over HTTP', fmt(quantile(mcpMs, 0.5)), fmt(quantile(mcpMs, 0.95)), `≤ 1.5× gRPC p50 (${mcpRatio.toFixed(2)}× of ${fmt(quantile(grpcMs, 0.5))})`, mcpRatio <= 1.5 ? 'met' : 'missed']);
    await unary(c.sessions, 'DestroySession', { session_id: session.session_id });

    // 4. Throughput: 20 sessions on 2 workers, every session running its tasks back to back.
    const sessions = await Promise.all(Array.from({ length: 20 }, () => unary(c.sessions, 'CreateSession', {})));
    for (const [label, req, perSession] of [
      ['echo', { echo: { message: 'x' } }, 50],
      ['run_python print(1)', { run_python: { code: 'print(1)' } }, 10],
    ] as const) {
      const t0 = performance.now();
      await Promise.all(
        sessions.map(async (s) => {
          for (let i = 0; i < perSession; i++) await execute(c, { session_id: s.session_id, typed_request: req });
        }),
      );
      const secs = (performance.now() - t0) / 1000;
      const rate = (sessions.length * perSession) / secs;
      rows.push([`tasks/s, 20 sessions on 2 workers: ${label}`, `${rate.toFixed(0)} tasks/s`, '', '≥ 100 tasks/s', rate >= 100 ? 'met' : 'missed']);
    }
    await Promise.all(sessions.map((s) => unary(c.sessions, 'DestroySession', { session_id: s.session_id })));
  } finally {
    c.close();
    await sys.stop();
  }
  rows.push(...(await runCheckpointBench()));
  rows.push(...(await runJupyterBench()));
  printTable(rows);

  // The coordinator's scale figures: synthetic workers over the real protocol, no Python (bench/scale.ts).
  await runScale();
  // What the Stately inspector costs at 10,000 sessions (bench/inspection.ts).
  await runInspectionBench();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
