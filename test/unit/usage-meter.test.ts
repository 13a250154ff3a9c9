import { describe, expect, it } from 'vitest';
import { UsageMeter } from '../../src/worker/usage.js';

describe('the usage meter', () => {
  it("reads a session's cgroup at most every 250 ms and its disk at most every second, showing the last reading in between", async () => {
    let reads = 0;
    let disks = 0;
    let cpuTimeMs = 0;
    const meter = new UsageMeter(
      () => {
        reads += 1;
        return { memoryBytes: 1000 * reads, cpuTimeMs };
      },
      async () => {
        disks += 1;
        return 4096 * disks;
      },
    );
    expect(meter.usageOf('s', 0)).toEqual({ memoryBytes: 1000, cpuMillicores: 0, diskBytes: 0 });
    await Promise.resolve();
    cpuTimeMs = 100;
    // 5 ms later (a short task's second report): the same reading, the disk figure that came in meanwhile.
    expect(meter.usageOf('s', 5)).toEqual({ memoryBytes: 1000, cpuMillicores: 0, diskBytes: 4096 });
    expect(reads).toBe(1);
    // 250 ms on: read again; CPU is averaged over the time since the last reading.
    expect(meter.usageOf('s', 250)).toEqual({ memoryBytes: 2000, cpuMillicores: 400, diskBytes: 4096 });
    expect([reads, disks]).toEqual([2, 1]);
    meter.usageOf('s', 1000);
    expect(disks).toBe(2);
    meter.forget('s');
    meter.usageOf('s', 1001);
    expect([reads, disks]).toEqual([4, 3]);
  });
});
