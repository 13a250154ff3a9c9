/**
 * `pip install PKG… --session ID`: pkg_install into the session's venv. On a terminal a spinner
 * shows pip's latest line while it works; the summary names the versions really installed.
 */
import type { Client } from './connection.js';
import type { Output } from './output.js';
import { onInterrupt, replyOf, startTask } from './tasks.js';

export interface PipFlags {
  session: string;
  upgrade: boolean;
  noDeps: boolean;
  indexUrl?: string;
  verbose: boolean;
}

export async function pipInstall(client: Client, out: Output, packages: string[], flags: PipFlags): Promise<number> {
  // With --verbose pip's own lines are the progress: a spinner would be drawn over them.
  const progress = out.progress(`pip install ${packages.join(' ')}`, !flags.verbose);
  let cancel = () => {};
  let interrupted = false;
  const stopListening = onInterrupt(() => {
    interrupted = true;
    progress.stop();
    cancel();
  });
  try {
    const task = await startTask(
      client.port,
      flags.session,
      { tool: 'pkg_install', input: { packages, upgrade: flags.upgrade, no_deps: flags.noDeps, index_url: flags.indexUrl ?? '' } },
      {
        onLog: (log) => {
          if (log.line.trim()) progress.update(`pip install: ${log.line.trim()}`);
          if (flags.verbose && !out.json) out.stderr(`${log.line}\n`);
        },
      },
    );
    cancel = () => void task.cancel('Ctrl-C on the command line').catch(() => {});
    if (interrupted) cancel();
    const { status, output } = replyOf(await task.outcome, 'pkg_install');
    progress.stop();
    if (status === 'CANCELLED' || interrupted) {
      out.note('codegen-mcp: pip install cancelled');
      return 130;
    }
    const installed = output?.installed ?? [];
    const failed = output?.failed ?? [];
    const ok = status === 'SUCCESS' && failed.length === 0 && (output?.exit_code ?? 1) === 0;
    if (out.json) {
      out.doc({ session_id: flags.session, status, installed, failed, exit_code: output?.exit_code ?? null, output: output?.output ?? '' });
      return ok ? 0 : 1;
    }
    for (const p of installed) out.say(`installed ${p.name} ${p.version}`);
    if (!ok) {
      // pip's last ERROR line says why, in one line; --verbose or --json has all of its output.
      const why = (output?.output ?? '').split('\n').filter((l) => l.startsWith('ERROR:')).at(-1)?.replace(/^ERROR:\s*/, '');
      const what = status === 'TIMEOUT' ? 'ran out of time' : `failed${failed.length ? ` for ${failed.join(', ')}` : ''}`;
      out.note(`codegen-mcp: pip install ${what} in session ${flags.session}${why ? `: ${why}` : ''} (pip exited ${output?.exit_code ?? '?'}; --verbose shows its output)`);
    }
    return ok ? 0 : 1;
  } finally {
    stopListening();
    progress.stop();
  }
}
