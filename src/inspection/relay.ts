/**
 * `codegen-mcp inspect`: a relay between our processes (STATELY_INSPECT_URL) and the Stately
 * inspector open in a browser. It speaks the protocol of @statelyai/inspect's inspector server
 * (every message from one client goes to every other; the last ones are replayed to a viewer
 * that comes late) and serves the same bridge page, which embeds the hosted inspector. The
 * package's own server listens on every interface with no authentication, so this one binds
 * loopback unless told otherwise, and drops a client that stops reading instead of buffering
 * for it without end.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, WebSocket } from 'ws';

export interface RelayOptions {
  host?: string;
  port?: number;
  /** The inspector page the bridge embeds. */
  inspectorUrl?: string;
  /** Messages replayed to a client that connects late. Default 1,000. */
  replay?: number;
  /** Bytes a client may leave unread before it is dropped. Default 16 MiB. */
  maxBufferedBytes?: number;
  /** Bytes of recent messages kept for the replay. Default 8 MiB. */
  replayBytes?: number;
  /** Largest message accepted. Default 4 MiB. */
  maxMessageBytes?: number;
}

export interface RunningRelay {
  port: number;
  host: string;
  /** Where the processes send (STATELY_INSPECT_URL). */
  wsUrl: string;
  /** The page to open in a browser. */
  pageUrl: string;
  clients(): number;
  close(): Promise<void>;
}

export const DEFAULT_INSPECTOR_PAGE = 'https://stately.ai/inspect';

const bridgePage = (inspectorUrl: string): string => `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>codegen-mcp · Stately inspector</title>
<style>*{margin:0;padding:0}html,body{height:100%}iframe{width:100%;height:100%;border:none}</style></head>
<body><iframe id="inspector" src="${inspectorUrl.replace(/"/g, '&quot;')}"></iframe>
<script>
  const iframe = document.getElementById('inspector');
  const buffer = [];
  let connected = false;
  window.addEventListener('message', (e) => {
    if (e.data && e.data.type === '@statelyai.connected') {
      connected = true;
      for (const ev of buffer) iframe.contentWindow.postMessage(ev, '*');
      buffer.length = 0;
    }
  });
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host);
  ws.onmessage = (m) => {
    const data = JSON.parse(m.data);
    if (connected) iframe.contentWindow.postMessage(data, '*'); else buffer.push(data);
  };
</script></body></html>`;

export async function startRelay(options: RelayOptions = {}): Promise<RunningRelay> {
  const host = options.host ?? '127.0.0.1';
  const replay = options.replay ?? 1_000;
  const maxBuffered = options.maxBufferedBytes ?? 16 * 1024 * 1024;
  const page = bridgePage(options.inspectorUrl ?? DEFAULT_INSPECTOR_PAGE);
  let port = 0;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  // DNS rebinding: only our own names in Host; and a browser page may connect only from the bridge
  // page itself (browsers let any site open a WebSocket to 127.0.0.1). Processes send no Origin.
  const hostOk = (h: string | undefined) => h !== undefined && [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${shownHost}:${port}`].includes(h.toLowerCase());
  const originOk = (o: string | undefined, h: string | undefined) => o === undefined || (h !== undefined && (o === `http://${h.toLowerCase()}` || o === `https://${h.toLowerCase()}`));
  const http: Server = createServer((req, res) => {
    if (!hostOk(req.headers.host)) {
      res.writeHead(403, { 'Content-Type': 'text/plain' }).end(`forbidden: Host ${JSON.stringify(req.headers.host ?? '')} is not this relay's\n`);
      return;
    }
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: open / for the inspector\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }).end(page);
  });
  const wss = new WebSocketServer({
    server: http,
    maxPayload: options.maxMessageBytes ?? 4 * 1024 * 1024,
    verifyClient: ({ origin, req }: { origin?: string; req: { headers: Record<string, string | string[] | undefined> } }) => {
      const h = req.headers['host'];
      const hostHeader = Array.isArray(h) ? h[0] : h;
      return hostOk(hostHeader) && originOk(origin || undefined, hostHeader);
    },
  });
  // ws re-emits the server's errors (a busy port): the listen below reports them.
  wss.on('error', () => {});
  // The replay is bounded in messages and in bytes.
  const recent: string[] = [];
  let recentBytes = 0;
  const replayBytes = options.replayBytes ?? 8 * 1024 * 1024;
  const deliver = (client: WebSocket, text: string) => {
    if (client.readyState !== WebSocket.OPEN) return;
    // A client that does not read is dropped: its unread bytes are the only memory it could grow.
    if (client.bufferedAmount > maxBuffered) {
      client.terminate();
      return;
    }
    client.send(text);
  };
  wss.on('connection', (ws) => {
    ws.on('error', () => ws.terminate());
    for (const text of recent) deliver(ws, text);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      recent.push(text);
      recentBytes += text.length;
      while (recent.length > replay || (recentBytes > replayBytes && recent.length > 0)) recentBytes -= recent.shift()!.length;
      for (const client of wss.clients) if (client !== ws) deliver(client, text);
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 8090, host, () => {
      http.off('error', reject);
      resolve();
    });
  });
  port = (http.address() as AddressInfo).port;
  const shown = shownHost;
  return {
    port,
    host,
    wsUrl: `ws://${shown}:${port}`,
    pageUrl: `http://${shown}:${port}/`,
    clients: () => wss.clients.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        http.close(() => resolve());
        http.closeAllConnections();
      }),
  };
}
