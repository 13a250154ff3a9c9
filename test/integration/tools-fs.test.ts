import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArtifactGetOutput, FsListOutput, FsReadOutput, FsWriteOutput } from '../../src/domain/tools.js';
import { detectIsolation, setIsolation } from '../../src/sandbox/launch.js';
import type { ToolExecution } from '../../src/worker/tools/types.js';
import { makeBase, python, type TestBase, type TestSession } from '../fixtures/sessions.js';

const read = (e: ToolExecution): FsReadOutput => (e.reply.tool === 'fs_read' ? e.reply.output : fail(e));
const wrote = (e: ToolExecution): FsWriteOutput => (e.reply.tool === 'fs_write' ? e.reply.output : fail(e));
const listed = (e: ToolExecution): FsListOutput => (e.reply.tool === 'fs_list' ? e.reply.output : fail(e));
const artifact = (e: ToolExecution): ArtifactGetOutput => (e.reply.tool === 'artifact_get' ? e.reply.output : fail(e));
function fail(e: ToolExecution): never {
  throw new Error(`unexpected reply ${e.reply.tool}`);
}

const write = (p: string, contents: string, extra: { create_dirs?: boolean; encoding?: 'utf-8' | 'base64' } = {}) =>
  ({ tool: 'fs_write', input: { path: p, contents, create_dirs: extra.create_dirs ?? false, encoding: extra.encoding ?? 'utf-8' } }) as const;
const readCall = (p: string) => ({ tool: 'fs_read', input: { path: p } }) as const;
const list = (p: string, recursive = false, pattern = '') => ({ tool: 'fs_list', input: { path: p, recursive, pattern } }) as const;
const get = (id: string) => ({ tool: 'artifact_get', input: { artifact_id: id } }) as const;

let tb: TestBase;
let a: TestSession;
let b: TestSession;

beforeAll(async () => {
  setIsolation(await detectIsolation('auto'));
  tb = makeBase(2);
  a = await tb.session();
  b = await tb.session();
  writeFileSync(path.join(b.workspace, 'secret.txt'), 'B private');
  writeFileSync(path.join(b.workspace, 'artifacts', 'b-art.txt'), 'B artifact');
});
afterAll(async () => tb.cleanup());

describe('fs tools inside the workspace', () => {
  it('round-trips text and reports utf-8', async () => {
    expect(wrote(await a.run(write('notes/hello.txt', 'héllo\n', { create_dirs: true })))).toEqual({ path: 'notes/hello.txt', bytes_written: 7 });
    expect(read(await a.run(readCall('notes/hello.txt')))).toEqual({ contents: 'héllo\n', size_bytes: 7, encoding: 'utf-8' });
  });

  it('round-trips binary bytes with base64', async () => {
    const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 0x7f, 10, 13]);
    const w = wrote(await a.run(write('bin/data.bin', bytes.toString('base64'), { create_dirs: true, encoding: 'base64' })));
    expect(w.bytes_written).toBe(bytes.length);
    expect(readFileSync(path.join(a.workspace, 'bin/data.bin')).equals(bytes)).toBe(true);
    const r = read(await a.run(readCall('bin/data.bin')));
    expect(r.encoding).toBe('base64');
    expect(Buffer.from(r.contents, 'base64').equals(bytes)).toBe(true);
    expect(r.size_bytes).toBe(bytes.length);
  });

  it('refuses bad base64 naming the field, and an unknown encoding', async () => {
    await expect(a.run(write('x.bin', 'not base64!!', { encoding: 'base64' }))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/contents|encoding/),
    });
    await expect(a.run({ tool: 'fs_write', input: { path: 'x', contents: '', create_dirs: false, encoding: 'latin1' as 'utf-8' } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('encoding'),
    });
  });

  it('needs create_dirs for a missing folder, and says so', async () => {
    await expect(a.run(write('deep/er/file.txt', 'x'))).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining('create_dirs') });
    expect(wrote(await a.run(write('deep/er/file.txt', 'x', { create_dirs: true }))).bytes_written).toBe(1);
  });

  it('answers NOT_FOUND for a missing file and INVALID_ARGUMENT for a directory', async () => {
    await expect(a.run(readCall('nope.txt'))).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining('nope.txt') });
    await expect(a.run(readCall('notes'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(a.run(list('no-such-folder'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('lists recursively with globs, relative to the workspace root, sorted, without .venv contents', async () => {
    await a.run(write('proj/main.py', 'print(1)\n', { create_dirs: true }));
    await a.run(write('proj/pkg/util.py', 'x = 1\n', { create_dirs: true }));
    await a.run(write('proj/pkg/data.csv', 'a,b\n', { create_dirs: true }));
    await a.run(write('proj/readme.md', '# hi\n'));

    const all = listed(await a.run(list('proj', true)));
    expect(all.files.map((f) => f.path)).toEqual(['proj/main.py', 'proj/pkg', 'proj/pkg/data.csv', 'proj/pkg/util.py', 'proj/readme.md']);
    expect(all.total_count).toBe(5);
    const pkg = all.files.find((f) => f.path === 'proj/pkg')!;
    expect(pkg).toMatchObject({ name: 'pkg', is_directory: true });
    expect(all.files.find((f) => f.name === 'main.py')!.size_bytes).toBe(9);

    expect(listed(await a.run(list('proj', true, '*.py'))).files.map((f) => f.path)).toEqual(['proj/main.py', 'proj/pkg/util.py']);
    expect(listed(await a.run(list('proj', true, '**/*.py'))).files.map((f) => f.path)).toEqual(['proj/main.py', 'proj/pkg/util.py']);
    expect(listed(await a.run(list('proj', true, 'pkg/*'))).files.map((f) => f.path)).toEqual(['proj/pkg/data.csv', 'proj/pkg/util.py']);
    // With a slash the pattern is rooted at the listed folder (one level down here, not main.py); without one it is a name at any depth.
    expect(listed(await a.run(list('proj', true, '*/*.py'))).files.map((f) => f.path)).toEqual(['proj/pkg/util.py']);
    expect(listed(await a.run(list('proj', true, 'util.py'))).files.map((f) => f.path)).toEqual(['proj/pkg/util.py']);
    expect(listed(await a.run(list('proj', true, '/util.py'))).files.map((f) => f.path)).toEqual([]);
    expect(listed(await a.run(list('proj', false, '*.py'))).files.map((f) => f.path)).toEqual(['proj/main.py']);
    expect(listed(await a.run(list('proj', false, '[!m]*.??'))).files.map((f) => f.path)).toEqual(['proj/readme.md']);

    const root = listed(await a.run(list('', true)));
    expect(root.files.some((f) => f.path === '.venv' && f.is_directory)).toBe(true);
    expect(root.files.some((f) => f.path.startsWith('.venv/'))).toBe(false);
    const venv = listed(await a.run(list('.venv/bin', true)));
    expect(venv.files.some((f) => f.path === '.venv/bin/python')).toBe(true);
  });

  it('reads artifacts with a content type', async () => {
    await a.run(write('artifacts/plots/p.png', Buffer.from([0x89, 0x50, 0x4e, 0x47]).toString('base64'), { create_dirs: true, encoding: 'base64' }));
    const got = artifact(await a.run(get('plots/p.png')));
    expect(got).toMatchObject({ artifact_id: 'plots/p.png', size_bytes: 4, content_type: 'image/png' });
    expect(got.data.equals(Buffer.from([0x89, 0x50, 0x4e, 0x47]))).toBe(true);
    await a.run(write('artifacts/blob.weird', 'x'));
    expect(artifact(await a.run(get('blob.weird'))).content_type).toBe('application/octet-stream');
    await expect(a.run(get('missing.bin'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('echoes', async () => {
    expect((await a.run({ tool: 'echo', input: { message: 'ping' } })).reply).toEqual({ tool: 'echo', output: { message: 'ping' } });
  });
});

describe('path escapes are refused with PATH_VIOLATION', () => {
  const refused = { code: 'PATH_VIOLATION' };

  it('by .. and by absolute paths, NUL bytes and empty paths', async () => {
    const sibling = `../${b.id}/secret.txt`;
    for (const p of ['../outside.txt', 'a/../../outside.txt', sibling, '/etc/passwd', path.join(b.workspace, 'secret.txt'), 'bad\0name', '']) {
      await expect(a.run(readCall(p)), p).rejects.toMatchObject(refused);
      await expect(a.run(write(p, 'x', { create_dirs: true })), p).rejects.toMatchObject(refused);
    }
    await expect(a.run(list('..'))).rejects.toMatchObject(refused);
    await expect(a.run(list('/'))).rejects.toMatchObject(refused);
    await expect(a.run(get('../../etc/passwd'))).rejects.toMatchObject(refused);
    await expect(a.run(get(`../../${b.id}/artifacts/b-art.txt`))).rejects.toMatchObject(refused);
    await expect(a.run(get('/etc/passwd'))).rejects.toMatchObject(refused);
    // Inside the workspace but outside artifacts/.
    await expect(a.run(get('../notes/hello.txt'))).rejects.toMatchObject(refused);
    const message = await a.run(readCall('../outside.txt')).catch((e: Error) => e.message);
    expect(message).toContain('../outside.txt');
  });

  it('through symlinks that user code made, to / and to a sibling workspace', async () => {
    const made = await a.run(
      python(
        [
          'import os',
          'os.symlink("/", "to_root")',
          `os.symlink("../${b.id}", "to_sibling")`,
          `os.symlink("../../${b.id}/artifacts", "artifacts/to_sibling_artifacts")`,
          `os.symlink("../../${b.id}/secret.txt", "artifacts/secret_link.txt")`,
          `os.symlink("../${b.id}/new-file.txt", "dangling_out")`,
          'os.makedirs("inner", exist_ok=True)',
          'os.symlink("../notes", "inner/ok_link")',
          'print("made")',
        ].join('\n'),
      ),
    );
    expect(made.status).toBe('SUCCESS');

    for (const p of ['to_root/etc/passwd', 'to_sibling/secret.txt', 'artifacts/secret_link.txt']) {
      await expect(a.run(readCall(p)), p).rejects.toMatchObject(refused);
    }
    for (const p of ['to_root/tmp/evil.txt', 'to_sibling/evil.txt', 'to_sibling/secret.txt', 'dangling_out', 'artifacts/secret_link.txt']) {
      await expect(a.run(write(p, 'pwned', { create_dirs: true })), p).rejects.toMatchObject(refused);
    }
    for (const p of ['to_root', 'to_root/etc', 'to_sibling', 'artifacts/to_sibling_artifacts']) {
      await expect(a.run(list(p, true)), p).rejects.toMatchObject(refused);
    }
    for (const id of ['to_sibling_artifacts/b-art.txt', 'secret_link.txt']) {
      await expect(a.run(get(id)), id).rejects.toMatchObject(refused);
    }
    expect(readFileSync(path.join(b.workspace, 'secret.txt'), 'utf8')).toBe('B private');

    // The links themselves are listed, but never followed.
    const root = listed(await a.run(list('', true)));
    expect(root.files.find((f) => f.path === 'to_root')).toMatchObject({ is_directory: false });
    expect(root.files.some((f) => f.path.startsWith('to_root/') || f.path.startsWith('to_sibling/'))).toBe(false);

    // A link that stays inside the workspace works.
    expect(read(await a.run(readCall('inner/ok_link/hello.txt'))).contents).toBe('héllo\n');
  });

  it('through a symlinked parent folder made outside user code', async () => {
    mkdirSync(path.join(a.workspace, 'real-dir'), { recursive: true });
    symlinkSync(path.join(b.workspace), path.join(a.workspace, 'abs_link'));
    await expect(a.run(readCall('abs_link/secret.txt'))).rejects.toMatchObject(refused);
    await expect(a.run(write('abs_link/new.txt', 'x'))).rejects.toMatchObject(refused);
  });
});
