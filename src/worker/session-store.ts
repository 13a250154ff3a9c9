import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { CodegenError } from '../domain/errors.js';
import { isSafeId } from '../domain/ids.js';
import { StoredSessionConfig } from '../domain/session-schemas.js';

/**
 * Each session's description, kept beside the workspaces in BASE_WORKSPACE/.sessions/<id>.json
 * (not inside the workspace: user code can write there; BASE_WORKSPACE itself is hidden from
 * sandboxes). A worker that starts again on the same BASE_WORKSPACE reads these to adopt its
 * sessions. `.sessions` can never be a session's folder: a session id starts with a letter or digit.
 *
 * Files in the folder:
 *   <id>.json              one session (written atomically: temp file, fsync, rename, fsync dir)
 *   <id>.json.tmp-<hex>    a write in progress, or the leftover of a writer that died mid-write
 *   <id>.lock              the session's lock file (SessionLocks); this store never creates or
 *                          deletes it: unlinking a lock file is safe only for the process holding
 *                          its flock, so removal goes through SessionLocks.unlock(id, { removeFile: true }).
 */

const idSchema = (what: string) => z.string().refine(isSafeId, { error: `${what} is not a safe id (letters, digits, '.', '_', '-'; no '..'; at most 128)` });
const ms = z.number().int().nonnegative();

export const StoredSession = z.object({
  version: z.literal(1),
  sessionId: idSchema('sessionId'),
  workspaceId: idSchema('workspaceId'),
  userId: z.string(),
  /** Absent in descriptions written before tenants: the default tenant's. */
  tenant: z.string().default(''),
  config: StoredSessionConfig,
  metadata: z.record(z.string(), z.string()),
  metadataVersion: z.number().int().nonnegative(),
  createdAtMs: ms,
  lastActivityMs: ms,
  restartedAtMs: ms,
  survivalNote: z.string(),
  idleTimeoutMs: ms,
});
export type StoredSession = z.infer<typeof StoredSession>;

export interface StoreProblem {
  /** The file's name inside the sessions folder. */
  file: string;
  problem: string;
}

export interface StoreListing {
  /** Every well-formed description, sorted by session id. */
  sessions: StoredSession[];
  /** Files that are not a well-formed description (left on disk for a person to look at). */
  problems: StoreProblem[];
  /**
   * Ids with a lock file but no description: a session being created or destroyed right now, or
   * the leftover of a crash between the two steps. Whoever wants to clean one up takes its lock,
   * reads again, and removes the lock file only if there is still no description.
   */
  strayLocks: string[];
}

/** A description larger than this is refused on write and reported on read (env and metadata are small). */
export const MAX_SESSION_FILE_BYTES = 4 * 1024 * 1024;
/** A temp file older than this belongs to a writer that died (a write takes milliseconds): list() removes it. */
export const STALE_TEMP_MS = 60_000;

const JSON_SUFFIX = '.json';
const LOCK_SUFFIX = '.lock';
const TEMP_PATTERN = /\.json\.tmp-[0-9a-f]{16}$/;
const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

/** The sessions folder of a BASE_WORKSPACE (also the `dir` of SessionLocks). */
export const sessionsDirOf = (baseWorkspace: string): string => path.join(path.resolve(baseWorkspace), '.sessions');

const checkId = (sessionId: string): void => {
  if (typeof sessionId !== 'string' || !isSafeId(sessionId)) {
    throw new CodegenError('INVALID_ARGUMENT', `session_id ${JSON.stringify(sessionId)} is not a valid session id`);
  }
};

const describeIssues = (err: z.ZodError): string =>
  err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');

type Parsed = { ok: true; session: StoredSession } | { ok: false; problem: string } | { ok: false; missing: true };

export class SessionStore {
  /** BASE_WORKSPACE/.sessions */
  readonly dir: string;

  constructor(baseWorkspace: string) {
    this.dir = sessionsDirOf(baseWorkspace);
  }

  private fileOf(sessionId: string): string {
    checkId(sessionId);
    return path.join(this.dir, sessionId + JSON_SUFFIX);
  }

  private async ensureDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Make the folder's entries (a rename, an unlink) durable. */
  private async syncDir(): Promise<void> {
    const handle = await open(this.dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /**
   * Replace the session's description atomically: readers see the old file or the new one,
   * never a torn one, whatever happens to this process mid-write. Refuses (INVALID_ARGUMENT,
   * naming the field) a description that list() would not accept back.
   */
  async write(session: StoredSession): Promise<void> {
    const checked = StoredSession.safeParse(session);
    if (!checked.success) {
      const id = (session as { sessionId?: unknown } | undefined)?.sessionId;
      throw new CodegenError('INVALID_ARGUMENT', `session ${JSON.stringify(id)}: ${describeIssues(checked.error)}`);
    }
    const file = this.fileOf(checked.data.sessionId);
    const body = JSON.stringify(checked.data, null, 2) + '\n';
    if (Buffer.byteLength(body) > MAX_SESSION_FILE_BYTES) {
      throw new CodegenError('INVALID_ARGUMENT', `session ${checked.data.sessionId}: its description is ${Buffer.byteLength(body)} bytes, more than ${MAX_SESSION_FILE_BYTES}`);
    }
    await this.ensureDir();
    const temp = `${file}.tmp-${randomBytes(8).toString('hex')}`;
    try {
      // 0600: env_vars may hold secrets.
      const handle = await open(temp, 'wx', 0o600);
      try {
        await handle.writeFile(body, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, file);
    } catch (err) {
      await rm(temp, { force: true }).catch(() => undefined);
      throw new CodegenError('INTERNAL', `session ${checked.data.sessionId}: could not write ${file}: ${(err as Error).message}`, { cause: err });
    }
    await this.syncDir();
  }

  /** The session's description; undefined when there is none. A malformed file is an INTERNAL error naming it. */
  async read(sessionId: string): Promise<StoredSession | undefined> {
    const file = this.fileOf(sessionId);
    const parsed = await this.parseFile(file, sessionId);
    if (parsed.ok) return parsed.session;
    if ('missing' in parsed) return undefined;
    throw new CodegenError('INTERNAL', `session file ${file}: ${parsed.problem}`);
  }

  /** Remove the session's description; idempotent. Its lock file stays (see the module comment). */
  async remove(sessionId: string): Promise<void> {
    const file = this.fileOf(sessionId);
    try {
      await rm(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new CodegenError('INTERNAL', `session ${sessionId}: could not remove ${file}: ${(err as Error).message}`, { cause: err });
    }
    await this.syncDir();
  }

  /**
   * Every description in the folder. Never throws for a bad file and never deletes one: malformed,
   * unsafe or unexpected entries are reported in `problems`. Temp files are skipped; those older
   * than STALE_TEMP_MS are removed (their writer died: a live write renames within milliseconds,
   * and a writer stalled that long just gets an error from its rename).
   */
  async list(): Promise<StoreListing> {
    const listing: StoreListing = { sessions: [], problems: [], strayLocks: [] };
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return listing;
      throw new CodegenError('INTERNAL', `sessions folder ${this.dir} cannot be read: ${(err as Error).message}`, { cause: err });
    }
    const described = new Set<string>();
    const locked: string[] = [];
    for (const name of names.sort()) {
      if (TEMP_PATTERN.test(name)) {
        await this.dropIfStale(path.join(this.dir, name));
      } else if (name.endsWith(JSON_SUFFIX)) {
        const id = name.slice(0, -JSON_SUFFIX.length);
        if (!isSafeId(id)) {
          listing.problems.push({ file: name, problem: `${JSON.stringify(id)} is not a valid session id` });
          continue;
        }
        const parsed = await this.parseFile(path.join(this.dir, name), id);
        if (parsed.ok) {
          listing.sessions.push(parsed.session);
          described.add(id);
        } else if ('problem' in parsed) {
          listing.problems.push({ file: name, problem: parsed.problem });
          described.add(id); // a description exists, even if unreadable: its lock is not stray
        }
        // missing: removed meanwhile by its owner, nothing to say
      } else if (name.endsWith(LOCK_SUFFIX)) {
        const id = name.slice(0, -LOCK_SUFFIX.length);
        if (isSafeId(id)) locked.push(id);
        else listing.problems.push({ file: name, problem: `${JSON.stringify(id)} is not a valid session id` });
      } else {
        listing.problems.push({ file: name, problem: 'is not a session description, a lock file or a temp file' });
      }
    }
    listing.strayLocks = locked.filter((id) => !described.has(id));
    return listing;
  }

  private async dropIfStale(file: string): Promise<void> {
    try {
      const info = await stat(file);
      if (Date.now() - info.mtimeMs > STALE_TEMP_MS) await rm(file, { force: true });
    } catch {
      // gone meanwhile (renamed by its writer): fine
    }
  }

  /** Open without following symlinks, check it is a small regular file, parse and validate it. */
  private async parseFile(file: string, expectedId: string): Promise<Parsed> {
    let text: string;
    try {
      const handle = await open(file, READ_FLAGS);
      try {
        const info = await handle.stat();
        if (!info.isFile()) return { ok: false, problem: 'is not a regular file' };
        if (info.size > MAX_SESSION_FILE_BYTES) return { ok: false, problem: `is ${info.size} bytes, more than ${MAX_SESSION_FILE_BYTES}` };
        text = await handle.readFile('utf8');
      } finally {
        await handle.close();
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { ok: false, missing: true };
      if (code === 'ELOOP') return { ok: false, problem: 'is a symbolic link' };
      return { ok: false, problem: `cannot be read: ${(err as Error).message}` };
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      return { ok: false, problem: `is not valid JSON: ${(err as Error).message}` };
    }
    const checked = StoredSession.safeParse(json);
    if (!checked.success) return { ok: false, problem: `is not a session description: ${describeIssues(checked.error)}` };
    if (checked.data.sessionId !== expectedId) {
      return { ok: false, problem: `describes session ${JSON.stringify(checked.data.sessionId)}, not ${JSON.stringify(expectedId)}` };
    }
    return { ok: true, session: checked.data };
  }
}
