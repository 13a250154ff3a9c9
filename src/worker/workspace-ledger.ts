import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isSafeId } from '../domain/ids.js';
import { removeWorkspace } from './workspace.js';

/**
 * Which sessions' workspaces this worker made, kept beside them (BASE_WORKSPACE/.owners/<worker>/,
 * hidden from sandboxes like the rest of BASE_WORKSPACE). A worker that starts again has lost its
 * sessions — the coordinator failed them when the old process went — so it removes their
 * workspaces instead of leaking them. Other workers sharing the folder (scaled replicas) keep theirs.
 */
export class WorkspaceLedger {
  private readonly dir: string;

  constructor(
    private readonly base: string,
    workerId: string,
  ) {
    this.dir = path.join(base, '.owners', workerId);
  }

  async record(sessionId: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await writeFile(path.join(this.dir, sessionId), '');
  }

  async forget(sessionId: string): Promise<void> {
    await rm(path.join(this.dir, sessionId), { force: true, recursive: true });
  }

  /** Removes the workspaces of every session recorded by an earlier run; returns their ids. */
  async sweep(): Promise<string[]> {
    const ids = await readdir(this.dir).catch(() => [] as string[]);
    const swept: string[] = [];
    for (const id of ids) {
      if (isSafeId(id)) {
        await removeWorkspace(this.base, id).catch(() => undefined);
        swept.push(id);
      }
      await this.forget(id);
    }
    return swept;
  }
}
