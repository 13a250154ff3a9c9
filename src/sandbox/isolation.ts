import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, lstatSync, realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { commandRoot, isUnder, mountedRoots, systemMountArgs } from './mounts.js';

/** How launch() confines programs that come with a `sandbox` spec. */
export type Isolation = 'bwrap' | 'process';

/** What the sandbox shows a program and what it may do. */
export interface SandboxView {
  /** The session workspace: bound read-write at its own path. */
  workspace: string;
  /**
   * Folders covered by an empty tmpfs before the workspace is bound (BASE_WORKSPACE, checkpoints...).
   * Only those inside a mounted folder need it: the sandbox mounts no more than Python needs, so
   * the others are absent anyway (a no-op for them).
   */
  hide: string[];
  /** Extra host paths bound read-only after `hide` (e.g. a pip find-links folder under /tmp). */
  readOnly?: string[];
  /** Extra host folders bound read-write at their own path, after the workspace (a warm interpreter's control folder). */
  readWrite?: string[];
  allowNetwork: boolean;
}

const bwrapCandidates = ['/usr/bin/bwrap', '/bin/bwrap', '/usr/local/bin/bwrap'];

function findBwrap(): string | null {
  for (const candidate of bwrapCandidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return null;
}

const realOrSelf = (p: string): string => {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
};

/**
 * How bwrap gets its namespaces. 'userns': `--unshare-all`, with a user namespace (the normal
 * case). 'root': inside a container Docker masks parts of /proc, so a user namespace cannot mount
 * a fresh /proc; as root bwrap can make the other namespaces without one. Capabilities are
 * dropped either way, so root in the sandbox cannot remount what hides other sessions.
 */
export type NamespaceProfile = 'userns' | 'root';
let profile: NamespaceProfile = 'userns';

function namespaceArgs(allowNetwork: boolean, p: NamespaceProfile): string[] {
  if (p === 'userns') return allowNetwork ? ['--unshare-all', '--share-net'] : ['--unshare-all'];
  const args = ['--unshare-ipc', '--unshare-pid', '--unshare-uts', '--unshare-cgroup-try'];
  if (!allowNetwork) args.push('--unshare-net');
  return args;
}

/**
 * The fixed part of every sandbox: no namespaces shared, no capabilities, and only what Python
 * needs of the system (see mounts.ts): /usr, the interpreters' prefixes, a minimal /etc, fresh
 * /dev, /proc and /tmp. The root itself is an empty tmpfs, made read-only at the end (bwrapArgs).
 */
function baseArgs(allowNetwork: boolean, p: NamespaceProfile = profile): string[] {
  const args = namespaceArgs(allowNetwork, p);
  args.push(
    '--die-with-parent', // the sandbox dies when its monitor (our child) dies
    '--new-session', // no TIOCSTI into a terminal we might hold
    '--cap-drop', 'ALL', // root in the sandbox must not be able to remount or unmount what hides other sessions
    '--dev', '/dev',
    '--proc', '/proc',
    '--tmpfs', '/tmp', // first: an interpreter prefix or an extra under /tmp is bound over it, not hidden by it
    ...systemMountArgs(allowNetwork),
  );
  return args;
}

/** Credential folders and files of the worker's user (and root's) that user code must not read. */
const secretDirs = ['.ssh', '.gnupg', '.aws', '.azure', '.kube', '.docker', '.config/gcloud', '.config/gh', '.config/pip', '.config/git'];
const secretFiles = ['.netrc', '.git-credentials', '.pypirc', '.npmrc', '.bash_history', '.gitconfig', '.pip/pip.conf'];
const systemSecretFiles = ['/etc/shadow', '/etc/gshadow'];

/**
 * Credentials of the worker's user (and root's) inside a mounted folder are covered with an empty
 * tmpfs (folders) or /dev/null (files). Homes are not mounted at all, so this matters only when a
 * mounted folder (an interpreter's prefix, a read-only extra) holds one of them. A path that holds
 * the workspace or another bound folder stays; only paths under `mounted` are considered (the
 * others are absent from the sandbox anyway).
 */
export function secretArgs(keep: string[], homes: string[] = [os.homedir(), '/root'], mounted?: string[]): string[] {
  const args: string[] = [];
  const holdsKept = (p: string) => keep.some((k) => k === p || k.startsWith(p + path.sep));
  const seen = new Set<string>();
  const add = (p: string, isDir: boolean) => {
    const real = realOrSelf(p);
    if (seen.has(real) || holdsKept(real)) return;
    if (mounted && !mounted.some((m) => isUnder(real, m))) return;
    try {
      const st = lstatSync(real);
      if (isDir ? !st.isDirectory() : !st.isFile()) return;
    } catch {
      return; // absent
    }
    seen.add(real);
    if (isDir) args.push('--tmpfs', real);
    else args.push('--ro-bind', '/dev/null', real);
  };
  for (const home of new Set(homes.filter((h) => h && path.isAbsolute(h)))) {
    for (const d of secretDirs) add(path.join(home, d), true);
    for (const f of secretFiles) add(path.join(home, f), false);
  }
  for (const f of systemSecretFiles) add(f, false);
  return args;
}

export interface BwrapOptions {
  /** The command the sandbox runs (an absolute path): one outside every mounted folder brings its installation folder. */
  command?: string;
  /** The fd number (in the sandbox's bwrap process) that holds the seccomp BPF program: `--seccomp N`. */
  seccompFd?: number;
}

/**
 * bwrap's arguments up to (and including) the `--` before the command: the system view (see
 * baseArgs), the hidden folders emptied (only those inside a mounted folder: the rest is absent),
 * the read-only extras, the workspace read-write, the read-write extras, a read-only root, and
 * the working directory set.
 */
export function bwrapArgs(view: SandboxView, cwd: string, opts: BwrapOptions = {}): string[] {
  const args = baseArgs(view.allowNetwork);
  const mounted = [...mountedRoots()];
  const workspace = realOrSelf(view.workspace);
  const extra = opts.command ? commandRoot(opts.command, view.workspace, mounted) : null;
  if (extra !== null) {
    args.push('--ro-bind', extra.source, extra.dest);
    mounted.push(extra.source);
  }
  const readOnly = (view.readOnly ?? []).filter((ro) => ro && path.isAbsolute(ro) && existsSync(ro)).map(realOrSelf);
  for (const hidden of view.hide) {
    if (!hidden || !path.isAbsolute(hidden) || !existsSync(hidden)) continue;
    const real = realOrSelf(hidden);
    if (mounted.some((m) => isUnder(real, m))) args.push('--tmpfs', real);
  }
  args.push(...secretArgs([workspace, ...readOnly, ...(view.readWrite ?? [])].map(realOrSelf), undefined, [...mounted, ...readOnly]));
  for (const real of readOnly) args.push('--ro-bind', real, real);
  args.push('--bind', workspace, workspace);
  for (const rw of view.readWrite ?? []) {
    if (!rw || !path.isAbsolute(rw) || !existsSync(rw)) continue;
    const real = realOrSelf(rw);
    args.push('--bind', real, real);
  }
  // The mount points made above live on the root tmpfs: nothing more may be written there.
  args.push('--remount-ro', '/');
  if (opts.seccompFd !== undefined) args.push('--seccomp', String(opts.seccompFd));
  args.push('--chdir', realOrSelf(cwd));
  args.push('--');
  return args;
}

export interface BwrapProbe { ok: boolean; path: string | null; reason: string; profile: NamespaceProfile }

/** Which namespace profile the probe found working ('userns' until a probe says otherwise). */
export const namespaceProfile = (): NamespaceProfile => profile;

/** Use this profile from now on (tests of both profiles; the probe sets it otherwise). */
export function setNamespaceProfile(p: NamespaceProfile): void {
  profile = p;
}

/**
 * Run `bwrap ... /bin/true` with the flags launch() uses; ok when it exits 0. Tries the user
 * namespace profile first and, as root, the 'root' profile when that fails (inside Docker).
 */
export async function probeBwrap(): Promise<BwrapProbe> {
  const bwrap = findBwrap();
  if (bwrap === null) return { ok: false, path: null, reason: 'bwrap is not installed (Debian package: bubblewrap)', profile };
  const first = await tryProfile(bwrap, 'userns');
  if (first.ok || process.getuid?.() !== 0) return first;
  const second = await tryProfile(bwrap, 'root');
  return second.ok ? second : { ...first, reason: `${first.reason}; without a user namespace: ${second.reason}` };
}

function tryProfile(bwrap: string, p: NamespaceProfile): Promise<BwrapProbe> {
  const truePath = existsSync('/bin/true') ? '/bin/true' : '/usr/bin/true';
  return new Promise((resolve) => {
    let stderr = '';
    const child = spawn(bwrap, [...baseArgs(false, p), '--', truePath], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: '/usr/bin:/bin' } });
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 4096) stderr += chunk.toString('utf8');
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, path: bwrap, reason: err.message, profile: p });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) {
        profile = p;
        resolve({ ok: true, path: bwrap, reason: '', profile: p });
      } else resolve({ ok: false, path: bwrap, reason: stderr.trim() || `bwrap exited with ${code ?? signal}`, profile: p });
    });
  });
}
