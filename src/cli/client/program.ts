/**
 * The command line for people (issue 12): sessions, session create|rm, run, cp, ls, pip install,
 * repl and status, parsed by commander. Each handler connects, calls its module, and returns the
 * exit status; errors end here as one line on stderr (and, with --json, a JSON document on
 * stdout): 1 for a failure, 2 for a usage error.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { connect, DEFAULT_ADDR, withConnection, type ConnectionFlags } from './connection.js';
import { describeError } from './errors.js';
import { Output } from './output.js';
import { copy } from './cp.js';
import { listFiles } from './ls.js';
import { pipInstall } from './pip.js';
import { runRepl } from './repl.js';
import { runProgram } from './run.js';
import { createSession, listSessions, removeSessions } from './sessions.js';
import { showStatus } from './status.js';
import { untilLeft } from './tasks.js';
import type { Client } from './connection.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

const wholeSeconds = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('give a whole number of seconds (0: the worker default)');
  return n;
};

const EXIT_STATUS = '\n\nExit status: 0 done; 1 failed (one line on stderr says why); 2 usage error.';

const CREDENTIALS = `
Where and who: --addr or COORDINATOR_ADDR (default ${DEFAULT_ADDR}); the credential from --token or
CLIENT_TOKEN, else the file CLIENT_TOKEN_FILE, else the client-token a coordinator on this host made
in CODEGEN_STATE_DIR (~/.local/state/codegen-mcp); TLS_CA and TLS_SERVER_NAME for a TLS coordinator.`;

export async function runClient(argv: string[]): Promise<number> {
  // `run … -- ARGS`: what follows `--` is the program's, never ours.
  let passthrough: string[] = [];
  if (argv[0] === 'run' && argv.includes('--')) {
    passthrough = argv.slice(argv.indexOf('--') + 1);
    argv = argv.slice(0, argv.indexOf('--'));
  }
  let exit = 0;
  let address = process.env['COORDINATOR_ADDR'] || DEFAULT_ADDR;
  let client: Client | undefined;
  /** The connection and output of one command's run (its flags name the coordinator). */
  const open = (flags: ConnectionFlags): { client: Client; out: Output } => {
    address = flags.addr || DEFAULT_ADDR;
    client = connect({ ...flags, addr: address });
    return { client, out: new Output(Boolean(flags.json)) };
  };

  const program = new Command('codegen-mcp')
    .exitOverride()
    // Our own one-line message below; help itself still goes to stdout.
    .configureOutput({ outputError: () => {} })
    .showSuggestionAfterError(true)
    .helpCommand(false);

  withConnection(program.command('sessions').description('list your sessions: state, worker, age, idle time, running tasks and usage'))
    .addHelpText('after', `${CREDENTIALS}${EXIT_STATUS}\n\nExample: codegen-mcp sessions --json | jq -r '.sessions[].session_id'`)
    .action(async (flags: ConnectionFlags) => {
      const { client, out } = open(flags);
      exit = await listSessions(client, out);
    });

  const sessionCmd = program.command('session').description('create or remove a session').usage('create|rm [options]').helpCommand(false);
  withConnection(
    sessionCmd
      .command('create')
      .description('make a session (its venv ready) and print its id alone on stdout')
      .option('-e, --env <KEY=VALUE>', "an environment variable of the session's programs (repeatable)", collect, [])
      .option('-m, --metadata <KEY=VALUE>', 'a metadata entry (repeatable)', collect, [])
      .option('--network', 'allow network access from the session', false)
      .option('--worker <id>', 'place it on this worker (default: the least-loaded)'),
  )
    .addHelpText('after', `${CREDENTIALS}${EXIT_STATUS}\n\nExample: S=$(codegen-mcp session create -e MODE=test)`)
    .action(async (flags: ConnectionFlags & { env: string[]; metadata: string[]; network: boolean; worker?: string }) => {
      const { client, out } = open(flags);
      exit = await createSession(client, out, flags);
    });
  withConnection(
    sessionCmd
      .command('rm')
      .description('destroy sessions and delete their files')
      .argument('<id...>', 'the sessions to destroy')
      .option('-f, --force', 'also when a task is running (it is cancelled)', false)
      .option('--checkpoint', 'checkpoint first and print its id (nothing is destroyed when that fails)', false),
  )
    .addHelpText('after', `${CREDENTIALS}${EXIT_STATUS}`)
    .action(async (ids: string[], flags: ConnectionFlags & { force: boolean; checkpoint: boolean }) => {
      const { client, out } = open(flags);
      exit = await removeSessions(client, out, ids, flags);
    });

  withConnection(
    program
      .command('run')
      .description('run a Python program in a session, its stdout and stderr streamed live, and exit with its exit code')
      .usage('FILE | -c CODE [options] [-- ARGS...]')
      .argument('[file]', 'a local .py file (sent as the code), - for stdin, or SESSION_ID:path for a file of the session')
      .argument('[args...]', "the program's arguments (after -- when one starts with -)")
      .option('-c, --code <code>', 'run this source instead of a file')
      .option('-s, --session <id>', 'run in this session (default: a throwaway session, destroyed afterwards)')
      .option('-t, --timeout <seconds>', 'stop the program after this long (0: the worker default, 300 s)', wholeSeconds, 0)
      .option('-e, --env <KEY=VALUE>', 'an environment variable of this run (repeatable)', collect, []),
  )
    .addHelpText(
      'after',
      `${CREDENTIALS}\n\nExit status: the program's own; 124 when it ran out of time; 130 after Ctrl-C (the task is cancelled);\n1 when it could not run (one line on stderr says why); 2 usage error.\n--json: JSON lines: {"type":"start",…}, {"type":"stdout"|"stderr","line":…} as they come, then {"type":"exit",…}.\n\nExamples:\n  codegen-mcp run train.py --session $S -- --epochs 3\n  codegen-mcp run -c 'import sys; print(sys.version)'`,
    )
    .action(async (file: string | undefined, args: string[], flags: ConnectionFlags & { code?: string; session?: string; timeout: number; env: string[] }) => {
      const { client, out } = open(flags);
      exit = await runProgram(client, out, file, [...args, ...passthrough], flags);
    });

  withConnection(
    program
      .command('cp')
      .description('copy one file between this machine and a session, either way, byte for byte (SESSION_ID:path names the session side; - is stdin/stdout)')
      .argument('<src>', 'a local file, -, or SESSION_ID:path')
      .argument('<dst>', 'a local file or folder, -, or SESSION_ID:path (a folder, or ending in /: the file goes into it)'),
  )
    .addHelpText('after', `${CREDENTIALS}${EXIT_STATUS}\n\nExamples:\n  codegen-mcp cp data.csv $S:inputs/\n  codegen-mcp cp $S:artifacts/plot.png .`)
    .action(async (src: string, dst: string, flags: ConnectionFlags) => {
      const { client, out } = open(flags);
      exit = await copy(client, out, src, dst);
    });

  withConnection(
    program
      .command('ls')
      .description("list a session's folder (its workspace root by default)")
      .argument('[path]', 'SESSION_ID:[path], or a path with --session')
      .option('-s, --session <id>', 'the session (instead of the SESSION_ID: prefix)')
      .option('-r, --recursive', 'list the folders below too (not inside .venv)', false)
      .option('--pattern <glob>', 'only names matching this glob (*.py; with a /, the path: pkg/**/*.py)')
      .option('-l, --long', 'sizes and modification times', false),
  )
    .addHelpText('after', `${CREDENTIALS}${EXIT_STATUS}\n\nExample: codegen-mcp ls -l $S:artifacts`)
    .action(async (path: string | undefined, flags: ConnectionFlags & { session?: string; recursive: boolean; pattern?: string; long: boolean }) => {
      const { client, out } = open(flags);
      exit = await listFiles(client, out, path, flags);
    });

  const pip = program.command('pip').description("install packages into a session's venv").usage('install PKG... --session ID').helpCommand(false);
  withConnection(
    pip
      .command('install')
      .description("install packages into the session's venv (pip, with the worker's pip configuration)")
      .argument('<packages...>', 'requirement specifiers (numpy, pandas>=2)')
      .requiredOption('-s, --session <id>', 'the session to install into')
      .option('-U, --upgrade', 'upgrade packages already installed', false)
      .option('--no-deps', 'do not install dependencies')
      .option('-i, --index-url <url>', 'the package index (needs a session with --network for http(s))')
      .option('-v, --verbose', "print pip's output on stderr as it comes", false),
  )
    .addHelpText('after', `${CREDENTIALS}${EXIT_STATUS} A package that failed to install is a failure.\n\nExample: codegen-mcp pip install numpy pandas --session $S`)
    .action(async (packages: string[], flags: ConnectionFlags & { session: string; upgrade: boolean; deps: boolean; indexUrl?: string; verbose: boolean }) => {
      const { client, out } = open(flags);
      exit = await pipInstall(client, out, packages, { session: flags.session, upgrade: flags.upgrade, noDeps: flags.deps === false, ...(flags.indexUrl ? { indexUrl: flags.indexUrl } : {}), verbose: flags.verbose });
    });

  withConnection(
    program
      .command('repl')
      .description("an interactive Python prompt in a session's persistent interpreter (python_exec): state stays between inputs")
      .option('-s, --session <id>', 'the session (default: a throwaway session, destroyed on exit)'),
  )
    .addHelpText('after', `${CREDENTIALS}\n\nA line ending in ':' continues until a blank line; Ctrl-C interrupts running code (or drops the input\nat the prompt); Ctrl-D exits; %reset starts a fresh interpreter. Piped input runs line by line without prompts.\n--json: JSON lines per input ({"type":"stdout"|"stderr",…}, then {"type":"result",…}).${EXIT_STATUS}`)
    .action(async (flags: ConnectionFlags & { session?: string }) => {
      const { client, out } = open(flags);
      exit = await runRepl(client, out, flags);
    });

  withConnection(program.command('status').description("the fleet: the coordinator's health, its workers and your sessions on each"))
    .addHelpText('after', `${CREDENTIALS}\n\nExit status: 0 healthy (SERVING, at least one worker online); 1 not (or unreachable); 2 usage error.`)
    .action(async (flags: ConnectionFlags) => {
      const { client, out } = open(flags);
      exit = await showStatus(client, out);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exit;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      // Help shown because a subcommand was missing (`codegen-mcp session`): a usage error.
      if (err.code === 'commander.help') return 2;
      const name = argv[0] === 'session' || argv[0] === 'pip' ? argv.slice(0, 2).filter((a) => !a.startsWith('-')).join(' ') : argv[0];
      const hint = err.code === 'commander.unknownOption' && name === 'run' ? "; the program's own options go after --" : '';
      process.stderr.write(`codegen-mcp ${name}: ${err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')}${hint} (see "codegen-mcp ${name} --help")\n`);
      return 2;
    }
    const report = describeError(err, address);
    if (argv.includes('--json')) process.stdout.write(`${JSON.stringify({ error: { code: report.code, message: report.message } })}\n`);
    process.stderr.write(`codegen-mcp: ${report.message}\n`);
    return report.exitCode;
  } finally {
    // Left by a signal: the connection stays open while the throwaway sessions are destroyed.
    const left = untilLeft();
    if (left) await left;
    client?.close();
  }
}
