import { assign, setup, sendTo, type ActorRefFrom, type CallbackActorLogic } from 'xstate';
import type { AbnormalExit } from './supervisor.machine.js';

/**
 * One operating-system process, as a supervised child: running until it exits; a stop asks it to
 * drain (the logic sends SIGTERM). Exit status 0 is a normal end; anything else ends the actor
 * with an abnormal exit, which its supervisor treats as a crash.
 */
export interface ProcessInput {
  name: string;
  args: string[];
  env: Record<string, string>;
}

export type ProcessEvent =
  | { type: 'process.stop' }
  | { type: 'process.exited'; code: number | null; signal: string | null };

export type ProcessOutput = AbnormalExit | { exit: 'normal'; reason: string };

export const processMachine = setup({
  types: {
    context: {} as ProcessInput & { exit: ProcessOutput | null },
    input: {} as ProcessInput,
    events: {} as ProcessEvent,
    output: {} as ProcessOutput,
  },
  actors: {
    // Provided by the command that runs processes: spawns it, reports its exit, SIGTERM on `terminate`, SIGKILL when stopped.
    run: {} as CallbackActorLogic<{ type: 'terminate' }, ProcessInput>,
  },
}).createMachine({
  id: 'process',
  context: ({ input }) => ({ ...input, exit: null }),
  initial: 'running',
  states: {
    running: {
      invoke: { id: 'run', src: 'run', input: ({ context }) => ({ name: context.name, args: context.args, env: context.env }) },
      on: {
        'process.stop': { actions: sendTo('run', { type: 'terminate' as const }) },
        'process.exited': {
          target: 'exited',
          actions: assign({
            exit: ({ context, event }): ProcessOutput =>
              event.code === 0 ? { exit: 'normal', reason: `${context.name} exited 0` } : { exit: 'abnormal', reason: `${context.name} exited with ${event.signal ? `signal ${event.signal}` : `code ${event.code}`}` },
          }),
        },
      },
    },
    exited: { type: 'final' },
  },
  output: ({ context }) => context.exit ?? { exit: 'abnormal', reason: `${context.name} ended without an exit status` },
});

export type ProcessActor = ActorRefFrom<typeof processMachine>;
