/**
 * One memory measurement (run by bench/sections/memory.ts): reads its job as JSON on stdin,
 * applies the file under `<prefix>/inc/changes/` through the library and prints
 * `{ peakRssMiB, seconds, rowsRead }`. Peak RSS is this process's VmHWM (Linux), see peakRssMiB().
 */
import { readFileSync } from 'node:fs';
import { text } from 'node:stream/consumers';
import { localS3Client } from '@tributary/s3-source/testing';
import pg from 'pg';
import { applyLibrary, benchEnvironment } from './lib/apply.js';

const job = JSON.parse(await text(process.stdin)) as {
  databaseUrl: string;
  s3: { endpoint: string; region: string; accessKeyId?: string; secretAccessKey?: string };
  prefix: string;
};
const client = localS3Client(job.s3);
const pool = new pg.Pool({ connectionString: job.databaseUrl, max: 4 });
const started = performance.now();
const result = await applyLibrary(client, pool, benchEnvironment(job.s3, job.prefix));
const seconds = (performance.now() - started) / 1000;
await pool.end();
client.destroy();
process.stdout.write(`${JSON.stringify({ peakRssMiB: peakRssMiB(), seconds, rowsRead: result.rowsRead })}\n`);

/**
 * This process's own peak RSS. On Linux that is VmHWM: getrusage's maxRSS carries over the
 * parent's RSS at fork (the kernel keeps the larger of it across exec), so a child spawned by a
 * parent that just uploaded a 1 GB file "peaked" at the parent's size before doing anything.
 */
function peakRssMiB(): number {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(status);
    if (hwm) return Number(hwm[1]) / 1024;
  } catch {
    // Not Linux: maxRSS (KiB), an upper bound.
  }
  return process.resourceUsage().maxRSS / 1024;
}
