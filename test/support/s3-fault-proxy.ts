import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small fault-injecting HTTP proxy in front of an S3 endpoint (test-only, issue 7). Requests
 * are forwarded unchanged unless a rule matches; a rule answers its first `times` matching
 * requests with a fault:
 *
 * - `500` / `503`: an S3 XML error (`InternalError` / `ServiceUnavailable`), nothing forwarded;
 * - `slowdown`: 503 `SlowDown` (S3's throttling answer);
 * - `reset`: the connection is destroyed before any response;
 * - `truncate`: the real response's headers (full Content-Length), half of its body, then the
 *   connection is destroyed (a body cut off mid-transfer);
 * - `short`: the real response cut at the last line end before its middle, with a
 *   Content-Length that matches (a consistent but short body, as from a broken intermediary:
 *   every remaining line still parses).
 */
/** `delete` is DeleteObject and DeleteObjects alike. */
export type S3Operation = 'list' | 'get' | 'head' | 'put' | 'copy' | 'delete' | 'other';
export type S3Fault = '500' | '503' | 'slowdown' | 'reset' | 'truncate' | 'short';

export interface FaultRule {
  op: S3Operation;
  fault: S3Fault;
  /** How many matching requests get the fault (then they pass). Default 1; Infinity: always. */
  times?: number;
  /** Only requests whose decoded path contains this text. */
  keyIncludes?: string;
}

export interface S3FaultProxy {
  endpoint: string;
  /** Replaces the rules (and resets their counters). */
  setRules(rules: FaultRule[]): void;
  /** Faults injected so far per rule index of the current rules. */
  injected(): number[];
  /** Requests seen per operation since the last setRules. */
  seen(): Record<S3Operation, number>;
  stop(): Promise<void>;
}

function operationOf(req: IncomingMessage): S3Operation {
  const url = new URL(req.url ?? '/', 'http://proxy');
  const segments = url.pathname.split('/').filter(Boolean);
  const hasKey = segments.length > 1;
  switch (req.method) {
    case 'GET':
      if (!hasKey && (url.searchParams.has('list-type') || url.searchParams.size === 0)) return 'list';
      return hasKey ? 'get' : 'other';
    case 'HEAD':
      return hasKey ? 'head' : 'other';
    case 'PUT':
      return req.headers['x-amz-copy-source'] ? 'copy' : 'put';
    case 'DELETE':
      return hasKey ? 'delete' : 'other';
    case 'POST':
      // DeleteObjects: `POST /<bucket>?delete` with the keys in the body.
      return !hasKey && url.searchParams.has('delete') ? 'delete' : 'other';
    default:
      return 'other';
  }
}

function xmlError(res: ServerResponse, status: number, code: string): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startS3FaultProxy(upstream: string): Promise<S3FaultProxy> {
  const target = new URL(upstream);
  let rules: FaultRule[] = [];
  let counts: number[] = [];
  let seen = emptySeen();
  const sockets = new Set<import('node:net').Socket>();

  function emptySeen(): Record<S3Operation, number> {
    return { list: 0, get: 0, head: 0, put: 0, copy: 0, delete: 0, other: 0 };
  }

  function forward(
    req: IncomingMessage,
    res: ServerResponse,
    onResponse?: (upstreamRes: IncomingMessage) => void,
  ): void {
    const proxied = request(
      {
        hostname: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host },
      },
      (upstreamRes) => {
        if (onResponse) onResponse(upstreamRes);
        else {
          res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
          upstreamRes.pipe(res);
        }
      },
    );
    proxied.on('error', () => res.destroy());
    req.pipe(proxied);
  }

  function cutBody(res: ServerResponse, upstreamRes: IncomingMessage, consistent: boolean): void {
    const chunks: Buffer[] = [];
    upstreamRes.on('data', (c: Buffer) => chunks.push(c));
    upstreamRes.on('end', () => {
      const body = Buffer.concat(chunks);
      // `short` ends at a line end before the middle: the worst case, the rest still parses.
      const middle = Math.floor(body.length / 2);
      const cut = consistent ? body.lastIndexOf(0x0a, middle) + 1 || middle : middle;
      const half = body.subarray(0, cut);
      const headers = { ...upstreamRes.headers };
      if (consistent) headers['content-length'] = String(half.length);
      res.writeHead(upstreamRes.statusCode ?? 200, headers);
      if (consistent) res.end(half);
      else res.write(half, () => res.socket?.destroy());
    });
  }

  const server: Server = createServer((req, res) => {
    const op = operationOf(req);
    seen[op]++;
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://proxy').pathname);
    const index = rules.findIndex(
      (rule, i) =>
        rule.op === op &&
        (rule.keyIncludes === undefined || path.includes(rule.keyIncludes)) &&
        counts[i]! < (rule.times ?? 1),
    );
    if (index < 0) return forward(req, res);
    counts[index]!++;
    const rule = rules[index]!;
    switch (rule.fault) {
      case '500':
        req.resume();
        return xmlError(res, 500, 'InternalError');
      case '503':
        req.resume();
        return xmlError(res, 503, 'ServiceUnavailable');
      case 'slowdown':
        req.resume();
        return xmlError(res, 503, 'SlowDown');
      case 'reset':
        req.socket.destroy();
        return;
      case 'truncate':
        return forward(req, res, (upstreamRes) => cutBody(res, upstreamRes, false));
      case 'short':
        return forward(req, res, (upstreamRes) => cutBody(res, upstreamRes, true));
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    setRules(next) {
      rules = next;
      counts = next.map(() => 0);
      seen = emptySeen();
    },
    injected: () => [...counts],
    seen: () => ({ ...seen }),
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
