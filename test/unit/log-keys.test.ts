/** Log keys are unique: a component inside another keeps one `component` key (pino writes every level's bindings), and the test helpers' check of that finds a repeat. */
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Writable } from 'node:stream';
import { componentLogger } from '../../src/log/logger.js';
import { repeatedTopLevelKey } from '../helpers/system.js';

const capture = () => {
  const lines: string[] = [];
  const stream = new Writable({ write: (chunk, _enc, done) => (lines.push(...String(chunk).split('\n').filter(Boolean)), done()) });
  return { lines, logger: pino({ base: { pid: 1 } }, stream) };
};

describe('log keys', () => {
  it('the repeat check sees what JSON.parse hides, and nothing in nested objects or strings', () => {
    expect(repeatedTopLevelKey('{"a":1,"b":{"a":2},"c":"\\"a\\":","a":3}')).toBe('a');
    expect(repeatedTopLevelKey('{"a":1,"b":{"a":2,"x":[{"a":1}]},"c":"\\",\\"a\\":"}')).toBeUndefined();
    const { lines, logger } = capture();
    logger.child({ component: 'outer' }).child({ component: 'inner' }).info('twice');
    expect(repeatedTopLevelKey(lines[0]!)).toBe('component');
  });

  it('a component made inside another keeps one component key, with the outer name and the inner bindings', () => {
    const { lines, logger } = capture();
    const http = componentLogger(logger, 'mcp-http');
    componentLogger(http, 'mcp', { connection: 'c-1' }).info('nested');
    componentLogger(logger, 'auth').info('alone');
    expect(lines.map(repeatedTopLevelKey)).toEqual([undefined, undefined]);
    expect(JSON.parse(lines[0]!)).toMatchObject({ component: 'mcp-http', connection: 'c-1', msg: 'nested' });
    expect(JSON.parse(lines[1]!)).toMatchObject({ component: 'auth', msg: 'alone' });
  });
});
