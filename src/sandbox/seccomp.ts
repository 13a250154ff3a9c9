import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The sandbox's seccomp filter, made with libseccomp (Debian's `python3-seccomp`), never written
 * by hand: the generator below runs once per worker process, exports the BPF program to a file,
 * and every bwrap gets it with `--seccomp FD` (an fd opened on that file, placed in the child's
 * stdio array). bwrap installs it (with no_new_privs) right before it executes the command, so
 * everything in the sandbox runs under it.
 *
 * The filter allows everything by default and refuses, with EPERM, what a Python program never
 * needs and what breaks isolation or widens the kernel's attack surface: tracing other processes
 * (ptrace, process_vm_*, pidfd_getfd, kcmp), mounts and namespaces (mount API, unshare, setns,
 * clone with CLONE_NEW*; clone3 answers ENOSYS so libc falls back to clone, whose flags the filter
 * can read), bpf, perf_event_open, userfaultfd, io_uring, keyrings, kexec, kernel modules, swap,
 * reboot, accounting, quotas, file handles, iopl/ioperm, the kernel log, clocks, and personality
 * changes beyond the default ones. Syscalls of another ABI (i386 through int 0x80, x32) kill the
 * caller (libseccomp's default for a foreign architecture).
 */

const GENERATOR = String.raw`
import errno, json, sys
import seccomp

out_path = sys.argv[1]
arch = seccomp.system_arch() & 0xffffffff
names = {int(getattr(seccomp.Arch, n)) & 0xffffffff: n.lower() for n in dir(seccomp.Arch) if n.isupper() and n not in ('NATIVE',)}
arch_name = names.get(arch, hex(arch))
if arch_name not in ('x86_64', 'aarch64'):
    print(json.dumps({'ok': False, 'reason': 'unsupported architecture %s (the filter is written for x86_64 and aarch64)' % arch_name}))
    sys.exit(0)

f = seccomp.SyscallFilter(seccomp.ALLOW)
EPERM = seccomp.ERRNO(errno.EPERM)
blocked, missing = [], []

def deny(name, action=EPERM, *args):
    try:
        if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) < 0:
            raise ValueError(name)  # libseccomp knows it, but not as a syscall of this architecture
        f.add_rule(action, name, *args)
    except (RuntimeError, ValueError, OSError):
        missing.append(name)  # not a syscall of this architecture
        return
    if name not in blocked:
        blocked.append(name)

for name in [
    'ptrace', 'process_vm_readv', 'process_vm_writev', 'process_madvise', 'pidfd_getfd', 'kcmp',
    'mount', 'umount', 'umount2', 'pivot_root', 'chroot', 'move_mount', 'open_tree', 'fsopen', 'fsmount', 'fsconfig', 'fspick', 'mount_setattr',
    'unshare', 'setns',
    'bpf', 'perf_event_open', 'userfaultfd', 'io_uring_setup', 'io_uring_enter', 'io_uring_register',
    'keyctl', 'add_key', 'request_key',
    'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'create_module', 'query_module', 'get_kernel_syms',
    'swapon', 'swapoff', 'reboot', 'acct', 'quotactl', 'quotactl_fd', 'nfsservctl', '_sysctl', 'uselib', 'ustat', 'sysfs', 'vhangup',
    'open_by_handle_at', 'name_to_handle_at', 'lookup_dcookie',
    'iopl', 'ioperm', 'syslog',
    'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex', 'stime',
    'fanotify_init',
]:
    deny(name)

# clone with a namespace flag (flags are the first argument on x86_64 and aarch64).
for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
    deny('clone', EPERM, seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
# clone3 takes its flags in memory, out of a filter's reach: ENOSYS makes libc use clone instead.
deny('clone3', seccomp.ERRNO(errno.ENOSYS))

# personality: only the default persona (0), PER_LINUX32 (8), UNAME26 variants and the query
# (0xffffffff) pass. libseccomp cannot AND two tests of one argument, so the refused values are
# covered by aligned blocks (value/mask pairs) of the 32-bit argument.
def blocks(lo, hi):
    while lo <= hi:
        size = 1
        while lo % (size * 2) == 0 and lo + size * 2 - 1 <= hi:
            size *= 2
        yield lo, size
        lo += size
prev = -1
for allowed in (0x0, 0x8, 0x20000, 0x20008, 0xffffffff, 1 << 32):
    for lo, size in blocks(prev + 1, allowed - 1):
        deny('personality', EPERM, seccomp.Arg(0, seccomp.MASKED_EQ, 0xffffffff & ~(size - 1), lo))
    prev = allowed

with open(out_path, 'wb') as fo:
    f.export_bpf(fo)
print(json.dumps({'ok': True, 'arch': arch_name, 'blocked': blocked, 'missing': sorted(set(missing) - set(blocked))}))
`;

export type SeccompState =
  | { available: true; path: string; arch: string; blocked: string[]; python: string }
  | { available: false; reason: string };

let state: SeccompState | undefined;

/** Interpreters that may have libseccomp's Python binding: Debian's first (python3-seccomp installs there). */
function generatorPythons(): string[] {
  const out: string[] = [];
  for (const candidate of ['/usr/bin/python3', ...(process.env.PATH ?? '').split(':').filter((d) => path.isAbsolute(d)).map((d) => path.join(d, 'python3'))]) {
    try {
      accessSync(candidate, constants.X_OK);
      if (!out.includes(candidate)) out.push(candidate);
    } catch {
      // next
    }
  }
  return out;
}

/**
 * Generate the filter (once per process; cached). Never throws: without python3-seccomp, or on an
 * architecture it is not written for, it says why and sandboxes run without a filter.
 */
export function prepareSeccomp(opts: { pythons?: string[] } = {}): SeccompState {
  if (state && !opts.pythons) return state;
  const result = generate(opts.pythons ?? generatorPythons());
  if (!opts.pythons) state = result;
  return result;
}

function generate(pythons: string[]): SeccompState {
  if (os.arch() !== 'x64' && os.arch() !== 'arm64') return { available: false, reason: `no filter for this architecture (${os.arch()})` };
  const reasons: string[] = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'codegen-mcp-seccomp-'));
  const file = path.join(dir, 'filter.bpf');
  for (const python of pythons) {
    try {
      const out = execFileSync(python, ['-I', '-c', GENERATOR, file], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' } });
      const answer = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { ok: boolean; reason?: string; arch?: string; blocked?: string[] };
      if (!answer.ok) {
        reasons.push(`${python}: ${answer.reason ?? 'refused'}`);
        continue;
      }
      if (readFileSync(file).length === 0 || readFileSync(file).length % 8 !== 0) {
        reasons.push(`${python}: the exported program is not a BPF program`);
        continue;
      }
      process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
      return { available: true, path: file, arch: answer.arch ?? 'unknown', blocked: answer.blocked ?? [], python };
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      const why = (e.stderr ?? '').includes("No module named 'seccomp'") ? 'no seccomp module (Debian package: python3-seccomp)' : (e.stderr?.trim().split('\n').pop() ?? e.message);
      reasons.push(`${python}: ${why}`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return { available: false, reason: reasons.length > 0 ? reasons.join('; ') : 'no python3 to run libseccomp with' };
}

/** A fresh read-only fd on the filter (bwrap reads it to its end: one per sandbox), or null without a filter. The caller closes it after spawn. */
export function openSeccompFd(): number | null {
  const s = prepareSeccomp();
  if (!s.available) return null;
  try {
    return openSync(s.path, 'r');
  } catch {
    return null;
  }
}

/** Tests only: forget the cached state (e.g. to check the fallback). */
export function resetSeccompForTests(): void {
  state = undefined;
}
