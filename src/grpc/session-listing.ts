import type * as grpc from '@grpc/grpc-js';
import type { SessionView } from '../domain/sessions.js';
import { encodeSessionStatus } from '../wire/codecs.js';

/**
 * ListSessions at 10,000 sessions: encoding the whole listing costs more than making it, so each
 * session's entry (a GetSessionStatusResponse) is encoded once per view and reused; the
 * coordinator's port hands out one view object per proxy snapshot, so a quiet session is
 * encoded once. The response is those entries framed as field 1 (`repeated sessions = 1`), and
 * the service's ListSessions serializer passes such bytes through unchanged.
 */
export function preEncodedListing(service: grpc.ServiceDefinition): { service: grpc.ServiceDefinition; encodeListing: (views: readonly SessionView[]) => Buffer } {
  const list = service['ListSessions'];
  const get = service['GetSessionStatus'];
  if (!list || !get) throw new Error('the SessionManagement service has no ListSessions or GetSessionStatus');
  const encodeEntry = get.responseSerialize as (value: unknown) => Buffer;
  const entries = new WeakMap<SessionView, Buffer>();
  const encodeListing = (views: readonly SessionView[]): Buffer => {
    const parts: Buffer[] = [];
    for (const view of views) {
      let entry = entries.get(view);
      if (!entry) {
        entry = encodeEntry(encodeSessionStatus(view));
        entries.set(view, entry);
      }
      parts.push(lengthDelimitedHeader(1, entry.length), entry);
    }
    return Buffer.concat(parts);
  };
  const serialize = list.responseSerialize as (value: unknown) => Buffer;
  return {
    service: { ...service, ListSessions: { ...list, responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : serialize(value)) } },
    encodeListing,
  };
}

/** The tag and length of a length-delimited protobuf field. */
function lengthDelimitedHeader(field: number, length: number): Buffer {
  const bytes = [(field << 3) | 2];
  let n = length;
  while (n > 0x7f) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}
