export * from './errors.js';
export * from './events.js';
export * from './sessions.js';
export * from './tasks.js';
export * from './tools.js';
