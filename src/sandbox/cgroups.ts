import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * One cgroup per session, holding all of its processes (tasks, pip, its warm interpreter), made on
 * first use under the worker's own cgroup: `<own cgroup>/codegen-mcp/<instance>/<session id>`, in
 * every hierarchy that is used (cgroup v2: one; v1: memory, pids, cpu and cpuacct each). `instance`
 * is per worker process (default `w<pid>`), so two workers on one host never share a folder.
 *
 * cgroup v2 is used when a writable cgroup2 hierarchy has the memory and pids controllers and they
 * can be delegated below the worker's cgroup; else each limit takes the v1 hierarchy of its
 * controller when that is mounted and writable; else nothing here (the caller falls back to
 * rlimits). Processes join before they execute anything: the wrapper from joinPrefix() writes
 * its own pid into the session's cgroup.procs files, then execs the sandbox.
 */

export type CgroupKind = 'cgroup-v2' | 'cgroup-v1';
export type Controller = 'memory' | 'pids' | 'cpu' | 'cpuacct';
const CONTROLLERS: Controller[] = ['memory', 'pids', 'cpu', 'cpuacct'];

export interface ControllerPlace {
  kind: CgroupKind;
  /** The worker's own cgroup folder in that hierarchy. */
  base: string;
}

export interface CgroupDetection {
  places: Partial<Record<Controller, ControllerPlace>>;
  /** Why a controller is not used (or how it is), one line each. */
  reasons: Record<Controller, string>;
  /** cgroup v1 memory+swap accounting (memory.memsw.*): the limit then covers swap too. */
  memsw: boolean;
}

const safeWrite = (file: string, value: string): void => writeFileSync(file, value);
const readText = (file: string): string | null => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
};
const writable = (dir: string): boolean => {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
};

interface MountInfo {
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
  readOnly: boolean;
}

function mounts(): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of (readText('/proc/self/mountinfo') ?? '').split('\n')) {
    const parts = line.split(' ');
    const dash = parts.indexOf('-');
    if (dash < 6) continue;
    const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.push({
      root: unescape(parts[3]!),
      mountPoint: unescape(parts[4]!),
      fsType: parts[dash + 1]!,
      superOptions: (parts[dash + 3] ?? '').split(','),
      readOnly: parts[5]!.split(',').includes('ro'),
    });
  }
  return out;
}

/** /proc/self/cgroup: hierarchy controllers ('' for v2) → path. */
function ownCgroups(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of (readText('/proc/self/cgroup') ?? '').split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    out.set(m[2]!, m[3]!);
  }
  return out;
}

const joinCg = (mount: MountInfo, own: string): string => {
  const rel = mount.root === '/' ? own : own.startsWith(mount.root) ? own.slice(mount.root.length) : own;
  return path.join(mount.mountPoint, rel);
};

const PARENT = 'codegen-mcp';
let instance = `w${process.pid}`;
let detection: CgroupDetection | undefined;

/** Name this worker's folder (a worker id; default `w<pid>`). Call before the first session. */
export function setCgroupInstance(name: string): void {
  instance = safeName(name);
}

/** A session id as one safe path component. */
export function safeName(id: string): string {
  if (/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id)) return id;
  return `h-${createHash('sha256').update(id).digest('hex').slice(0, 32)}`;
}

function enableV2Controllers(dir: string, wanted: string[]): string | null {
  const current = (readText(path.join(dir, 'cgroup.subtree_control')) ?? '').trim().split(/\s+/);
  const missing = wanted.filter((c) => !current.includes(c));
  if (missing.length === 0) return null;
  try {
    safeWrite(path.join(dir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EBUSY'
      ? `${dir} holds processes, so its controllers cannot be delegated below it (give the worker a cgroup of its own, e.g. systemd-run --scope -p Delegate=yes)`
      : `cannot enable ${missing.join(', ')} in ${dir}/cgroup.subtree_control (${code ?? (err as Error).message})`;
  }
}

function detectV2(): { place?: ControllerPlace; controllers: string[]; reason: string } {
  const own = ownCgroups().get('');
  const mount = mounts().find((m) => m.fsType === 'cgroup2');
  if (!mount) return { controllers: [], reason: 'no cgroup2 hierarchy is mounted' };
  if (own === undefined) return { controllers: [], reason: 'the worker is in no cgroup2 group' };
  const base = joinCg(mount, own);
  const available = (readText(path.join(base, 'cgroup.controllers')) ?? '').trim().split(/\s+/).filter(Boolean);
  if (!available.includes('memory') || !available.includes('pids')) {
    return { controllers: [], reason: `cgroup2 at ${mount.mountPoint} offers ${available.join(' ') || 'no controller'} here (memory and pids are needed)` };
  }
  if (mount.readOnly || !writable(base)) return { controllers: [], reason: `cgroup2 at ${base} is not writable` };
  const wanted = ['memory', 'pids', ...(available.includes('cpu') ? ['cpu'] : [])];
  let err = enableV2Controllers(base, wanted);
  if (err !== null && err.includes('holds processes')) {
    // "No internal processes": a group with members cannot delegate. When the worker is its group's
    // only member (a container's main process, a service with Delegate=yes), it moves into a leaf
    // of its own, as delegation expects; it never moves other processes.
    const members = (readText(path.join(base, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number);
    if (members.length === 1 && members[0] === process.pid) {
      try {
        const leaf = path.join(base, `${PARENT}-worker`);
        mkdirSync(leaf, { recursive: true });
        safeWrite(path.join(leaf, 'cgroup.procs'), String(process.pid));
        err = enableV2Controllers(base, wanted);
      } catch (e) {
        err = `cannot move the worker into a leaf group of its own (${(e as Error).message})`;
      }
    }
  }
  if (err !== null) return { controllers: [], reason: `cgroup2: ${err}` };
  return { place: { kind: 'cgroup-v2', base }, controllers: wanted, reason: `cgroup2 at ${base}` };
}

/** What this host offers (detected once). Nothing is created here. */
export function detectCgroups(): CgroupDetection {
  if (detection) return detection;
  const reasons = {} as Record<Controller, string>;
  const places: Partial<Record<Controller, ControllerPlace>> = {};
  const v2 = detectV2();
  if (v2.place) {
    for (const c of v2.controllers as Controller[]) {
      places[c] = v2.place;
      reasons[c] = v2.reason;
    }
    places.cpuacct = v2.place; // cpu.stat exists in every v2 group
    reasons.cpuacct = v2.reason;
  }
  const own = ownCgroups();
  const all = mounts();
  let memsw = false;
  for (const c of CONTROLLERS) {
    if (places[c]) continue;
    const mount = all.find((m) => m.fsType === 'cgroup' && m.superOptions.includes(c));
    if (!mount) {
      reasons[c] = `${v2.reason}; no cgroup v1 ${c} hierarchy is mounted`;
      continue;
    }
    const key = [...own.keys()].find((k) => k.split(',').includes(c));
    const base = joinCg(mount, key !== undefined ? own.get(key)! : '/');
    if (!existsSync(base)) {
      reasons[c] = `${v2.reason}; the worker's cgroup ${base} is not visible`;
      continue;
    }
    if (mount.readOnly || !writable(base)) {
      reasons[c] = `${v2.reason}; the cgroup v1 ${c} hierarchy at ${base} is read-only`;
      continue;
    }
    places[c] = { kind: 'cgroup-v1', base };
    reasons[c] = `cgroup v1 ${c} hierarchy at ${base}`;
    if (c === 'memory') memsw = existsSync(path.join(base, 'memory.memsw.limit_in_bytes'));
  }
  detection = { places, reasons, memsw };
  return detection;
}

/** The values a session's cgroup is given; 0 = no limit. */
export interface CgroupLimits {
  memoryBytes: number;
  maxProcesses: number;
  cpuMillicores: number;
}

interface SessionGroup {
  /** Folder per controller (v2: the same one for all). */
  dirs: Partial<Record<Controller, string>>;
  applied: string;
}

const sessions = new Map<string, SessionGroup>();

const sessionDir = (base: string, sessionId: string): string => path.join(base, PARENT, instance, safeName(sessionId));

/** Create one folder and, for v2, delegate the controllers from its parent. */
function makeDir(dir: string, place: ControllerPlace, wanted: string[]): void {
  if (place.kind === 'cgroup-v2') {
    let cur = place.base;
    for (const part of path.relative(place.base, dir).split(path.sep)) {
      const err = enableV2Controllers(cur, wanted);
      if (err !== null) throw new Error(err);
      cur = path.join(cur, part);
      try {
        mkdirSync(cur);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    return;
  }
  // Another worker may remove the shared parent meanwhile: try again a few times.
  for (let attempt = 0; ; attempt++) {
    try {
      mkdirSync(dir, { recursive: true });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw e;
    }
  }
}

const tryWrite = (file: string, value: string): boolean => {
  try {
    safeWrite(file, value);
    return true;
  } catch {
    return false;
  }
};

function applyLimits(g: SessionGroup, limits: CgroupLimits, memsw: boolean): void {
  const d = detectCgroups();
  const mem = g.dirs.memory;
  if (mem) {
    if (d.places.memory!.kind === 'cgroup-v2') {
      safeWrite(path.join(mem, 'memory.max'), limits.memoryBytes > 0 ? String(limits.memoryBytes) : 'max');
      tryWrite(path.join(mem, 'memory.swap.max'), '0'); // swap must not stretch the limit
      tryWrite(path.join(mem, 'memory.oom.group'), '0'); // the kernel kills the biggest task, not the session's warm interpreter with it
    } else {
      const value = limits.memoryBytes > 0 ? String(limits.memoryBytes) : '-1';
      const limitFile = path.join(mem, 'memory.limit_in_bytes');
      const swFile = path.join(mem, 'memory.memsw.limit_in_bytes');
      // memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every step: the order depends on the direction.
      if (!memsw) safeWrite(limitFile, value);
      else if (!tryWrite(limitFile, value) || !tryWrite(swFile, value)) {
        safeWrite(swFile, value);
        safeWrite(limitFile, value);
      }
      tryWrite(path.join(mem, 'memory.swappiness'), '0');
    }
  }
  if (g.dirs.pids) safeWrite(path.join(g.dirs.pids, 'pids.max'), limits.maxProcesses > 0 ? String(limits.maxProcesses) : 'max');
  const cpu = g.dirs.cpu;
  if (cpu) {
    const period = 100_000;
    const quota = limits.cpuMillicores > 0 ? Math.max(1000, Math.round((limits.cpuMillicores * period) / 1000)) : -1;
    if (detectCgroups().places.cpu!.kind === 'cgroup-v2') safeWrite(path.join(cpu, 'cpu.max'), `${quota > 0 ? quota : 'max'} ${period}`);
    else {
      tryWrite(path.join(cpu, 'cpu.cfs_period_us'), String(period));
      safeWrite(path.join(cpu, 'cpu.cfs_quota_us'), String(quota));
    }
  }
}

/**
 * The session's cgroup with these limits (made on first use; limits rewritten when they changed).
 * Returns the cgroup.procs files a process writes its pid to, or [] without cgroups. Throws when a
 * folder cannot be made or a limit cannot be written.
 */
export function ensureSessionCgroup(sessionId: string, limits: CgroupLimits): string[] {
  const d = detectCgroups();
  let g = sessions.get(sessionId);
  if (!g) {
    const dirs: Partial<Record<Controller, string>> = {};
    const wanted = (Object.entries(d.places) as [Controller, ControllerPlace][]).filter(([c, p]) => p.kind === 'cgroup-v2' && c !== 'cpuacct').map(([c]) => c);
    const made = new Set<string>();
    for (const [c, place] of Object.entries(d.places) as [Controller, ControllerPlace][]) {
      const dir = sessionDir(place.base, sessionId);
      if (!made.has(dir)) {
        if (made.size === 0) sweepStale();
        makeDir(dir, place, wanted);
        made.add(dir);
      }
      dirs[c] = dir;
    }
    g = { dirs, applied: '' };
    sessions.set(sessionId, g);
  }
  const key = JSON.stringify(limits);
  if (g.applied !== key) {
    applyLimits(g, limits, d.memsw);
    g.applied = key;
  }
  return [...new Set(Object.values(g.dirs))].map((dir) => path.join(dir, 'cgroup.procs'));
}

/** The script of joinPrefix: writes its own pid to each file given before `--`, then execs the rest. */
const JOIN_SCRIPT =
  'while [ "$1" != -- ]; do echo $$ > "$1" || { echo "codegen-mcp: cannot join the session cgroup ($1)" >&2; exit 125; }; shift; done; shift; exec "$@"';

/** argv prefix that puts the program in the session's cgroup before it runs anything (no fork can escape: the shell joins, then execs). */
export function joinPrefix(procsFiles: string[]): string[] {
  if (procsFiles.length === 0) return [];
  return ['/bin/sh', '-c', JOIN_SCRIPT, 'codegen-mcp-cgroup-join', ...procsFiles, '--'];
}

export interface CgroupCounters {
  oomKills: number;
  pidsMaxHits: number;
  memoryFailures: number;
  cpuUsageNs: number | null;
}

const field = (text: string | null, name: string): number => {
  const m = text === null ? null : new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
};

function cpuUsageNs(g: SessionGroup): number | null {
  const dir = g.dirs.cpuacct;
  if (!dir) return null;
  if (detectCgroups().places.cpuacct!.kind === 'cgroup-v2') {
    const text = readText(path.join(dir, 'cpu.stat'));
    return text === null ? null : field(text, 'usage_usec') * 1000;
  }
  const text = readText(path.join(dir, 'cpuacct.usage'));
  return text === null ? null : Number(text.trim());
}

/** Counters that tell why a task died (compare before and after); null for a session without cgroup. */
export function sessionCounters(sessionId: string): CgroupCounters | null {
  const g = sessions.get(sessionId);
  if (!g) return null;
  const d = detectCgroups();
  let oomKills = 0;
  let memoryFailures = 0;
  if (g.dirs.memory) {
    if (d.places.memory!.kind === 'cgroup-v2') {
      const events = readText(path.join(g.dirs.memory, 'memory.events'));
      oomKills = field(events, 'oom_kill');
      memoryFailures = field(events, 'max');
    } else {
      oomKills = field(readText(path.join(g.dirs.memory, 'memory.oom_control')), 'oom_kill');
      memoryFailures = Number((readText(path.join(g.dirs.memory, 'memory.failcnt')) ?? '0').trim()) || 0;
    }
  }
  const pidsMaxHits = g.dirs.pids ? field(readText(path.join(g.dirs.pids, 'pids.events')), 'max') : 0;
  return { oomKills, pidsMaxHits, memoryFailures, cpuUsageNs: cpuUsageNs(g) };
}

export interface CgroupUsage {
  memoryBytes: number | null;
  memoryPeakBytes: number | null;
  processes: number | null;
  cpuTimeMs: number | null;
}

const num = (file: string | undefined): number | null => {
  if (!file) return null;
  const t = readText(file);
  if (t === null) return null;
  const n = Number(t.trim());
  return Number.isFinite(n) ? n : null;
};

/** A session's usage now; null when it has no cgroup (no task ran yet, or no cgroups here). */
export function cgroupUsage(sessionId: string): CgroupUsage | null {
  const g = sessions.get(sessionId);
  if (!g) return null;
  const d = detectCgroups();
  const v2mem = d.places.memory?.kind === 'cgroup-v2';
  const mem = g.dirs.memory;
  const usage = num(mem && path.join(mem, v2mem ? 'memory.current' : 'memory.usage_in_bytes'));
  const peak = num(mem && path.join(mem, v2mem ? 'memory.peak' : 'memory.max_usage_in_bytes'));
  const ns = cpuUsageNs(g);
  return {
    memoryBytes: usage,
    memoryPeakBytes: peak ?? usage,
    processes: num(g.dirs.pids && path.join(g.dirs.pids, 'pids.current')) ?? (g.dirs.memory ? procsOf(g).length : null),
    cpuTimeMs: ns === null ? null : Math.round(ns / 1e6),
  };
}

function procsOf(g: SessionGroup): number[] {
  const pids = new Set<number>();
  for (const dir of new Set(Object.values(g.dirs))) {
    for (const line of (readText(path.join(dir, 'cgroup.procs')) ?? '').split('\n')) {
      const n = Number(line.trim());
      if (Number.isInteger(n) && n > 0) pids.add(n);
    }
  }
  return [...pids];
}

/** The session's cgroup folders now ([] when it has none). */
export function sessionCgroupDirs(sessionId: string): string[] {
  const g = sessions.get(sessionId);
  return g ? [...new Set(Object.values(g.dirs))] : [];
}

/** The processes in a session's cgroup now (host pids). */
export function sessionPids(sessionId: string): number[] {
  const g = sessions.get(sessionId);
  return g ? procsOf(g) : [];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function removeDirs(g: SessionGroup): boolean {
  let ok = true;
  for (const dir of new Set(Object.values(g.dirs))) {
    try {
      rmdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') ok = false;
    }
    // The worker's and the shared parent go when empty (another session or worker may still use them).
    for (const parent of [path.dirname(dir), path.dirname(path.dirname(dir))]) {
      try {
        rmdirSync(parent);
      } catch {
        // not empty, or gone
      }
    }
  }
  return ok;
}

/** Kill every process of the session's cgroup, then remove it. Resolves false when a folder could not be removed within 5 s. */
export async function releaseSessionCgroup(sessionId: string): Promise<boolean> {
  const g = sessions.get(sessionId);
  if (!g) return true;
  sessions.delete(sessionId);
  const deadline = Date.now() + 5000;
  for (;;) {
    const pids = procsOf(g);
    if (pids.length === 0) break;
    const v2 = Object.values(g.dirs).find((dir) => existsSync(path.join(dir, 'cgroup.kill')));
    if (v2) tryWrite(path.join(v2, 'cgroup.kill'), '1');
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    if (Date.now() > deadline) break;
    await sleep(20);
  }
  for (;;) {
    if (removeDirs(g)) return true;
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
}

/** Every session cgroup this process made (worker stop). */
export async function releaseAllSessionCgroups(): Promise<void> {
  await Promise.all([...sessions.keys()].map((id) => releaseSessionCgroup(id)));
}

/** Session ids with a cgroup now. */
export const cgroupSessions = (): string[] => [...sessions.keys()];

/** Empty folders left by workers of this host that died (`w<pid>` with no such process): removed, never their processes. */
function sweepStale(): void {
  for (const place of new Set(Object.values(detectCgroups().places).map((p) => p.base))) {
    const parent = path.join(place, PARENT);
    let entries: string[];
    try {
      entries = readdirSync(parent);
    } catch {
      continue;
    }
    for (const name of entries) {
      const m = /^w(\d+)$/.exec(name);
      if (!m || name === instance) continue;
      try {
        process.kill(Number(m[1]), 0);
        continue; // alive
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EPERM') continue;
      }
      const dir = path.join(parent, name);
      try {
        for (const child of readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) rmdirSync(path.join(dir, child.name));
        rmdirSync(dir);
      } catch {
        // still used by a process: left alone
      }
    }
  }
}

// A worker that exits without releasing its sessions leaves no empty folder behind it (best effort:
// processes still inside keep theirs, and the next worker's sweep takes them when they are empty).
process.once('exit', () => {
  for (const g of sessions.values()) {
    for (const pid of procsOf(g)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    removeDirs(g);
  }
});
