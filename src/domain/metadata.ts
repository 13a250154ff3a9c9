import { invalidArgument } from './errors.js';

/**
 * A session's metadata travels in every report of its session and in its worker's registration
 * (with every other session it holds): it is kept small, like labels, so a registration of
 * thousands of sessions stays well within a gRPC message.
 */
export const MAX_METADATA_BYTES = 4096;

const bytesOf = (metadata: Record<string, string>): number => {
  let n = 0;
  for (const [k, v] of Object.entries(metadata)) n += Buffer.byteLength(k) + Buffer.byteLength(v);
  return n;
};

/** Metadata as it would be after the call (merged or replaced), refused when it grows past the limit. */
export function checkMetadataSize(after: Record<string, string>, field = 'metadata'): void {
  const size = bytesOf(after);
  if (size > MAX_METADATA_BYTES) throw invalidArgument(field, `a session's metadata is at most ${MAX_METADATA_BYTES} bytes of keys and values; this would make it ${size}`);
}
