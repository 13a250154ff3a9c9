import { describe, expect, it } from 'vitest';
import { limitsOf } from '../../src/wire/worker-codecs.js';
import { limitsFor } from '../../src/worker/session-actors.js';

describe("a session's limits", () => {
  const worker = { memoryBytes: 1024 ** 3, maxProcesses: 256, cpuSecondsPerTask: 600, cpuMillicores: 0 };

  it("are the worker's when the session asks for none", () => {
    expect(limitsFor(worker, undefined)).toEqual(worker);
  });

  it('take less than the worker allows, and never more', () => {
    expect(limitsFor(worker, { max_memory_bytes: 256 * 1024 ** 2, max_cpu_millicores: 500 })).toEqual({ ...worker, memoryBytes: 256 * 1024 ** 2, cpuMillicores: 500 });
    expect(limitsFor(worker, { max_memory_bytes: 64 * 1024 ** 3, max_cpu_millicores: 0 }).memoryBytes).toBe(1024 ** 3);
  });

  it('are read from SessionConfig.limits, refusing negative or fractional values by field name', () => {
    expect(limitsOf({ max_memory_bytes: '1048576', max_cpu_millicores: 0 }, 'config.limits')).toEqual({ limits: { max_memory_bytes: 1048576, max_cpu_millicores: 0 } });
    expect(limitsOf({ max_memory_bytes: 0, max_cpu_millicores: 0 }, 'config.limits')).toEqual({});
    expect(() => limitsOf({ max_memory_bytes: -1 }, 'config.limits')).toThrow(/config\.limits\.max_memory_bytes: must be a non-negative whole number/);
    expect(() => limitsOf({ max_cpu_millicores: 1.5 }, 'config.limits')).toThrow(/config\.limits\.max_cpu_millicores/);
  });
});
