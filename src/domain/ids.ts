import { randomBytes } from 'node:crypto';

/** Unguessable ids: a readable prefix and 128 random bits. */
export const newSessionId = (): string => `sess-${randomBytes(16).toString('hex')}`;
export const newTaskId = (): string => `task-${randomBytes(12).toString('hex')}`;
export const newRegistrationId = (): string => `reg-${randomBytes(12).toString('hex')}`;
export const newRequestId = (): string => randomBytes(8).toString('hex');

/** Session ids become folder names on workers: only this shape is accepted from the wire. */
export const sessionIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const isSafeId = (id: string): boolean => sessionIdPattern.test(id) && id !== '.' && id !== '..' && !id.includes('..');
