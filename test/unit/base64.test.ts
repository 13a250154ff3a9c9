import { describe, expect, it } from 'vitest';
import { decodeBase64 } from '../../src/worker/tools/fs-write.js';

describe('fs_write base64 contents', () => {
  it('decodes 48 MiB of base64 (a pattern of repeated groups used to overflow the regex stack: INTERNAL)', () => {
    const data = Buffer.alloc(48 * 1024 * 1024, 7);
    expect(decodeBase64(data.toString('base64'))?.equals(data)).toBe(true);
  });

  it('takes padded and unpadded, standard and URL-safe text, and refuses malformed text', () => {
    expect(decodeBase64('aGk=')?.toString()).toBe('hi');
    expect(decodeBase64('aGk')?.toString()).toBe('hi');
    expect(decodeBase64('aG k=\n')?.toString()).toBe('hi');
    expect(decodeBase64('-_8')?.toString('hex')).toBe('fbff');
    for (const bad of ['a', 'aG=k', 'a===', '*abc', 'aGk=aGk=']) expect(decodeBase64(bad), bad).toBeNull();
  });
});
