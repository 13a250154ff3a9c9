import { randomBytes } from 'node:crypto';
import { chmod, cp, lstat, mkdir, readdir, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CodegenError } from '../domain/errors.js';
import { launch } from '../sandbox/launch.js';
import { checkVenv, readBaseFacts, runInVenv, writeVenv, type BaseFacts } from './venv-layout.js';

/**
 * A session's virtual environment. Written straight in its layout (venv-layout.ts: about a
 * millisecond) once the first one written so has been checked to work; where it does not (another
 * platform), `python -m venv --without-pip` (about 0.1 s) into a pool of ready ones, so a session
 * gets its venv by a rename. pip comes from the base interpreter (`python -m pip --python
 * <venv>/bin/python`).
 */

const VENV_TIMEOUT_MS = 60_000;
const basePythons = new Map<string, Promise<string>>();

/** The worker's own environment, for running the interpreter the operator configured (pyenv shims need it). */
function workerEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  env.PATH ??= '/usr/local/bin:/usr/bin:/bin';
  return env;
}

/**
 * The real interpreter behind `python` (default `python3`, looked up on the
 * worker's PATH): `sys._base_executable`, so shims (pyenv) and venvs resolve to
 * the binary itself. Detected once per name. This is trusted: it never runs
 * anything from a workspace.
 */
export function resolveBasePython(python = 'python3'): Promise<string> {
  let found = basePythons.get(python);
  if (!found) {
    found = (async () => {
      const result = await launch({
        command: python,
        args: ['-c', 'import sys; print(getattr(sys, "_base_executable", None) or sys.executable)'],
        cwd: os.tmpdir(),
        env: workerEnv(),
        timeoutMs: 30_000,
        maxOutputBytes: 64 * 1024,
      });
      const exe = result.stdout.trim();
      if (result.exitCode !== 0 || !path.isAbsolute(exe)) {
        throw new CodegenError('INTERNAL', `cannot find the base interpreter of ${python}: ${result.stderr.trim() || `exit ${result.exitCode}`}`);
      }
      return exe;
    })();
    found.catch(() => basePythons.delete(python));
    basePythons.set(python, found);
  }
  return found;
}

const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The `pip` a venv made --without-pip gets: the base interpreter's pip, aimed at the venv's python next to it. */
export function pipShim(basePython: string): string {
  return [
    '#!/bin/sh',
    '# pip for this venv (made --without-pip): the base interpreter\'s pip, installing into the python beside this file.',
    'here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)',
    `exec ${shQuote(basePython)} -m pip --python "$here/python" "$@"`,
    '',
  ].join('\n');
}

/** `python -m venv --without-pip dir` with the base interpreter. */
async function makeVenv(basePython: string, dir: string): Promise<void> {
  const result = await launch({
    command: basePython,
    args: ['-m', 'venv', '--without-pip', dir],
    cwd: path.dirname(dir),
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', HOME: path.dirname(dir) },
    timeoutMs: VENV_TIMEOUT_MS,
    maxOutputBytes: 64 * 1024,
  });
  if (result.exitCode !== 0) {
    await rm(dir, { recursive: true, force: true });
    throw new CodegenError('INTERNAL', `python -m venv failed for ${dir}: ${(result.stderr || result.stdout).trim() || `exit ${result.exitCode}`}`);
  }
}

async function writeShims(bin: string, basePython: string): Promise<void> {
  for (const name of ['pip', 'pip3']) {
    await writeFile(path.join(bin, name), pipShim(basePython));
    await chmod(path.join(bin, name), 0o755);
  }
}

/** A moved venv: point its activate scripts at the new place, add the pip shim, and check sys.prefix. */
async function settleVenv(basePython: string, from: string | null, dir: string): Promise<void> {
  const bin = path.join(dir, 'bin');
  if (from !== null && from !== dir) {
    for (const name of ['activate', 'activate.csh', 'activate.fish', 'Activate.ps1']) {
      const file = path.join(bin, name);
      const text = await readFile(file, 'utf8').catch(() => null);
      if (text !== null && text.includes(from)) await writeFile(file, text.split(from).join(dir));
    }
  }
  await writeShims(bin, basePython);
  const result = await runInVenv(dir, 'import sys; print(sys.prefix)');
  const prefix = result.stdout.trim();
  const real = await realpath(dir);
  if (result.exitCode !== 0 || (prefix !== dir && prefix !== real)) {
    throw new CodegenError('INTERNAL', `venv at ${dir} is broken: sys.prefix is ${JSON.stringify(prefix)} (${result.stderr.trim() || `exit ${result.exitCode}`})`);
  }
}

export interface VenvPoolOptions {
  /** Folder of the ready venvs: BASE_WORKSPACE/.pool (the same filesystem as the workspaces, so take() is a rename). */
  root: string;
  /** How many ready venvs to keep. */
  size: number;
  /** Interpreter to build venvs with; default `python3` from the worker's PATH. */
  python?: string;
  /** Refill failures (the pool keeps trying on the next take). */
  onError?: (err: unknown) => void;
  /** 'direct' (default): write each venv in its layout, falling back to 'venv' where that does not work; 'venv': `python -m venv` into the pool. */
  layout?: 'direct' | 'venv';
}

export class VenvPool {
  private readonly root: string;
  private readonly size: number;
  private readonly python: string;
  private readonly onError: (err: unknown) => void;
  private readonly readyDirs: string[] = [];
  private running = false;
  private refilling: Promise<void> | null = null;
  private cleared: Promise<void> | null = null;
  private readonly layout: 'direct' | 'venv';
  /** The base interpreter's facts once a venv written in its layout was checked to work; null: use `python -m venv`. */
  private directFacts: Promise<BaseFacts | null> | null = null;

  constructor(opts: VenvPoolOptions) {
    this.root = path.resolve(opts.root);
    this.size = Math.max(0, Math.floor(opts.size));
    this.python = opts.python ?? 'python3';
    this.onError = opts.onError ?? (() => {});
    this.layout = opts.layout ?? 'direct';
  }

  /** How venvs are made here: 'direct' (written in their layout) or 'venv' (`python -m venv`, pooled). */
  async mode(): Promise<'direct' | 'venv'> {
    return (await this.direct()) ? 'direct' : 'venv';
  }

  private direct(): Promise<BaseFacts | null> {
    this.directFacts ??= (async () => {
      if (this.layout !== 'direct') return null;
      try {
        const facts = await readBaseFacts(await resolveBasePython(this.python));
        if (!facts) return null;
        await this.cleared;
        await mkdir(this.root, { recursive: true });
        const probe = path.join(this.root, `probe-${randomBytes(6).toString('hex')}`);
        try {
          await writeVenv(probe, facts);
          await checkVenv(probe, facts);
        } finally {
          await rm(probe, { recursive: true, force: true });
        }
        return facts;
      } catch (err) {
        this.onError(err);
        return null;
      }
    })();
    return this.directFacts;
  }

  /** Ready venvs waiting in the pool. */
  get ready(): number {
    return this.readyDirs.length;
  }

  /** Clear what an earlier run left in the pool folder and start filling it, one venv at a time. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.cleared ??= this.clearRoot();
    this.refill();
  }

  /** Move a venv into `targetVenvDir` (which must not exist yet): from the pool, or made on the spot when it is empty. */
  async take(targetVenvDir: string): Promise<void> {
    const target = path.resolve(targetVenvDir);
    if (await lstat(target).then(() => true, () => false)) {
      throw new CodegenError('FAILED_PRECONDITION', `cannot put a venv at ${target}: something is already there`);
    }
    const basePython = await resolveBasePython(this.python);
    await mkdir(path.dirname(target), { recursive: true });
    const facts = await this.direct();
    if (facts) {
      try {
        await writeVenv(target, facts);
        await writeShims(path.join(target, 'bin'), basePython);
      } catch (err) {
        await rm(target, { recursive: true, force: true }).catch(() => {});
        throw err;
      }
      return;
    }
    let from: string | null = null;
    const candidate = this.readyDirs.shift();
    if (candidate !== undefined) {
      try {
        await rename(candidate, target);
        from = candidate;
      } catch (err) {
        // EXDEV: the workspace is another filesystem (its disk quota): copy the ready venv over (a few ms).
        if ((err as NodeJS.ErrnoException).code === 'EXDEV') {
          from = await cp(candidate, target, { recursive: true, verbatimSymlinks: true }).then(
            () => candidate,
            async () => (await rm(target, { recursive: true, force: true }).catch(() => {}), null),
          );
        } else this.onError(err);
        await rm(candidate, { recursive: true, force: true }).catch(() => {});
      }
    }
    if (from === null) {
      await makeVenv(basePython, target);
      from = target;
    }
    this.refill();
    try {
      await settleVenv(basePython, from, target);
    } catch (err) {
      await rm(target, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }

  /** Stop refilling, wait for the venv being made, remove the ready ones. */
  async stop(): Promise<void> {
    this.running = false;
    await this.refilling;
    const dirs = this.readyDirs.splice(0);
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }).catch(() => {})));
  }

  private async clearRoot(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    for (const name of await readdir(this.root)) {
      await rm(path.join(this.root, name), { recursive: true, force: true });
    }
  }

  private refill(): void {
    if (!this.running || this.refilling) return;
    if (this.readyDirs.length >= this.size) return;
    this.refilling = (async () => {
      try {
        await this.cleared;
        if (await this.direct()) return; // nothing to keep ready: a venv takes a millisecond
        const basePython = await resolveBasePython(this.python);
        while (this.running && this.readyDirs.length < this.size) {
          const dir = path.join(this.root, `venv-${randomBytes(6).toString('hex')}`);
          await makeVenv(basePython, dir);
          if (this.running) this.readyDirs.push(dir);
          else await rm(dir, { recursive: true, force: true });
        }
      } catch (err) {
        this.onError(err);
      } finally {
        this.refilling = null;
      }
    })();
  }
}
