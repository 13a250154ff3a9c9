import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectEnforcement } from '../../src/sandbox/enforcement.js';
import { namespaceProfile, setNamespaceProfile, type NamespaceProfile } from '../../src/sandbox/isolation.js';
import { detectIsolation, launch, setIsolation, type LaunchResult } from '../../src/sandbox/launch.js';
import { interpreterRoots } from '../../src/sandbox/mounts.js';
import { prepareSeccomp } from '../../src/sandbox/seccomp.js';
import { WarmPythonRegistry } from '../../src/sandbox/warm/sessions.js';
import { resolveBasePython } from '../../src/worker/venv-pool.js';
import { eventually, pidsWithToken, uniqueToken } from '../helpers/processes.js';

/**
 * What a program in the sandbox cannot do or see: the seccomp filter refuses ptrace (of itself and
 * of the session's fork server), new namespaces, mounts, bpf and personality changes; the mount
 * view has no /root, /home, project checkout or other workspace. Both namespace profiles.
 */

const hasBwrap = (await detectIsolation('auto')) === 'bwrap';
const seccomp = detectEnforcement().seccomp;
if (!hasBwrap) console.warn('sandbox-confinement: bwrap does not work here (apt-get install bubblewrap): skipped');
if (!seccomp.available) console.warn(`sandbox-confinement: seccomp: unavailable (${seccomp.reason}): the seccomp cases are skipped`);
const probedProfile = namespaceProfile();
// The 'root' profile (no user namespace) needs root; the 'userns' one a kernel that allows user namespaces.
const profiles: NamespaceProfile[] = process.getuid?.() === 0 ? ['userns', 'root'] : ['userns'];

const python = await resolveBasePython();
const checkout = process.cwd();
/** The interpreters' prefixes the sandbox mounts (the only part of a home it may show). */
const roots = interpreterRoots().flatMap((i) => i.roots);
let base: string;
let registry: WarmPythonRegistry;

beforeAll(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'codegen-confine-'));
  registry = new WarmPythonRegistry({ root: path.join(base, '.warm') });
  if (hasBwrap) setIsolation('bwrap');
});
afterAll(async () => {
  await registry.stopAll();
  setNamespaceProfile(probedProfile);
  rmSync(base, { recursive: true, force: true });
});

const PRELUDE = `
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def call(fn, *args):
    r = fn(*args)
    return 0 if r != -1 else ctypes.get_errno()
`;

async function runIn(workspace: string, code: string, token: string): Promise<LaunchResult> {
  const r = await launch({
    command: python,
    args: ['-c', PRELUDE + code, token],
    cwd: workspace,
    env: { PATH: '/usr/bin:/bin', HOME: workspace, LANG: 'C.UTF-8' },
    timeoutMs: 15_000,
    maxOutputBytes: 256 * 1024,
    sandbox: { workspace, hide: [base], allowNetwork: false },
  });
  expect(await eventually(() => pidsWithToken(token).length === 0)).toBe(true);
  return r;
}

const json = (r: LaunchResult): Record<string, unknown> => {
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
};

describe.runIf(hasBwrap).each(profiles)('the sandbox (%s profile)', (p) => {
  let workspace: string;
  beforeAll(() => {
    setNamespaceProfile(p);
    workspace = path.join(base, `ws-${p}`);
    mkdirSync(workspace);
    mkdirSync(path.join(base, 'other-session'), { recursive: true });
    writeFileSync(path.join(base, 'other-session', 'secret.txt'), 'not yours');
  });
  afterAll(() => setNamespaceProfile(probedProfile));

  it.runIf(seccomp.available)('refuses ptrace, namespaces, mounts, bpf and personality changes with EPERM', async () => {
    const code = `
out = {}
out['traceme'] = call(libc.ptrace, 0, 0, 0, 0)                       # PTRACE_TRACEME
out['attach_parent'] = call(libc.ptrace, 16, os.getppid(), 0, 0)     # PTRACE_ATTACH
out['unshare_user'] = call(libc.unshare, 0x10000000)                  # CLONE_NEWUSER
out['unshare_ns'] = call(libc.unshare, 0x00020000)                    # CLONE_NEWNS
out['mount'] = call(libc.mount, b'none', b'/tmp', b'tmpfs', 0, None)
out['bpf'] = call(libc.syscall, 321, 0, 0, 0)                         # bpf(BPF_MAP_CREATE, NULL, 0)
out['no_aslr'] = call(libc.personality, 0x0040000)                    # ADDR_NO_RANDOMIZE
out['query'] = libc.personality(0xffffffff)
pid = os.fork()
if pid == 0:
    os._exit(7)
out['fork'] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
import threading
t = threading.Thread(target=lambda: None); t.start(); t.join()
out['thread'] = 'ok'
print(json.dumps(out))
`;
    const o = json(await runIn(workspace, code, uniqueToken(`seccomp-${p}`)));
    const EPERM = 1;
    expect(o).toEqual({ traceme: EPERM, attach_parent: EPERM, unshare_user: EPERM, unshare_ns: EPERM, mount: EPERM, bpf: EPERM, no_aslr: EPERM, query: 0, fork: 7, thread: 'ok' });
  });

  it('shows no /root, /home, project checkout or other session, and a read-only system', async () => {
    const code = `
def listing(p):
    try:
        return sorted(os.listdir(p))
    except OSError as e:
        return errno.errorcode[e.errno]
ROOTS = json.loads(${JSON.stringify(JSON.stringify(roots))})
def visible(top):
    # Every path under top, but inside the interpreters' prefixes (mounted on purpose).
    if not os.path.lexists(top):
        return 'ENOENT'
    found = []
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if os.path.join(d, x) not in ROOTS]
        found += [os.path.join(d, x) for x in dirs + files]
    return sorted(found)
def can_write(p):
    try:
        open(p, 'w').close()
        return True
    except OSError:
        return False
out = {
    'root': visible('/root'),
    'home': visible('/home'),
    'checkout': os.path.exists(${JSON.stringify(checkout)}),
    'other': os.path.exists(${JSON.stringify(path.join(base, 'other-session', 'secret.txt'))}),
    'var': listing('/var'),
    'srv': listing('/srv'),
    'shadow': os.path.exists('/etc/shadow'),
    'ssl_private': listing('/etc/ssl/private') if os.path.isdir('/etc/ssl/private') else [],
    'workspace_writable': can_write(${JSON.stringify(path.join(workspace, 'mine.txt'))}),
    'root_writable': can_write('/evil'),
    'usr_writable': can_write('/usr/evil'),
    'etc_writable': can_write('/etc/evil'),
    'certs': os.path.isdir('/etc/ssl/certs'),
    'python_ok': sys.version_info[0] == 3,
}
print(json.dumps(out))
`;
    const o = json(await runIn(workspace, code, uniqueToken(`view-${p}`)));
    // Only the folders on the way to an interpreter's prefix (pyenv under /root/.pyenv here), nothing else of a home.
    const onTheWay = (p: string): boolean => roots.some((r) => r.startsWith(p + '/'));
    for (const top of ['root', 'home'] as const) {
      const seen = o[top];
      if (seen !== 'ENOENT') expect((seen as string[]).filter((p) => !onTheWay(p)), `/${top}`).toEqual([]);
    }
    expect(['ENOENT', []]).toContainEqual(o.var);
    expect(['ENOENT', []]).toContainEqual(o.srv);
    expect(o).toMatchObject({
      checkout: false,
      other: false,
      shadow: false,
      ssl_private: [],
      workspace_writable: true,
      root_writable: false,
      usr_writable: false,
      etc_writable: false,
      python_ok: true,
    });
  });
});

describe.runIf(hasBwrap && seccomp.available)('a warm interpreter', () => {
  it("cannot be traced by the task it forked (ptrace of the session's fork server)", async () => {
    const workspace = path.join(base, 'ws-warm');
    mkdirSync(workspace);
    const token = uniqueToken('warm-ptrace');
    const env = { PATH: '/usr/bin:/bin', HOME: workspace, LANG: 'C.UTF-8', PYTHONUNBUFFERED: '1' };
    const code = `${PRELUDE}
server = os.getppid()
print(json.dumps({'attach': call(libc.ptrace, 16, server, 0, 0), 'seize': call(libc.ptrace, 0x4206, server, 0, 0)}))
`;
    const r = await registry.forSession('warm-ptrace').run(
      { python, workspace, view: { workspace, hide: [base], allowNetwork: false }, env },
      { argv: ['-', token], code, env, cwd: workspace, limits: {}, timeoutMs: 15_000, maxOutputBytes: 4096 },
    );
    expect(r).not.toBeNull();
    expect(json(r!)).toEqual({ attach: 1, seize: 1 });
    await registry.release('warm-ptrace');
    expect(await eventually(() => pidsWithToken(token).length === 0)).toBe(true);
  });
});

describe('the seccomp filter', () => {
  it('is reported unavailable, with the reason, by an interpreter without libseccomp', () => {
    // The worker's pyenv interpreter has no python3-seccomp: the real fallback path, nothing simulated.
    const state = prepareSeccomp({ pythons: [python] });
    if (state.available) {
      console.warn(`sandbox-confinement: ${python} has the seccomp module: the fallback case cannot be shown with it`);
      return;
    }
    expect(state.reason).toContain(python);
    expect(state.reason).toMatch(/python3-seccomp|seccomp/);
  });
});
