/**
 * A disk quota per session (MAX_DISK_PER_SESSION): each session's workspace is its own ext4
 * filesystem, in a sparse image file (BASE_WORKSPACE/.disks/<id>.img) loop-mounted at the
 * workspace path. Writes past the size get ENOSPC from the kernel at once (no polling after the
 * fact), and the image only takes the host disk its files use. Measured here: making and
 * mounting a 1 GiB image takes ~15 ms.
 *
 * The mount lives in the host's mount namespace and outlives the worker (a drain, or SIGKILL):
 * the files stay visible at the workspace path, and the next worker on the same BASE_WORKSPACE
 * finds it mounted and keeps using it (after a reboot, it mounts the image again). Only a destroy
 * unmounts it and deletes the image.
 *
 * Needs root, loop devices and mkfs.ext4; where any is missing (most containers have no loop
 * devices), sessions get no disk quota and the worker's start-up log says why.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdir, open, readdir, realpath, rename, rm, rmdir, statfs } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface DiskQuota {
  /** 'loop': enforced; 'none': not, for `reason`. */
  readonly mode: 'loop' | 'none';
  readonly reason: string;
  readonly bytes: number;
  /** Mounts the session's filesystem at `dir` (making it the first time). A workspace made before quotas (files, no image) is left as it is. */
  attach(sessionId: string, dir: string): Promise<void>;
  /** Unmounts it and deletes the image (a destroy). */
  remove(sessionId: string, dir: string): Promise<void>;
  /** Bytes the session's files take, when it has its own filesystem. */
  usedBytes(dir: string): Promise<number | undefined>;
}

const firstExecutable = (candidates: string[]): string | undefined =>
  candidates.find((c) => {
    try {
      accessSync(c, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

/** Every mount point now (from /proc/self/mountinfo, whose paths escape spaces and the like as octal, e.g. \040). */
function mountPoints(): string[] {
  let info: string;
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info.split('\n').map((line) => unescape(line.split(' ')[4] ?? '')).filter(Boolean);
}

/** Whether `dir` (a real path) is a mount point now. */
export const isMountPoint = (dir: string): boolean => mountPoints().includes(dir);

/** Mount points at or under `root` (deepest first), e.g. to clean up after tests. */
export const mountsUnder = (root: string): string[] =>
  mountPoints()
    .filter((m) => m === root || m.startsWith(root + path.sep))
    .sort((a, b) => b.length - a.length);

const noQuota = (bytes: number, reason: string): DiskQuota => ({
  mode: 'none',
  reason,
  bytes,
  attach: async () => {},
  remove: async () => {},
  usedBytes: async () => undefined,
});

class LoopQuota implements DiskQuota {
  readonly mode = 'loop' as const;

  constructor(
    readonly bytes: number,
    readonly reason: string,
    private readonly disks: string,
    private readonly mkfs: string,
  ) {}

  private imageOf(sessionId: string): string {
    return path.join(this.disks, `${sessionId}.img`);
  }

  async attach(sessionId: string, dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const real = await realpath(dir);
    if (isMountPoint(real)) return;
    const image = this.imageOf(sessionId);
    const exists = await open(image, 'r').then(
      async (h) => (await h.close(), true),
      () => false,
    );
    if (!exists) {
      // A workspace from before quotas keeps its files where they are (and has no quota).
      if ((await readdir(real)).length > 0) return;
      await makeImage(this.mkfs, image, this.bytes);
    }
    await run('mount', ['-o', 'loop,nosuid,nodev', image, real]);
    // A fresh ext4 has lost+found; the workspace starts empty.
    if (!exists) await rmdir(path.join(real, 'lost+found')).catch(() => {});
  }

  async remove(sessionId: string, dir: string): Promise<void> {
    const real = await realpath(dir).catch(() => path.resolve(dir));
    if (isMountPoint(real)) await unmount(real);
    await rm(this.imageOf(sessionId), { force: true });
  }

  async usedBytes(dir: string): Promise<number | undefined> {
    const real = await realpath(dir).catch(() => undefined);
    if (!real || !isMountPoint(real)) return undefined;
    const s = await statfs(real);
    return (s.blocks - s.bfree) * s.bsize;
  }
}

/** Unmounts `dir`; when something still holds it, detaches it lazily (it goes once the last user does). */
export async function unmount(dir: string): Promise<void> {
  try {
    await run('umount', [dir]);
  } catch {
    await run('umount', ['-l', dir]).catch(() => {});
  }
}

async function makeImage(mkfs: string, image: string, bytes: number): Promise<void> {
  await mkdir(path.dirname(image), { recursive: true, mode: 0o700 });
  const tmp = `${image}.${process.pid}.tmp`;
  const h = await open(tmp, 'w', 0o600);
  try {
    await h.truncate(bytes); // sparse: the host disk holds only what is written
  } finally {
    await h.close();
  }
  try {
    // No reserved blocks (the quota is the user's), lazy init (fast), no journal replay worries for a workspace.
    await run(mkfs, ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', tmp]);
    await rename(tmp, image);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * What this host allows: root, loop devices and mkfs.ext4, tried with a small image under
 * BASE_WORKSPACE/.disks. `bytes` 0: no quota (MAX_DISK_PER_SESSION=0).
 */
export async function detectDiskQuota(baseWorkspace: string, bytes: number): Promise<DiskQuota> {
  if (bytes <= 0) return noQuota(0, 'MAX_DISK_PER_SESSION=0');
  if (process.getuid?.() !== 0) return noQuota(bytes, 'the worker is not root (loop mounts need it)');
  const mkfs = firstExecutable(['/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4']);
  if (!mkfs) return noQuota(bytes, 'mkfs.ext4 is not installed (Debian: e2fsprogs)');
  const disks = path.join(path.resolve(baseWorkspace), '.disks');
  const probe = path.join(disks, `.probe-${process.pid}`);
  const image = `${probe}.img`;
  try {
    await makeImage(mkfs, image, 16 * 1024 * 1024);
    await mkdir(probe, { recursive: true });
    await run('mount', ['-o', 'loop,nosuid,nodev', image, probe]);
    await unmount(probe);
    return new LoopQuota(bytes, `a loop-mounted ext4 image per session (${disks})`, disks, mkfs);
  } catch (err) {
    const why = ((err as { stderr?: string }).stderr || (err as Error).message).trim().split('\n')[0];
    return noQuota(bytes, `loop mounts do not work here (${why}); in a container this needs loop devices and SYS_ADMIN`);
  } finally {
    await rm(image, { force: true }).catch(() => {});
    await rmdir(probe).catch(() => {});
  }
}
