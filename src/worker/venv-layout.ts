import { chmod, mkdir, realpath, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CodegenError } from '../domain/errors.js';
import { launch } from '../sandbox/launch.js';

/**
 * A virtual environment written straight in its documented layout (PEP 405: `pyvenv.cfg` beside
 * `bin/`, the interpreter as a link, an empty `site-packages`), as `python -m venv --without-pip`
 * writes it on POSIX: about a millisecond of file operations instead of an ~80 ms interpreter
 * start. The facts it needs (version, paths, activate templates) are read from the base
 * interpreter once; the first venv is checked by running it (`sys.prefix`, `site-packages`).
 */

export interface BaseFacts {
  /** The base interpreter, as venv takes it (`sys._base_executable`). */
  executable: string;
  /** Its real path (pyvenv.cfg's `executable`). */
  realExecutable: string;
  version: string;
  /** 'X.Y' */
  short: string;
  /** venv's activate templates: file name → text. */
  templates: Record<string, string>;
  /** A `lib64 -> lib` link, as venv makes on 64-bit POSIX (not macOS). */
  lib64: boolean;
}

const PROBE = [
  'import json, os, sys, venv',
  "scripts = os.path.join(os.path.dirname(venv.__file__), 'scripts')",
  'templates = {}',
  "for sub in ('common', 'posix'):",
  '    d = os.path.join(scripts, sub)',
  '    if os.path.isdir(d):',
  '        for name in sorted(os.listdir(d)):',
  "            with open(os.path.join(d, name), encoding='utf-8') as f:",
  '                templates[name] = f.read()',
  "exe = getattr(sys, '_base_executable', None) or sys.executable",
  "print(json.dumps({'executable': exe, 'realExecutable': os.path.realpath(exe), 'version': '%d.%d.%d' % sys.version_info[:3], 'short': '%d.%d' % sys.version_info[:2], 'templates': templates, 'lib64': sys.maxsize > 2**32 and os.name == 'posix' and sys.platform != 'darwin', 'posix': os.name == 'posix'}))",
].join('\n');

/** What the base interpreter says about itself; null when it is not POSIX (venv's layout differs there). */
export async function readBaseFacts(basePython: string): Promise<BaseFacts | null> {
  const r = await launch({ command: basePython, args: ['-I', '-c', PROBE], cwd: os.tmpdir(), env: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' }, timeoutMs: 30_000, maxOutputBytes: 4 * 1024 * 1024 });
  if (r.exitCode !== 0) throw new CodegenError('INTERNAL', `cannot read the facts of ${basePython}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
  const facts = JSON.parse(r.stdout) as BaseFacts & { posix: boolean };
  return facts.posix ? facts : null;
}

/** The activate scripts' placeholders, filled as venv fills them. */
function fill(template: string, dir: string, facts: BaseFacts): string {
  const name = path.basename(dir);
  return template
    .split('__VENV_DIR__').join(dir)
    .split('__VENV_NAME__').join(name)
    .split('__VENV_PROMPT__').join(`(${name}) `)
    .split('__VENV_BIN_NAME__').join('bin')
    .split('__VENV_PYTHON__').join(path.join(dir, 'bin', path.basename(facts.executable)));
}

/** Writes the venv at `dir` (which must not exist). */
export async function writeVenv(dir: string, facts: BaseFacts): Promise<void> {
  const bin = path.join(dir, 'bin');
  await mkdir(dir);
  await Promise.all([
    mkdir(bin),
    mkdir(path.join(dir, 'lib', `python${facts.short}`, 'site-packages'), { recursive: true }),
    mkdir(path.join(dir, 'include', `python${facts.short}`), { recursive: true }),
  ]);
  const exe = path.basename(facts.executable);
  const cfg = [
    `home = ${path.dirname(facts.executable)}`,
    'include-system-site-packages = false',
    `version = ${facts.version}`,
    `executable = ${facts.realExecutable}`,
    `command = ${facts.executable} -m venv --without-pip ${dir}`,
    '',
  ].join('\n');
  const links: Array<Promise<void>> = [symlink(facts.executable, path.join(bin, exe))];
  for (const alias of ['python', 'python3', `python${facts.short}`]) if (alias !== exe) links.push(symlink(exe, path.join(bin, alias)));
  if (facts.lib64) links.push(symlink('lib', path.join(dir, 'lib64')));
  await Promise.all([
    writeFile(path.join(dir, 'pyvenv.cfg'), cfg),
    ...links,
    ...Object.entries(facts.templates).map(([name, text]) => writeFile(path.join(bin, name), fill(text, dir, facts))),
  ]);
  await chmod(path.join(bin, 'activate'), 0o644).catch(() => {});
}

/** `python -c code` with the venv's own interpreter, from the venv: how a venv is checked. */
export function runInVenv(dir: string, code: string): ReturnType<typeof launch> {
  const bin = path.join(dir, 'bin');
  return launch({
    command: path.join(bin, 'python'),
    args: ['-c', code],
    cwd: dir,
    env: { PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`, LANG: 'C.UTF-8' },
    timeoutMs: 30_000,
    maxOutputBytes: 64 * 1024,
  });
}

/** Runs the venv's python: its prefix must be the venv, its site-packages the one written. */
export async function checkVenv(dir: string, facts: BaseFacts): Promise<void> {
  const r = await runInVenv(dir, "import json, sys, sysconfig; print(json.dumps([sys.prefix, sysconfig.get_path('purelib')]))");
  const real = await realpath(dir);
  const want = (p: string) => [p, path.join(p, 'lib', `python${facts.short}`, 'site-packages')];
  let got: unknown;
  try {
    got = JSON.parse(r.stdout);
  } catch {
    got = r.stdout.trim();
  }
  const ok = (w: string[]) => JSON.stringify(got) === JSON.stringify(w);
  if (r.exitCode !== 0 || !(ok(want(dir)) || ok(want(real)))) {
    throw new CodegenError('INTERNAL', `a venv written at ${dir} does not work: ${JSON.stringify(got)} (${r.stderr.trim() || `exit ${r.exitCode}`})`);
  }
}
