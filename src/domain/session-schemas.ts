import { z } from 'zod';

/** SessionConfig as it is kept on disk (a session's description, a checkpoint's record): one schema for both. */
export const StoredSessionConfig = z.object({
  env_vars: z.record(z.string(), z.string()),
  allow_network: z.boolean(),
  language: z.string(),
  limits: z.object({ max_memory_bytes: z.number().int().nonnegative(), max_cpu_millicores: z.number().int().nonnegative() }).optional(),
});
