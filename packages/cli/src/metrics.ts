import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { S3Client } from '@aws-sdk/client-s3';
import type { PipelineEvent } from '@tributary/core';
import type pg from 'pg';
import { Counter, Gauge, Registry } from 'prom-client';
import type { StreamHealth } from './health.js';
import type { StreamSpec } from './spec.js';
import { readStatus } from './status.js';

export interface MetricsServer {
  port: number;
  onEvent(event: PipelineEvent): void;
  close(): Promise<void>;
}

/**
 * Prometheus metrics for watch mode (prom-client): files and rows applied, rows rejected, failures (counted
 * when they happen), seconds since the newest applied file, pending files. `/healthz` answers
 * 200 while every stream applies, 503 while any stream is failing, with each failing stream,
 * its file, error code and since when. Freshness and pending counts are read at scrape time
 * from the control schema and a listing.
 */
export async function startMetricsServer(
  port: number,
  deps: { client: S3Client; pool: pg.Pool; specs: readonly StreamSpec[]; health: StreamHealth },
): Promise<MetricsServer> {
  const registry = new Registry();
  const files = new Counter({
    name: 'tributary_files_applied_total',
    help: 'Files committed',
    labelNames: ['stream'],
    registers: [registry],
  });
  const rows = new Counter({
    name: 'tributary_rows_applied_total',
    help: 'Rows committed',
    labelNames: ['stream'],
    registers: [registry],
  });
  const rejected = new Counter({
    name: 'tributary_rows_rejected_total',
    help: 'Rows set aside (onError: skip-row) or in rejected files (skip-file), counted when their file commits',
    labelNames: ['stream'],
    registers: [registry],
  });
  // Rows set aside by the batches of each stream's open file, until it commits or fails.
  const rejectedInFile = new Map<string, number>();
  const failures = new Counter({
    name: 'tributary_failures_total',
    help: 'Times a stream stopped at a failure (counted when it happens)',
    labelNames: ['stream'],
    registers: [registry],
  });
  const freshness = new Gauge({
    name: 'tributary_seconds_since_newest_applied_file',
    help: 'Seconds since the time encoded in the newest applied file key',
    labelNames: ['stream'],
    registers: [registry],
  });
  const pending = new Gauge({
    name: 'tributary_pending_files',
    help: 'Files listed but not yet applied',
    labelNames: ['stream'],
    registers: [registry],
  });
  const refresh = async () => {
    const status = await readStatus(deps.client, deps.pool, deps.specs);
    for (const s of status) {
      if (s.lagSeconds !== null) freshness.set({ stream: s.stream }, s.lagSeconds);
      pending.set({ stream: s.stream }, s.pendingFiles);
    }
  };
  const server: Server = createServer((req, res) => {
    if (req.url === '/healthz') {
      const failing = deps.health.failing();
      // Healthy stays `ok` (the body probes already match); failing says what and since when.
      if (failing.length === 0) res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      else
        res
          .writeHead(503, { 'content-type': 'application/json' })
          .end(`${JSON.stringify({ ok: false, failing })}\n`);
      return;
    }
    if (req.url === '/metrics') {
      refresh()
        .catch(() => undefined)
        .then(() => registry.metrics())
        .then((body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body))
        .catch(() => res.writeHead(500).end());
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(port, '0.0.0.0', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    onEvent(event) {
      if (event.type === 'batch-written' && event.rejected) {
        rejectedInFile.set(event.stream, (rejectedInFile.get(event.stream) ?? 0) + event.rejected);
      } else if (event.type === 'committed') {
        files.inc({ stream: event.stream });
        rows.inc({ stream: event.stream }, event.rows);
        rejected.inc({ stream: event.stream }, rejectedInFile.get(event.stream) ?? 0);
        rejectedInFile.delete(event.stream);
      } else if (event.type === 'stream-failed') {
        failures.inc({ stream: event.stream });
        rejectedInFile.delete(event.stream);
      } else if (event.type === 'retry' && event.stream) {
        rejectedInFile.delete(event.stream);
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
