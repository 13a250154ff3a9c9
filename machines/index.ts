export * from './supervision.js';
export * from './task.machine.js';
export * from './session.machine.js';
export * from './worker-connection.machine.js';
export * from './coordinator.machine.js';
export * from './coordinator-link.machine.js';
export * from './worker.machine.js';
