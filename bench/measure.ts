/**
 * Small helpers the bench sections share (bench/run.ts runs `main()` on import, so they live here,
 * one copy for all).
 */
import { unary, type CoordinatorClients } from '../src/wire/client.js';
import type { TaskRequest, TaskResponse__Output } from '../src/wire/messages.js';

/** The q-quantile of `xs` (nearest rank, no interpolation). */
export const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

export const fmt = (ms: number) => `${ms.toFixed(1)} ms`;

/** ExecuteTask to its end: the last message, which must be a result (its status may still be a failure). */
export function execute(c: CoordinatorClients, req: TaskRequest): Promise<TaskResponse__Output> {
  return new Promise((resolve, reject) => {
    let last: TaskResponse__Output | undefined;
    const st = c.tasks.ExecuteTask(req);
    st.on('data', (d: TaskResponse__Output) => (last = d));
    st.on('end', () => (last?.payload === 'result' ? resolve(last) : reject(new Error(JSON.stringify(last ?? {})))));
    st.on('error', reject);
  });
}

/** `n` creates one after another, each destroyed before the next (the pool refills in between). */
export async function measureCreates(c: CoordinatorClients, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const s = await unary(c.sessions, 'CreateSession', {});
    out.push(performance.now() - t0);
    await unary(c.sessions, 'DestroySession', { session_id: s.session_id });
    await new Promise((r) => setTimeout(r, 150));
  }
  return out;
}
