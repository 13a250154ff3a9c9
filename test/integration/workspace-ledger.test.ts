import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WorkspaceLedger } from '../../src/worker/workspace-ledger.js';

let base: string;
beforeEach(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'codegen-ledger-'));
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

const workspace = (id: string) => {
  mkdirSync(path.join(base, id, '.venv'), { recursive: true });
  return path.join(base, id);
};

describe('workspace ledger', () => {
  it("removes at start only the workspaces this worker made and did not release, not another worker's", async () => {
    const mine = new WorkspaceLedger(base, 'worker-a');
    const theirs = new WorkspaceLedger(base, 'worker-b');
    for (const id of ['sess-1', 'sess-2']) {
      await mine.record(id);
      workspace(id);
    }
    await theirs.record('sess-3');
    workspace('sess-3');
    // sess-2 was destroyed normally: its record is gone with it.
    rmSync(path.join(base, 'sess-2'), { recursive: true });
    await mine.forget('sess-2');

    const restarted = new WorkspaceLedger(base, 'worker-a');
    expect(await restarted.sweep()).toEqual(['sess-1']);
    expect(existsSync(path.join(base, 'sess-1'))).toBe(false);
    expect(existsSync(path.join(base, 'sess-3'))).toBe(true);
    expect(await restarted.sweep()).toEqual([]);
  });

  it('sweeps nothing on a first start and ignores names that are not session ids', async () => {
    expect(await new WorkspaceLedger(base, 'worker-a').sweep()).toEqual([]);
    const ledger = new WorkspaceLedger(base, 'worker-a');
    await ledger.record('sess-9');
    mkdirSync(path.join(base, '.owners', 'worker-a', '..bad'), { recursive: true });
    workspace('sess-9');
    expect(await ledger.sweep()).toEqual(['sess-9']);
    expect(existsSync(base)).toBe(true);
  });
});
