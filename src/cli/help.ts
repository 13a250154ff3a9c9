/** `codegen-mcp <command> --help`: what the command does and every variable it reads, with its default. */
import type { z } from 'zod';

export interface CommandHelp {
  usage: string;
  summary: string;
  /** The command's variables (a zod object of the process's environment). */
  schemas: z.ZodObject[];
}

/** Each variable with its default (parsed from an empty environment; '' shown as "—"). */
export function variablesOf(schemas: z.ZodObject[]): Array<[string, string]> {
  const out = new Map<string, string>();
  for (const schema of schemas) {
    const defaults = schema.safeParse({});
    const values = (defaults.success ? defaults.data : {}) as Record<string, unknown>;
    for (const key of Object.keys(schema.shape)) {
      if (out.has(key)) continue;
      const v = values[key];
      const shown = v === undefined || v === '' || (Array.isArray(v) && v.length === 0) ? '—' : Array.isArray(v) ? v.join(',') : String(v);
      out.set(key, shown);
    }
  }
  return [...out];
}

export function commandHelp(name: string, help: CommandHelp): string {
  const vars = variablesOf(help.schemas);
  const width = Math.max(...vars.map(([k]) => k.length), 8);
  const lines = vars.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`);
  return `${help.usage}\n\n${help.summary}\n\nVariables (each also a flag: MAX_SESSIONS=3 is --max-sessions 3), with their defaults:\n${lines.join('\n')}\n\nSee README.md (Configuration) for what each means; \`codegen-mcp --help\` lists the commands.\n`;
}
