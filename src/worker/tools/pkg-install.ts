import { existsSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CodegenError, invalidArgument } from '../../domain/errors.js';
import type { PackageInfo, PkgInstallInput } from '../../domain/tools.js';
import { launch, type LaunchResult } from '../../sandbox/launch.js';
import { resolveBasePython } from '../venv-pool.js';
import { isInside, workspaceRealPath } from '../workspace.js';
import { baseEnv, emitLog, emitProgress, outputCapOf, sandboxFor, statusOf, throwIfLimitExceeded, timeoutMsOf } from './common.js';
import type { ToolContext, ToolExecution } from './types.js';

/**
 * pkg_install: the base interpreter's pip installs into the session's venv
 * (`python -m pip --python <venv>/bin/python install ...`), inside the sandbox.
 *
 * Configuration: pip reads PIP_* and proxy variables from the worker's
 * environment (or ctx.pipEnv when the caller gives one), then from the
 * session's env_vars, which win; nothing else of the worker's environment.
 * Network: allowed when the session allows it, or when an index is configured
 * (index_url, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, or an http(s) find-links) and
 * PIP_NO_INDEX is not set: an operator who points pip at a mirror means pip to
 * reach it. Offline installs (PIP_NO_INDEX + PIP_FIND_LINKS folders) need no
 * network: local find-links folders are bound read-only into the sandbox (they
 * may sit under /tmp, which the sandbox replaces).
 * Result: the real installed name and version of each requested distribution,
 * read from the venv with importlib.metadata; specs that did not end up
 * installed are in `failed`.
 */

const DEFAULT_PIP_TIMEOUT_SECONDS = 900;
const proxyNames = new Set(['http_proxy', 'https_proxy', 'no_proxy', 'all_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY']);
const isPipVar = (name: string): boolean => name.startsWith('PIP_') || proxyNames.has(name);

/** PIP_* and proxy variables: the worker's (or ctx.pipEnv), then the session's on top. */
export function pipEnvironment(ctx: ToolContext): Record<string, string> {
  const out: Record<string, string> = {};
  const source: Record<string, string | undefined> = ctx.pipEnv ?? process.env;
  for (const [k, v] of Object.entries(source)) if (v !== undefined && isPipVar(k) && !v.includes('\0')) out[k] = v;
  for (const [k, v] of Object.entries(ctx.sessionEnv)) if (isPipVar(k) && !v.includes('\0')) out[k] = v;
  return out;
}

const truthy = (v: string | undefined): boolean => v !== undefined && !['', '0', 'false', 'no', 'off'].includes(v.toLowerCase());

function validateSpecs(packages: unknown): string[] {
  if (!Array.isArray(packages) || packages.length === 0) throw invalidArgument('packages', 'give at least one package, e.g. ["requests>=2"]');
  return packages.map((spec, i) => {
    if (typeof spec !== 'string' || spec.trim() === '') throw invalidArgument(`packages[${i}]`, 'must be a non-empty package spec');
    if (spec.startsWith('-')) throw invalidArgument(`packages[${i}]`, `${JSON.stringify(spec)} starts with '-': options are not accepted, only package specs`);
    if (/[\s\0]/.test(spec)) throw invalidArgument(`packages[${i}]`, `${JSON.stringify(spec)} contains whitespace; write specs without spaces, e.g. "numpy>=1.26"`);
    return spec;
  });
}

/** The distribution name a spec asks for, or null when it cannot be told (a URL or folder without #egg=). */
export function distributionName(spec: string): string | null {
  const egg = /[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(spec);
  if (egg) return egg[1]!;
  const base = spec.split(/[?#]/)[0]!;
  if (base.endsWith('.whl')) return path.basename(base).split('-')[0] ?? null;
  if (base.includes('://') || base.startsWith('.') || base.startsWith('/') || base.startsWith('~')) {
    const archive = /^(.+)-[^-]+\.(?:tar\.gz|tar\.bz2|tgz|zip)$/.exec(path.basename(base));
    return archive ? archive[1]! : null;
  }
  const m = /^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)/.exec(spec);
  return m ? m[1]! : null;
}

/** Local folders named by find-links (paths or file: URLs), to bind read-only into the sandbox. */
function localFindLinks(env: Record<string, string>, indexUrl: string): string[] {
  const out: string[] = [];
  const add = (entry: string): void => {
    let p = entry;
    if (p.startsWith('file:')) {
      try {
        p = fileURLToPath(p);
      } catch {
        return;
      }
    }
    if (path.isAbsolute(p) && existsSync(p)) out.push(p);
  };
  for (const entry of (env.PIP_FIND_LINKS ?? '').split(/\s+/)) if (entry) add(entry);
  if (indexUrl.startsWith('file:')) add(indexUrl);
  return out;
}

/**
 * A client-chosen index_url never widens what the session may reach: over http(s) it needs a
 * session with network, and a file:// one must lie inside the workspace (it is bound into pip's
 * sandbox, so it must not name the worker's own folders).
 */
async function checkIndexUrl(ctx: ToolContext, indexUrl: string): Promise<void> {
  if (indexUrl === '') return;
  if (/^https?:/i.test(indexUrl)) {
    if (!ctx.allowNetwork) {
      throw new CodegenError('PERMISSION_DENIED', "index_url: this session has no network (allow_network false), so pkg_install may use only the package indexes the worker's operator configured (PIP_INDEX_URL, PIP_FIND_LINKS); create a session with allow_network to choose an index");
    }
    return;
  }
  let p: string;
  try {
    p = fileURLToPath(indexUrl);
  } catch {
    throw invalidArgument('index_url', 'is not a valid file:// URL');
  }
  const root = await workspaceRealPath(ctx.workspace);
  const target = await realpath(p).catch(() => path.resolve(p));
  if (!isInside(root, target)) throw new CodegenError('PATH_VIOLATION', 'index_url: a file:// index must be a folder inside the session workspace');
}

/** Network only for the operator's indexes: pip then installs wheels only, so no package's build code runs with it. */
function operatorOnlyNetwork(ctx: ToolContext, env: Record<string, string>, indexUrl: string): boolean {
  return !ctx.allowNetwork && wantsNetwork(ctx, env, indexUrl);
}

function wantsNetwork(ctx: ToolContext, env: Record<string, string>, indexUrl: string): boolean {
  if (ctx.allowNetwork) return true;
  if (/^https?:/i.test(indexUrl)) return true;
  if (truthy(env.PIP_NO_INDEX)) return (env.PIP_FIND_LINKS ?? '').split(/\s+/).some((e) => /^https?:/i.test(e));
  return Boolean(env.PIP_INDEX_URL || env.PIP_EXTRA_INDEX_URL) || (env.PIP_FIND_LINKS ?? '').split(/\s+/).some((e) => /^https?:/i.test(e));
}

const QUERY = `
import json, sys
from importlib import metadata as md
out = {}
for n in sys.argv[1:]:
    try:
        d = md.distribution(n)
    except md.PackageNotFoundError:
        out[n] = None
        continue
    out[n] = {"name": d.metadata["Name"] or n, "version": d.version, "location": str(d.locate_file(""))}
print(json.dumps(out))
`;

/** Installed distributions among `names`, read from the venv (sandboxed: the venv is the user's to change). */
async function queryInstalled(ctx: ToolContext, names: string[]): Promise<Map<string, PackageInfo | null>> {
  const found = new Map<string, PackageInfo | null>();
  if (names.length === 0) return found;
  const result = await launch({
    command: ctx.venvPython,
    args: ['-I', '-c', QUERY, ...names],
    cwd: ctx.workspace,
    env: baseEnv(ctx),
    timeoutMs: 60_000,
    maxOutputBytes: 4 * 1024 * 1024,
    sandbox: sandboxFor(ctx, false),
  });
  if (result.exitCode !== 0) return found;
  try {
    const parsed = JSON.parse(result.stdout) as Record<string, PackageInfo | null>;
    for (const n of names) found.set(n, parsed[n] ?? null);
  } catch {
    // unreadable answer: nothing is known to be installed
  }
  return found;
}

export async function runPkgInstall(input: PkgInstallInput, ctx: ToolContext): Promise<ToolExecution> {
  const specs = validateSpecs(input.packages);
  const indexUrl = input.index_url ?? '';
  if (indexUrl !== '' && (/[\s\0]/.test(indexUrl) || !/^(https?|file):\/\//i.test(indexUrl))) {
    throw invalidArgument('index_url', 'must be an http(s):// or file:// URL without spaces');
  }
  await checkIndexUrl(ctx, indexUrl);
  const startedAt = Date.now();
  const basePython = ctx.basePython ?? (await resolveBasePython());
  const pipEnv = pipEnvironment(ctx);
  const env: Record<string, string> = { ...baseEnv(ctx), ...pipEnv };
  // A shared cache would let one session plant wheels for another: none unless the operator configures one.
  if (pipEnv.PIP_CACHE_DIR === undefined && pipEnv.PIP_NO_CACHE_DIR === undefined) env.PIP_NO_CACHE_DIR = '1';

  const names = specs.map(distributionName);
  const known = [...new Set(names.filter((n): n is string => n !== null))];
  const before = await queryInstalled(ctx, known);

  const args = ['-m', 'pip', '--python', ctx.venvPython, 'install', '--disable-pip-version-check', '--no-input', '--progress-bar', 'off', '--root-user-action', 'ignore'];
  if (input.upgrade) args.push('--upgrade');
  if (input.no_deps) args.push('--no-deps');
  if (operatorOnlyNetwork(ctx, pipEnv, indexUrl)) args.push('--only-binary', ':all:');
  if (indexUrl !== '') args.push('--index-url', indexUrl);
  args.push(...specs);

  const cap = outputCapOf(ctx);
  const lines: string[] = [];
  let outputBytes = 0;
  let outputDropped = 0;
  emitProgress(ctx, 'installing', `pip install ${specs.join(' ')}`, 0, startedAt);
  const result: LaunchResult = await launch({
    command: basePython,
    args,
    cwd: ctx.workspace,
    env,
    timeoutMs: timeoutMsOf(0, ctx, DEFAULT_PIP_TIMEOUT_SECONDS),
    maxOutputBytes: cap,
    signal: ctx.signal,
    onLine: (stream, line) => {
      emitLog(ctx, stream, line);
      const size = Buffer.byteLength(line) + 1;
      if (outputBytes + size <= cap) {
        lines.push(line);
        outputBytes += size;
      } else outputDropped += size;
    },
    sandbox: sandboxFor(ctx, wantsNetwork(ctx, pipEnv, indexUrl), localFindLinks(pipEnv, indexUrl)),
  });
  throwIfLimitExceeded(result);
  if (outputDropped > 0) lines.push(`[output truncated: ${outputDropped} bytes dropped]`);

  const after = await queryInstalled(ctx, known);
  const installed: PackageInfo[] = [];
  const failed: string[] = [];
  specs.forEach((spec, i) => {
    const name = names[i];
    const now = name ? after.get(name) : null;
    const was = name ? before.get(name) : null;
    // After a successful pip run, present means installed (or already satisfied);
    // after a failed one, only what this run changed counts.
    const ok = now && (result.exitCode === 0 || !was || was.version !== now.version);
    if (ok) {
      if (!installed.some((p) => p.name === now.name)) installed.push(now);
    } else if (!(result.exitCode === 0 && name === null)) failed.push(spec);
  });

  return {
    status: statusOf(result, ctx),
    reply: { tool: 'pkg_install', output: { installed, failed, output: lines.join('\n'), exit_code: result.exitCode } },
  };
}
