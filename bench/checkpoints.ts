/**
 * Checkpoint figures for `make bench`: checkpoint and restore of 100 MB and 1 GB workspaces
 * (seconds per GB), a second checkpoint of the unchanged 1 GB workspace (bytes added, time), and
 * the restore on the other worker. The baseline, in the same run on the same files: `cp -a` of
 * the workspace and `sha256sum` of its files (what any copy with checksums has to do).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connectCoordinator, unary, type CoordinatorClients } from '../src/wire/client.js';
import type { TaskResponse__Output } from '../src/wire/messages.js';
import { startSystem } from './system.js';

const GB = 1024 ** 3;

function execute(c: CoordinatorClients, sessionId: string, code: string): Promise<TaskResponse__Output> {
  return new Promise((resolve, reject) => {
    let last: TaskResponse__Output | undefined;
    const st = c.tasks.ExecuteTask({ session_id: sessionId, typed_request: { run_python: { code, timeout_seconds: 600 } } }, { deadline: Date.now() + 900_000 });
    st.on('data', (d: TaskResponse__Output) => (last = d));
    st.on('end', () => (last?.payload === 'result' && last.result?.status === 'STATUS_SUCCESS' ? resolve(last) : reject(new Error(JSON.stringify(last ?? {})))));
    st.on('error', reject);
  });
}

async function seconds<T>(fn: () => Promise<T>): Promise<{ s: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { s: (performance.now() - t0) / 1000, value };
}

const perGb = (s: number, bytes: number) => `${(s / (bytes / GB)).toFixed(2)} s/GB`;

/** Rows for the bench table: measure, figure, detail, target, met. */
export async function runCheckpointBench(): Promise<string[][]> {
  const rows: string[][] = [];
  const sys = await startSystem(2, { MAX_SESSIONS: '8', VENV_POOL_SIZE: '2', MAX_DISK_PER_SESSION: String(4 * GB) });
  const c = connectCoordinator(sys.grpcAddr, {}, { token: sys.token });
  const scratch = mkdtempSync(path.join(tmpdir(), 'codegen-bench-ckpt-'));
  try {
    for (const [label, files, fileMb] of [
      ['100 MB', 10, 10],
      ['1 GB', 16, 64],
    ] as const) {
      const bytes = files * fileMb * 1024 * 1024;
      const s = await unary(c.sessions, 'CreateSession', { worker_id: 'worker-1' });
      // Incompressible files, as a workspace of data and wheels would be.
      await execute(c, s.session_id, `import os\nos.makedirs('data', exist_ok=True)\nfor i in range(${files}):\n    with open(f'data/f{i}.bin', 'wb') as f:\n        for _ in range(${fileMb}):\n            f.write(os.urandom(1 << 20))`);

      // Baseline: a plain copy of the workspace, and sha256 of its files, by the usual tools.
      const copy = path.join(scratch, `copy-${label.replace(' ', '')}`);
      const cp = await seconds(async () => execFileSync('cp', ['-a', s.workspace_path, copy]));
      const sums = await seconds(async () => execFileSync('sh', ['-c', `sha256sum ${path.join(s.workspace_path, 'data')}/* > /dev/null`]));
      rmSync(copy, { recursive: true, force: true });
      rows.push([`baseline for ${label}: \`cp -a\` of the workspace / \`sha256sum\` of its files`, `${perGb(cp.s, bytes)} / ${perGb(sums.s, bytes)}`, '', '', '']);

      const first = await seconds(() => unary(c.sessions, 'CheckpointSession', { session_id: s.session_id }, { deadlineMs: 900_000 }));
      rows.push([`CheckpointSession, ${label} workspace`, perGb(first.s, bytes), `${first.s.toFixed(2)} s, ${(Number(first.value.size_bytes) / 1e6).toFixed(0)} MB added`, '≤ 1 s/GB', first.s / (bytes / GB) <= 1 ? 'met' : 'missed']);
      if (label === '1 GB') {
        const again = await seconds(() => unary(c.sessions, 'CheckpointSession', { session_id: s.session_id }, { deadlineMs: 900_000 }));
        rows.push(['second CheckpointSession of the unchanged 1 GB workspace', `${again.s.toFixed(2)} s`, `${Number(again.value.size_bytes)} bytes added`, '', '']);
      }
      const restored = await seconds(() => unary(c.sessions, 'RestoreSession', { checkpoint_id: first.value.checkpoint_id, create_new_session: true, worker_id: 'worker-2' }, { deadlineMs: 900_000 }));
      rows.push([`RestoreSession on the other worker (a new session), ${label}`, perGb(restored.s, bytes), `${restored.s.toFixed(2)} s (includes making the session)`, '≤ 1 s/GB', restored.s / (bytes / GB) <= 1 ? 'met' : 'missed']);
      const inPlace = await seconds(() => unary(c.sessions, 'RestoreSession', { checkpoint_id: first.value.checkpoint_id }, { deadlineMs: 900_000 }));
      rows.push([`RestoreSession in place, ${label}`, perGb(inPlace.s, bytes), `${inPlace.s.toFixed(2)} s`, '≤ 1 s/GB', inPlace.s / (bytes / GB) <= 1 ? 'met' : 'missed']);
      await unary(c.sessions, 'DestroySession', { session_id: restored.value.session_id, force: true });
      await unary(c.sessions, 'DestroySession', { session_id: s.session_id, force: true });
      const all = await unary(c.sessions, 'ListCheckpoints', { session_id: '' });
      for (const cp of all.checkpoints ?? []) await unary(c.sessions, 'DeleteCheckpoint', { checkpoint_id: cp.checkpoint_id });
    }
  } finally {
    c.close();
    await sys.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  return rows;
}
