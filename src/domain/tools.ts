// Tool types are pure data shared with the machines.
export * from '../../machines/domain/tools.js';
