import { readFileSync, readdirSync } from 'node:fs';

/**
 * Killing a launched program and everything it started.
 *
 * Programs are spawned detached, so each leads its own process group and
 * `process.kill(-pid)` reaches the group. A program that calls setsid() leaves
 * the group; we also walk /proc for descendants of the leader while it is alive
 * and signal those. Descendants that were already re-parented to init cannot be
 * found that way: under bwrap the PID namespace is the real guarantee (when the
 * sandbox's init dies, the kernel kills every process in the namespace).
 */

/** Parent pid of every process visible in /proc (empty when /proc is not readable). */
function parentTable(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return children;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid ..." where comm may hold spaces and parentheses.
    const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(after[1]);
    if (!Number.isFinite(ppid)) continue;
    const list = children.get(ppid);
    if (list) list.push(Number(name));
    else children.set(ppid, [Number(name)]);
  }
  return children;
}

/** Every live descendant of `pid` (children, grandchildren, ...), found through /proc. */
export function descendantsOf(pid: number): number[] {
  const children = parentTable();
  const out: number[] = [];
  const queue = [pid];
  const seen = new Set<number>([pid]);
  while (queue.length > 0) {
    const current = queue.shift()!;
    for (const child of children.get(current) ?? []) {
      if (seen.has(child)) continue;
      seen.add(child);
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

function trySignal(target: number, signal: NodeJS.Signals): void {
  try {
    process.kill(target, signal);
  } catch {
    // ESRCH: already gone; EPERM: not ours. Either way nothing more to do.
  }
}

/**
 * Signal the process group led by `pid`, and every descendant still attached to
 * it through parent links (which catches those that called setsid()). `known`
 * are pids found by an earlier call (after SIGTERM the leader may be gone and
 * its descendants re-parented); they are signalled again. Returns every pid
 * signalled individually, to pass back as `known` next time.
 */
export function killProcessTree(pid: number, signal: NodeJS.Signals, known: Iterable<number> = []): number[] {
  if (!Number.isInteger(pid) || pid <= 1) return [];
  const targets = new Set<number>(known);
  for (const d of descendantsOf(pid)) targets.add(d);
  trySignal(-pid, signal);
  for (const d of targets) if (d > 1 && d !== process.pid) trySignal(d, signal);
  return [...targets];
}

/** Signal pids found earlier (no new scan: their leader may be gone, and its pid reused). */
export function killPids(pids: Iterable<number>, signal: NodeJS.Signals): void {
  for (const p of pids) if (p > 1 && p !== process.pid) trySignal(p, signal);
}

/** Signal only the process group led by `pid`. */
export function killGroup(pid: number, signal: NodeJS.Signals): void {
  if (!Number.isInteger(pid) || pid <= 1) return;
  trySignal(-pid, signal);
}

/** SIGKILL a long-lived child (a warm fork server, a stateful interpreter) and all it started, unless it has ended. */
export function killChildTree(child: { pid?: number; exitCode: number | null; signalCode: NodeJS.Signals | null } | undefined): void {
  if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) killProcessTree(child.pid, 'SIGKILL');
}

/** Waits for `exited`, at most `ms` (a killed child that does not go away must not hang its stop). */
export async function waitForExit(exited: Promise<void>, ms = 5_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}
