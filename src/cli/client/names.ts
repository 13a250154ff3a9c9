/** The commands for people that talk to a coordinator (program.ts); main.ts routes these there. */
export const CLIENT_COMMANDS: ReadonlySet<string> = new Set(['sessions', 'session', 'run', 'cp', 'ls', 'pip', 'repl', 'status']);
