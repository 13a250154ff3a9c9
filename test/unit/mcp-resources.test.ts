import { afterEach, describe, expect, it } from 'vitest';
import { connectInProcess, FakeCoordinatorPort, type InProcessMcp } from '../helpers/fake-coordinator-port.js';

let mcp: InProcessMcp | undefined;
afterEach(async () => {
  await mcp?.close();
  mcp = undefined;
});
const sc = (r: unknown) => (r as { structuredContent: Record<string, any> }).structuredContent;

describe('files as resources', () => {
  it('artifact_get returns the bytes as an embedded resource with a MIME type', async () => {
    const port = new FakeCoordinatorPort();
    mcp = await connectInProcess(port);
    const bytes = Buffer.from([0x50, 0x4b, 3, 4, 0, 255, 1, 2]);
    await mcp.client.callTool({ name: 'fs_write', arguments: { path: 'artifacts/out.zip', contents: bytes.toString('base64'), encoding: 'base64', create_dirs: true } });
    const r = await mcp.client.callTool({ name: 'artifact_get', arguments: { artifact_id: 'out.zip' } });
    expect(r.isError).toBeFalsy();
    const s = sc(r);
    expect(s).toMatchObject({ artifact_id: 'out.zip', size_bytes: 8, content_type: 'application/zip' });
    expect(s['uri']).toBe(`session://${s['session_id']}/files/artifacts/out.zip`);
    const res = (r.content as Array<any>).find((c) => c.type === 'resource');
    expect(res.resource).toMatchObject({ uri: s['uri'], mimeType: 'application/zip' });
    expect(Buffer.from(res.resource.blob, 'base64')).toEqual(bytes);
    expect(JSON.stringify(s)).not.toContain(bytes.toString('base64'));
  });

  it('lists a resource template for session files', async () => {
    mcp = await connectInProcess();
    const { resourceTemplates } = await mcp.client.listResourceTemplates();
    expect(resourceTemplates.map((t) => t.uriTemplate)).toEqual(['session://{session_id}/files/{+path}']);
  });

  it("lists the files of the connection's sessions, and none before it has any", async () => {
    mcp = await connectInProcess();
    expect((await mcp.client.listResources()).resources).toEqual([]);
    await mcp.client.callTool({ name: 'fs_write', arguments: { path: 'src/main.py', contents: 'print 1' } });
    await mcp.client.callTool({ name: 'fs_write', arguments: { path: 'notes.md', contents: '# hi' } });
    const { resources } = await mcp.client.listResources();
    expect(resources.map((r) => r.name).sort()).toEqual(['notes.md', 'src/main.py']);
    expect(resources.find((r) => r.name === 'src/main.py')).toMatchObject({ mimeType: 'text/x-python' });
  });

  it('reads text and binary files by URI', async () => {
    mcp = await connectInProcess();
    const w = sc(await mcp.client.callTool({ name: 'fs_write', arguments: { path: 'dir/a b.txt', contents: 'hello' } }));
    await mcp.client.callTool({ name: 'fs_write', arguments: { path: 'bin.dat', contents: Buffer.from([0xff, 0xfe, 0]).toString('base64'), encoding: 'base64' } });
    const sid = w['session_id'];
    const { resources } = await mcp.client.listResources();
    const uri = resources.find((r) => r.name === 'dir/a b.txt')!.uri;
    expect(uri).toBe(`session://${sid}/files/dir/a%20b.txt`);
    const text = await mcp.client.readResource({ uri });
    expect(text.contents[0]).toMatchObject({ uri, mimeType: 'text/plain', text: 'hello' });
    const bin = await mcp.client.readResource({ uri: `session://${sid}/files/bin.dat` });
    expect(Buffer.from((bin.contents[0] as { blob: string }).blob, 'base64')).toEqual(Buffer.from([0xff, 0xfe, 0]));
  });

  it('answers resource-not-found for a missing file or another connection\'s default session', async () => {
    const port = new FakeCoordinatorPort();
    mcp = await connectInProcess(port);
    const other = await connectInProcess(port);
    try {
      const theirs = sc(await other.client.callTool({ name: 'fs_write', arguments: { path: 'secret.txt', contents: 's' } }))['session_id'];
      await expect(mcp.client.readResource({ uri: `session://${theirs}/files/secret.txt` })).rejects.toMatchObject({ code: -32002 });
      const mine = sc(await mcp.client.callTool({ name: 'echo', arguments: { message: 'x' } }))['session_id'];
      await expect(mcp.client.readResource({ uri: `session://${mine}/files/missing.txt` })).rejects.toMatchObject({ code: -32002 });
    } finally {
      await other.close();
    }
  });
});
