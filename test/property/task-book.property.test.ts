import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addRecord, emptyTaskBook, findRecord, liveRecords, MAX_TASK_RECORDS, recordOf, taskIdsOf, updateRecord, type TaskBook, type TaskRecord } from '../../machines/domain/tasks.js';

/**
 * The bounded task book of a session (both the worker's and the coordinator's proxy keep one):
 * generated runs of arrivals and endings against a plain model. Live tasks are never dropped,
 * the book keeps arrival order, holds at most MAX_TASK_RECORDS unless more are live, drops the
 * oldest finished first, and finds a task by id or by its client sequence while it is kept.
 */
const record = (n: number, sequence: number): TaskRecord => ({
  taskId: `t${n}`,
  tool: 'echo',
  sequence,
  state: 'queued',
  enqueuedAtMs: n,
  startedAtMs: 0,
  endedAtMs: 0,
  progress: null,
  outcome: null,
});

type Step = { kind: 'add'; withSequence: boolean } | { kind: 'end'; pick: number };
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('add' as const), withSequence: fc.boolean() }),
  fc.record({ kind: fc.constant('end' as const), pick: fc.nat() }),
);

describe('the task book', () => {
  it('keeps live tasks, arrival order and its bound, and finds what it keeps by id and sequence', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 900 }), (steps) => {
        let book: TaskBook = emptyTaskBook();
        let n = 0;
        const live = new Set<string>();
        const sequenceOf = new Map<string, number>();
        for (const s of steps) {
          if (s.kind === 'add') {
            n += 1;
            const seq = s.withSequence ? 10_000 + n : 0;
            book = addRecord(book, record(n, seq));
            live.add(`t${n}`);
            if (seq) sequenceOf.set(`t${n}`, seq);
          } else if (live.size > 0) {
            const id = [...live][s.pick % live.size]!;
            book = updateRecord(book, id, { state: 'succeeded', endedAtMs: n, outcome: { type: 'result', status: 'SUCCESS', artifacts: [], metadata: null } as never });
            live.delete(id);
          }
        }
        const ids = taskIdsOf(book);
        // arrival order
        expect(ids.map((id) => Number(id.slice(1)))).toEqual([...ids.map((id) => Number(id.slice(1)))].sort((a, b) => a - b));
        // every live task is there, live and findable
        for (const id of live) expect(recordOf(book, id)?.outcome).toBeNull();
        expect(liveRecords(book).map((r) => r.taskId).sort()).toEqual([...live].sort());
        // the bound: only live tasks may take it over MAX_TASK_RECORDS
        expect(book.records.length).toBeLessThanOrEqual(Math.max(MAX_TASK_RECORDS, live.size));
        // the finished ones kept are the newest finished ones
        const finishedKept = book.records.filter((r) => r.outcome !== null).length;
        if (book.records.length < n) expect(book.records.length === MAX_TASK_RECORDS || finishedKept === 0).toBe(true);
        // sequences name kept tasks only, and find them
        for (const [id, seq] of sequenceOf) {
          const kept = recordOf(book, id);
          expect(findRecord(book, { sequence: seq })?.taskId).toBe(kept ? id : undefined);
        }
        for (const id of Object.values(book.sequences)) expect(recordOf(book, id)).toBeDefined();
      }),
      { numRuns: 60 },
    );
  });

  it('does not change the book an update came from', () => {
    const a = addRecord(emptyTaskBook(), record(1, 0));
    const b = updateRecord(a, 't1', { state: 'running' });
    expect(recordOf(a, 't1')!.state).toBe('queued');
    expect(recordOf(b, 't1')!.state).toBe('running');
    expect(updateRecord(a, 'missing', { state: 'running' })).toBe(a);
  });
});
