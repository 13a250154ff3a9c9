import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveInWorkspace } from '../../src/worker/workspace.js';

let base: string;
let ws: string;
let other: string;

beforeAll(() => {
  base = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'codegen-paths-')));
  ws = path.join(base, 'ws');
  other = path.join(base, 'other');
  mkdirSync(path.join(ws, 'sub', 'deeper'), { recursive: true });
  mkdirSync(other);
  writeFileSync(path.join(ws, 'sub', 'f.txt'), 'x');
  writeFileSync(path.join(other, 'secret'), 's');
  symlinkSync('sub', path.join(ws, 'inside-rel'));
  symlinkSync(path.join(ws, 'sub'), path.join(ws, 'inside-abs'));
  symlinkSync('/', path.join(ws, 'root'));
  symlinkSync('../other', path.join(ws, 'sibling'));
  symlinkSync('sub/../../other/secret', path.join(ws, 'sneaky'));
  symlinkSync('../other/not-yet', path.join(ws, 'dangling-out'));
  symlinkSync('sub/not-yet', path.join(ws, 'dangling-in'));
  symlinkSync('loop-b', path.join(ws, 'loop-a'));
  symlinkSync('loop-a', path.join(ws, 'loop-b'));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

const refused = { code: 'PATH_VIOLATION' };

describe('resolveInWorkspace', () => {
  it('resolves plain, nested, missing and dot paths inside the workspace', async () => {
    expect(await resolveInWorkspace(ws, 'sub/f.txt')).toBe(path.join(ws, 'sub/f.txt'));
    expect(await resolveInWorkspace(ws, './sub/./deeper/../f.txt')).toBe(path.join(ws, 'sub/f.txt'));
    expect(await resolveInWorkspace(ws, 'new/dir/file.txt', { forWrite: true })).toBe(path.join(ws, 'new/dir/file.txt'));
    expect(await resolveInWorkspace(ws, '', { allowEmpty: true })).toBe(ws);
    expect(await resolveInWorkspace(ws, '.')).toBe(ws);
  });

  it('follows symlinks that stay inside, to their real path', async () => {
    expect(await resolveInWorkspace(ws, 'inside-rel/f.txt')).toBe(path.join(ws, 'sub/f.txt'));
    expect(await resolveInWorkspace(ws, 'inside-abs/f.txt')).toBe(path.join(ws, 'sub/f.txt'));
    expect(await resolveInWorkspace(ws, 'inside-rel/new.txt', { forWrite: true })).toBe(path.join(ws, 'sub/new.txt'));
  });

  it('refuses empty paths, NUL bytes and absolute paths, naming the path', async () => {
    await expect(resolveInWorkspace(ws, '')).rejects.toMatchObject(refused);
    await expect(resolveInWorkspace(ws, 'a\0b')).rejects.toMatchObject(refused);
    await expect(resolveInWorkspace(ws, '/etc/passwd')).rejects.toMatchObject({ code: 'PATH_VIOLATION', message: expect.stringContaining('/etc/passwd') });
    await expect(resolveInWorkspace(ws, path.join(ws, 'sub'))).rejects.toMatchObject(refused);
  });

  it('refuses lexical escapes', async () => {
    for (const p of ['..', '../other/secret', 'sub/../../other', 'sub/deeper/../../../x']) {
      await expect(resolveInWorkspace(ws, p), p).rejects.toMatchObject({ code: 'PATH_VIOLATION', message: expect.stringContaining('leaves the workspace') });
    }
  });

  it('refuses symlinks anywhere on the way that lead outside, also dangling ones', async () => {
    for (const p of ['root', 'root/etc/passwd', 'sibling/secret', 'sibling', 'sneaky', 'dangling-out']) {
      await expect(resolveInWorkspace(ws, p), p).rejects.toMatchObject({ code: 'PATH_VIOLATION', message: expect.stringContaining('symbolic link') });
      await expect(resolveInWorkspace(ws, p, { forWrite: true }), p).rejects.toMatchObject(refused);
    }
  });

  it('treats a dangling link inside as missing for reads and refuses it for writes', async () => {
    await expect(resolveInWorkspace(ws, 'dangling-in')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(resolveInWorkspace(ws, 'dangling-in', { forWrite: true })).rejects.toMatchObject(refused);
  });

  it('does not hang on a symlink loop', async () => {
    await expect(resolveInWorkspace(ws, 'loop-a/x')).rejects.toMatchObject({ code: expect.stringMatching(/NOT_FOUND|PATH_VIOLATION/) });
  });

  it('works when the workspace path itself goes through a symlink', async () => {
    const alias = path.join(base, 'alias');
    symlinkSync(ws, alias);
    expect(await resolveInWorkspace(alias, 'sub/f.txt')).toBe(path.join(ws, 'sub/f.txt'));
    await expect(resolveInWorkspace(alias, 'sibling/secret')).rejects.toMatchObject(refused);
  });
});
