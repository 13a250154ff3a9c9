import { z } from 'zod';

/** Problems with configuration, all of them at once, each naming the variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** `--max-sessions 3` and `--max-sessions=3` become MAX_SESSIONS=3; a bare `--flag` becomes "true". */
export function flagsToEnv(argv: readonly string[], known: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const problems: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      problems.push(`unexpected argument ${JSON.stringify(arg)}`);
      continue;
    }
    const [rawName, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const name = rawName.toUpperCase().replace(/-/g, '_');
    if (!known.includes(name)) {
      problems.push(`unknown option --${rawName}`);
      continue;
    }
    if (inline !== undefined) out[name] = inline;
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) out[name] = argv[++i]!;
    else out[name] = 'true';
  }
  if (problems.length) throw new ConfigError(problems);
  return out;
}

/** Validates env (flags already merged in) against a schema of the process's variables. */
export function parseConfig<S extends z.ZodObject>(schema: S, env: Record<string, string | undefined>): z.infer<S> {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const v = env[key];
    if (v !== undefined && v !== '') picked[key] = v;
  }
  const result = schema.safeParse(picked);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${i.path.join('.') || '(config)'}: ${i.message}${picked[String(i.path[0])] !== undefined ? ` (got ${JSON.stringify(picked[String(i.path[0])])})` : ''}`));
  }
  return result.data;
}

export const port = (def: number) => z.coerce.number().int().min(0).max(65535).default(def);
export const positiveInt = (def: number) => z.coerce.number().int().positive().default(def);
export const seconds = (def: number) => z.coerce.number().min(0).default(def);
export const bool = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(def ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');
/** A size in bytes: 1073741824, or with a unit (512MiB, 1GiB, 1G, 100k). */
export const bytes = (def: number) =>
  z
    .string()
    .default(String(def))
    .transform((v, ctx) => {
      const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(v);
      if (!m) {
        ctx.addIssue({ code: 'custom', message: 'must be a size in bytes, e.g. 1073741824 or 1GiB' });
        return z.NEVER;
      }
      const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
      return Math.round(Number(m[1]) * unit);
    });
export const logLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info');
export const list = z
  .string()
  .default('')
  .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean));

/** STATELY_INSPECT_URL: '' (off) or a ws:// / wss:// URL. */
export const inspectUrl = z
  .string()
  .default('')
  .refine((v) => v === '' || /^wss?:\/\/[^\s/]+/.test(v), { error: 'must be a ws:// or wss:// URL (e.g. the one `codegen-mcp inspect` prints), or empty' });
