import { invalidArgument } from './errors.js';

const envNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Environment variable names as a shell and execve take them: letters, digits and _, no leading digit. */
export const isEnvName = (name: string): boolean => envNamePattern.test(name);

/** User-given environment variables, checked: valid names, string values without NUL bytes. */
export function checkEnvVars(vars: Record<string, unknown> | undefined, field: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(vars ?? {})) {
    if (!isEnvName(name)) throw invalidArgument(`${field}.${name}`, 'is not a valid environment variable name (letters, digits and _, not starting with a digit)');
    if (typeof value !== 'string' || value.includes('\0')) throw invalidArgument(`${field}.${name}`, 'the value must be a string without NUL bytes');
    out[name] = value;
  }
  return out;
}
