import { randomBytes, randomFillSync } from 'node:crypto';

// One system call per 256 ids rather than one per id (a create at 10,000 sessions/s notices).
const pool = Buffer.alloc(4096);
let poolAt = pool.length;
const randomHex = (bytes: number): string => {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const hex = pool.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return hex;
};

/** Unguessable ids: a readable prefix and 128 (sessions) or 96 random bits. */
export const newSessionId = (): string => `sess-${randomHex(16)}`;
export const newTaskId = (): string => `task-${randomHex(12)}`;
export const newRegistrationId = (): string => `reg-${randomHex(12)}`;
// Request ids only pair an answer with its question inside one process: unique, not secret.
const requestPrefix = randomBytes(4).toString('hex');
let requestCount = 0;
export const newRequestId = (): string => `${requestPrefix}-${(++requestCount).toString(36)}`;

/** Session ids become folder names on workers: only this shape is accepted from the wire. */
export const sessionIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const isSafeId = (id: string): boolean => sessionIdPattern.test(id) && id !== '.' && id !== '..' && !id.includes('..');
