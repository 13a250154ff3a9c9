import { execFileSync } from 'node:child_process';
import { accessSync, constants, lstatSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * What a sandbox mounts: only what Python needs, never the whole host.
 *
 * - /usr read-only, and the top-level /bin, /sbin, /lib* as the host has them (symlinks into
 *   /usr on a merged-usr Debian, read-only binds otherwise);
 * - the prefix of each trusted interpreter (realpath of `sys.base_prefix` / `sys.base_exec_prefix`)
 *   when it lies outside /usr (pyenv under /root/.pyenv/versions/X, /opt/python...), read-only;
 * - a minimal /etc (dynamic linker, name service, TLS certificates, time zone, Python's and pip's
 *   system configuration; resolv.conf only with the network), read-only, with /etc/ssl/private
 *   emptied;
 * - fresh /dev, /proc and /tmp; the workspace read-write; the view's extras.
 *
 * Not /root, /home, /work, /srv, /opt, /var, /run, the project's checkout or BASE_WORKSPACE: they
 * are simply absent (the root is an empty read-only tmpfs with only the mount points above).
 *
 * Which interpreters are trusted never comes from the workspace (its .venv/pyvenv.cfg and
 * .venv/bin/python are the user's to rewrite): it is the worker's own `python3` (from its PATH)
 * plus what setSandboxPythons() adds (the worker's configured base interpreter). A launched
 * command that lives outside every mounted folder (and outside the workspace) brings its own
 * installation folder (the parent of its bin/, sbin/ or shims/ folder), read-only.
 */

/** Top-level entries that hold the system's programs and libraries (symlinks into /usr on merged-usr). */
const SYSTEM_TOP = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/**
 * The /etc entries a sandbox gets (read-only, each only when present). `network` ones only when the
 * sandbox has the network.
 */
export const ETC_ENTRIES: ReadonlyArray<{ path: string; network?: boolean }> = [
  { path: '/etc/ld.so.cache' },
  { path: '/etc/ld.so.conf' },
  { path: '/etc/ld.so.conf.d' },
  { path: '/etc/alternatives' }, // /usr/bin/* symlinks on Debian point here
  { path: '/etc/nsswitch.conf' },
  { path: '/etc/passwd' },
  { path: '/etc/group' },
  { path: '/etc/hosts' },
  { path: '/etc/host.conf' },
  { path: '/etc/gai.conf' },
  { path: '/etc/services' },
  { path: '/etc/protocols' },
  { path: '/etc/resolv.conf', network: true },
  { path: '/etc/ssl' },
  { path: '/etc/ca-certificates' },
  { path: '/etc/ca-certificates.conf' },
  { path: '/etc/localtime' },
  { path: '/etc/timezone' },
  { path: '/etc/mime.types' },
  { path: '/etc/os-release' },
  { path: '/etc/debian_version' },
  { path: '/etc/pip.conf' },
  { path: '/etc/xdg/pip' },
  { path: '/etc/fonts' },
];

/** Inside /etc entries that stay empty (private keys of the host's TLS certificates). */
const ETC_EMPTY = ['/etc/ssl/private'];

/** Top-level folders never mounted as a whole, even when an interpreter claims one as its prefix. */
const NEVER_WHOLE = new Set(['/', '/root', '/home', '/etc', '/var', '/srv', '/work', '/tmp', '/run', '/proc', '/sys', '/dev', '/mnt', '/media', '/boot']);

const realOrNull = (p: string): string | null => {
  try {
    return realpathSync(p);
  } catch {
    return null;
  }
};

/** True when `p` is `root` or inside it. */
export const isUnder = (p: string, root: string): boolean => p === root || root === '/' || p.startsWith(root.endsWith('/') ? root : root + '/');

/** A regular file this process may execute. */
export function isExecutable(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `name` looked up on the worker's PATH (trusted: the worker's own environment). */
function onWorkerPath(name: string): string | null {
  if (name.includes('/')) return isExecutable(name) ? path.resolve(name) : null;
  for (const dir of (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (!dir || !path.isAbsolute(dir)) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

export interface InterpreterRoot {
  /** The interpreter as given (e.g. python3, /usr/bin/python3). */
  python: string;
  /** Realpaths of its sys.base_prefix and sys.base_exec_prefix (one entry when equal). */
  roots: string[];
  /** Why it is not mounted, when it is not. */
  error?: string;
}

const extraPythons: string[] = [];
let interpreterCache: InterpreterRoot[] | undefined;

/**
 * Interpreters whose prefixes every sandbox mounts, besides `python3` on the worker's PATH (the
 * worker passes its base interpreter: the one venvs are made with and pip runs with).
 */
export function setSandboxPythons(pythons: string[]): void {
  for (const p of pythons) if (p && !extraPythons.includes(p)) extraPythons.push(p);
  interpreterCache = undefined;
}

const PREFIX_QUERY = 'import json, sys; print(json.dumps([sys.base_prefix, sys.base_exec_prefix]))';

/** The mounted prefix(es) of one trusted interpreter: asks it (on the host) for sys.base_prefix. */
function rootsOf(python: string): InterpreterRoot {
  const exe = onWorkerPath(python);
  if (exe === null) return { python, roots: [], error: 'not found on the worker PATH' };
  try {
    const out = execFileSync(exe, ['-I', '-c', PREFIX_QUERY], { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    const prefixes = JSON.parse(out.trim()) as string[];
    const roots: string[] = [];
    for (const p of prefixes) {
      const real = realOrNull(p);
      if (real === null) continue;
      if (NEVER_WHOLE.has(real)) return { python, roots: [], error: `its prefix ${real} is a top-level host folder: not mounted` };
      if (!roots.includes(real)) roots.push(real);
    }
    return { python, roots };
  } catch (err) {
    return { python, roots: [], error: (err as Error).message.split('\n')[0] ?? 'failed' };
  }
}

/** The trusted interpreters and their prefixes (detected once; setSandboxPythons() redoes it). */
export function interpreterRoots(): InterpreterRoot[] {
  interpreterCache ??= ['python3', ...extraPythons].map(rootsOf);
  return interpreterCache;
}

/** Folders mounted read-only as a whole (not /etc entries): /usr, the system's top folders that are real folders, interpreter prefixes. */
export function mountedRoots(): string[] {
  const roots = ['/usr'];
  for (const top of SYSTEM_TOP) {
    try {
      if (lstatSync(`/${top}`).isDirectory()) roots.push(`/${top}`);
    } catch {
      // absent
    }
  }
  for (const i of interpreterRoots()) for (const r of i.roots) if (!roots.some((m) => isUnder(r, m))) roots.push(r);
  return roots;
}

/**
 * The folder a command outside every mounted folder brings with it: the parent of its bin/, sbin/
 * or shims/ folder (its installation: a pyenv root, /opt/tool), else only the file itself.
 * Null when nothing extra is needed.
 */
export function commandRoot(command: string, workspace: string, mounted: string[]): { source: string; dest: string } | null {
  if (!path.isAbsolute(command)) return null;
  const ws = realOrNull(workspace) ?? workspace;
  if (isUnder(command, workspace) || isUnder(command, ws)) return null;
  const real = realOrNull(command);
  if (real === null) return null;
  if (mounted.some((m) => isUnder(real, m)) && mounted.some((m) => isUnder(command, m))) return null;
  const dir = path.dirname(real);
  const top = path.dirname(dir);
  if (['bin', 'sbin', 'shims'].includes(path.basename(dir)) && !NEVER_WHOLE.has(top)) return { source: top, dest: top };
  return { source: real, dest: command };
}

/** bwrap arguments for the system part of the view: /usr, the top-level folders, interpreter prefixes, /etc. */
export function systemMountArgs(allowNetwork: boolean): string[] {
  const args: string[] = ['--ro-bind', '/usr', '/usr'];
  for (const top of SYSTEM_TOP) {
    const p = `/${top}`;
    try {
      const st = lstatSync(p);
      if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(p), p);
      else if (st.isDirectory()) args.push('--ro-bind', p, p);
    } catch {
      // absent
    }
  }
  for (const root of mountedRoots()) {
    if (root === '/usr' || SYSTEM_TOP.some((t) => root === `/${t}`)) continue;
    args.push('--ro-bind', root, root);
  }
  args.push('--perms', '0755', '--dir', '/etc');
  for (const entry of ETC_ENTRIES) {
    if (entry.network && !allowNetwork) continue;
    let st;
    try {
      st = lstatSync(entry.path);
    } catch {
      continue; // absent
    }
    if (st.isSymbolicLink()) {
      const target = readlinkSync(entry.path);
      const real = realOrNull(entry.path);
      if (real === null) continue;
      // A link into /usr (localtime, os-release) stays a link; one elsewhere (resolv.conf into /run) is bound.
      if (isUnder(real, '/usr')) args.push('--symlink', target, entry.path);
      else args.push('--ro-bind-try', real, entry.path);
    } else args.push('--ro-bind-try', entry.path, entry.path);
  }
  for (const empty of ETC_EMPTY) {
    try {
      if (lstatSync(empty).isDirectory()) args.push('--tmpfs', empty);
    } catch {
      // absent
    }
  }
  return args;
}

/** One line for the worker's log: what every sandbox sees. */
export function describeMounts(): string {
  const shown = new Set<string>();
  const interp = interpreterRoots()
    .flatMap((i) => {
      if (i.roots.length === 0) return [`${i.python}: not mounted (${i.error ?? 'no prefix'})`];
      const fresh = i.roots.filter((r) => !shown.has(r));
      fresh.forEach((r) => shown.add(r));
      return fresh.length > 0 ? [`${fresh.join(', ')} (${i.python})`] : [];
    })
    .join('; ');
  const etc = ETC_ENTRIES.filter((e) => {
    try {
      lstatSync(e.path);
      return true;
    } catch {
      return false;
    }
  }).map((e) => path.basename(e.path) + (e.network ? ' (with network only)' : ''));
  return (
    `read-only /usr and ${SYSTEM_TOP.filter((t) => {
      try {
        lstatSync(`/${t}`);
        return true;
      } catch {
        return false;
      }
    })
      .map((t) => `/${t}`)
      .join(' ')}; interpreter prefixes: ${interp || 'none'}; /etc: ${etc.join(' ')} (ssl/private emptied); ` +
    'fresh /dev, /proc, tmpfs /tmp; the workspace read-write; a read-only empty root; nothing else of the host ' +
    '(no home folder but the path to an interpreter prefix inside one, no /var, /srv, /opt, /run, /mnt, project checkout or other workspace)'
  );
}
