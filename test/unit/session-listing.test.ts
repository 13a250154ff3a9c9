/**
 * ListSessions sent as pre-encoded entries (src/grpc/session-listing.ts) must be the very
 * message the ordinary serializer makes: checked by decoding both with the real deserializer.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SessionView } from '../../src/domain/sessions.js';
import { preEncodedListing } from '../../src/grpc/session-listing.js';
import { encodeSessionStatus } from '../../src/wire/codecs.js';
import { loadProtos } from '../../src/wire/protos.js';

const service = loadProtos().services.SessionManagement.service;
const list = service['ListSessions']!;
const decode = (bytes: Buffer) => list.responseDeserialize(bytes) as unknown;
const ordinary = (views: readonly SessionView[]) => (list.responseSerialize as (v: unknown) => Buffer)({ sessions: views.map(encodeSessionStatus) });

const text = fc.string({ maxLength: 300 });
const time = fc.nat({ max: 2 ** 45 });
const view: fc.Arbitrary<SessionView> = fc.record({
  sessionId: fc.stringMatching(/^sess-[0-9a-f]{1,32}$/),
  workerId: text,
  workspaceId: text,
  userId: text,
  tenant: text,
  workspacePath: text,
  state: fc.constantFrom('INITIALIZING', 'READY', 'BUSY', 'IDLE', 'DRAINING', 'TERMINATED', 'FAILED'),
  createdAtMs: time,
  lastActivityMs: time,
  activeTasks: fc.nat({ max: 1000 }),
  recentTasks: fc.array(text, { maxLength: 5 }),
  metadata: fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }), text, { maxKeys: 5 }),
  failureReason: text,
  restartedAtMs: time,
  survivalNote: text,
  unreachableSinceMs: time,
  usage: fc.record({ memoryBytes: time, cpuMillicores: fc.nat({ max: 64_000 }), diskBytes: time }),
  limits: fc.record({ memoryBytes: time, maxProcesses: fc.nat({ max: 100_000 }), cpuSecondsPerTask: fc.nat({ max: 100_000 }), cpuMillicores: fc.nat({ max: 64_000 }), diskBytes: time }),
});

describe('ListSessions from pre-encoded entries', () => {
  it('decodes to the same message as the ordinary serializer, for any views (entries shorter and longer than 127 bytes)', () => {
    const { encodeListing } = preEncodedListing(service);
    fc.assert(
      fc.property(fc.array(view, { maxLength: 20 }), (views) => {
        expect(decode(encodeListing(views))).toEqual(decode(ordinary(views)));
      }),
    );
  });

  it('encodes a view once and reuses the bytes while the view object is the same; a new view is encoded anew', () => {
    const get = service['GetSessionStatus']!;
    let encoded = 0;
    const counting = { ...service, GetSessionStatus: { ...get, responseSerialize: (v: unknown) => (encoded++, (get.responseSerialize as (v: unknown) => Buffer)(v)) } };
    const { service: wrapped, encodeListing } = preEncodedListing(counting);
    const a = fc.sample(view, { numRuns: 1, seed: 1 })[0]!;
    const first = encodeListing([a]);
    const again = encodeListing([a, a]);
    expect(encoded).toBe(1);
    expect(decode(again)).toEqual(decode(ordinary([a, a])));
    const changed = { ...a, state: 'BUSY' as const, activeTasks: a.activeTasks + 1 };
    expect(decode(encodeListing([changed]))).toEqual(decode(ordinary([changed])));
    expect(encoded).toBe(2);
    // The wrapped serializer passes bytes through and still serializes plain messages.
    expect((wrapped['ListSessions']!.responseSerialize as (v: unknown) => Buffer)(first)).toBe(first);
    expect(decode((wrapped['ListSessions']!.responseSerialize as (v: unknown) => Buffer)({ sessions: [encodeSessionStatus(a)] }))).toEqual(decode(first));
    expect(decode(encodeListing([]))).toEqual(decode(ordinary([])));
  });
});
