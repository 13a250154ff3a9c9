/**
 * The live view's routes under /live on the coordinator's HTTP port (the checks — Host, Origin,
 * an admin credential — are made by the caller, src/mcp/http.ts): the page and its assets, all
 * served from here (no CDN: it works on a closed network), the actor list a page at a time, one
 * actor with its events and its machine's definition, and a Server-Sent Events stream of one
 * actor's changes. Every stream is bounded: changes are coalesced per stream, a client that
 * stops reading is dropped, and the number of streams is capped.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LiveActor, LiveRegistry } from './registry.js';

const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

interface Asset {
  type: string;
  body: Buffer;
}

function loadAssets(): Map<string, Asset> {
  const dir = new URL('./assets/', import.meta.url);
  const read = (name: string) => readFileSync(new URL(name, dir));
  const elk = readFileSync(createRequire(import.meta.url).resolve('elkjs/lib/elk.bundled.js'));
  return new Map<string, Asset>([
    ['/live', { type: 'text/html; charset=utf-8', body: read('live.html') }],
    ['/live/assets/live.js', { type: 'text/javascript; charset=utf-8', body: read('live.js') }],
    ['/live/assets/live.css', { type: 'text/css; charset=utf-8', body: read('live.css') }],
    ['/live/assets/elk.js', { type: 'text/javascript; charset=utf-8', body: elk }],
  ]);
}

export interface LiveRoutesOptions {
  /** Streams open at once (beyond: 503). Default 100. */
  maxStreams?: number;
  /** Bytes a stream may leave unread before it is dropped. Default 1 MiB. */
  maxBufferedBytes?: number;
  /** How often a stream sends what changed, and its summary. Defaults 100 ms and 1 s. */
  flushMs?: number;
  summaryMs?: number;
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)), 'Cache-Control': 'no-store' });
  res.end(text);
};

const matches = (a: LiveActor, q: string): boolean => a.id.toLowerCase().includes(q) || a.machine.toLowerCase().includes(q) || a.process.toLowerCase().includes(q) || JSON.stringify(a.value).toLowerCase().includes(q);

const brief = (a: LiveActor & { depth?: number }) => ({
  key: a.key,
  process: a.process,
  id: a.id,
  machine: a.machine,
  parent: a.parent,
  status: a.status,
  value: a.value,
  lastEvent: a.events.at(-1) ?? null,
  updatedAtMs: a.updatedAtMs,
  depth: a.depth ?? 0,
});

export function liveRoutes(registry: LiveRegistry, opts: LiveRoutesOptions = {}) {
  const assets = loadAssets();
  const maxStreams = opts.maxStreams ?? 100;
  const maxBuffered = opts.maxBufferedBytes ?? 1024 * 1024;
  let streams = 0;

  function list(url: URL, res: ServerResponse): void {
    const offset = Math.max(0, Math.floor(Number(url.searchParams.get('offset') ?? 0)) || 0);
    const limit = Math.min(500, Math.max(1, Math.floor(Number(url.searchParams.get('limit') ?? 100)) || 100));
    const q = (url.searchParams.get('q') ?? '').trim().toLowerCase().slice(0, 200);
    const all = registry.sorted();
    const counts = new Map<string, number>();
    for (const a of all) counts.set(a.process, (counts.get(a.process) ?? 0) + 1);
    const shown = q ? all.filter((a) => matches(a, q)) : all;
    json(res, 200, {
      total: shown.length,
      offset,
      limit,
      revision: registry.revision,
      processes: [...counts].map(([process, count]) => ({ process, count })),
      actors: shown.slice(offset, offset + limit).map(brief),
    });
  }

  function one(url: URL, res: ServerResponse): void {
    const key = url.searchParams.get('key') ?? '';
    const a = registry.get(key);
    if (!a) return json(res, 404, { error: `no live actor ${JSON.stringify(key)}: it stopped, or its worker went away` });
    json(res, 200, { actor: brief(a), events: a.events, definition: a.machine ? (registry.definition(a.machine, a.process) ?? null) : null });
  }

  function stream(req: IncomingMessage, url: URL, res: ServerResponse): void {
    if (streams >= maxStreams) return json(res, 503, { error: `${streams} live streams are open, the most this coordinator serves; close a live view tab` });
    const key = url.searchParams.get('key') ?? '';
    streams++;
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.write(`retry: 2000\n\n`);
    let pending: LiveActor | undefined | null = null; // null: nothing owed
    let lastRevision = -1;
    const send = (event: string, data: unknown) => {
      // A viewer that stopped reading is dropped rather than buffered for.
      if (res.writableLength > maxBuffered) return close();
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const flush = () => {
      if (pending === null) return;
      const a = pending;
      pending = null;
      if (a === undefined) send('gone', { key });
      else send('snapshot', { key, value: a.value, status: a.status, events: a.events.slice(-10) });
    };
    const summary = () => {
      if (registry.revision === lastRevision) return;
      lastRevision = registry.revision;
      send('summary', { total: registry.size, revision: registry.revision });
    };
    const unwatch = key ? registry.watch(key, (a) => (pending = a)) : () => {};
    const current = key ? registry.get(key) : undefined;
    if (key) pending = current;
    flush();
    summary();
    const flushTimer = setInterval(flush, opts.flushMs ?? 100);
    const summaryTimer = setInterval(summary, opts.summaryMs ?? 1_000);
    let closed = false;
    function close() {
      if (closed) return;
      closed = true;
      streams--;
      clearInterval(flushTimer);
      clearInterval(summaryTimer);
      unwatch();
      res.destroy();
    }
    req.on('close', close);
    res.on('close', close);
    res.on('error', close);
  }

  /** Answers a /live request; false when the path is not one of ours. */
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    const url = new URL(req.url ?? '/', 'http://live.invalid');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: 'use GET' });
      return true;
    }
    if (path === '/live/api/stream' && req.method === 'HEAD') {
      json(res, 405, { error: 'the stream takes GET' });
      return true;
    }
    const asset = assets.get(path);
    if (asset) {
      res.writeHead(200, { 'Content-Type': asset.type, 'Content-Length': String(asset.body.length), 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-cache' });
      res.end(req.method === 'HEAD' ? undefined : asset.body);
      return true;
    }
    if (path === '/live/api/actors') list(url, res);
    else if (path === '/live/api/actor') one(url, res);
    else if (path === '/live/api/stream') stream(req, url, res);
    else return false;
    return true;
  };
}
