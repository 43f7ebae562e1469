/**
 * CPU profile of the library's baseline apply (what `pnpm bench` measures as "ours"):
 *
 *   node --conditions=@tributary/source --import tsx --cpu-prof --cpu-prof-dir /tmp/prof \
 *     bench/profile.ts [--rows 34849] [--runs 3]
 *
 * Uses the same services as the benchmark (DATABASE_URL / S3_ENDPOINT or embedded ones).
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { applyLibrary, benchEnvironment, resetLibrary } from './lib/apply.js';
import { stageBaseline } from './lib/data.js';
import { startServices } from './lib/services.js';

const { values } = parseArgs({
  options: { rows: { type: 'string', default: '34849' }, runs: { type: 'string', default: '3' } },
});
const rows = Number(values.rows);
const services = await startServices((line) => process.stderr.write(`${line}\n`));
const pool = new pg.Pool({ connectionString: services.databaseUrl, max: 4 });
try {
  const { prefix } = await stageBaseline(services.s3Client, rows);
  for (let i = 0; i < Number(values.runs); i++) {
    await resetLibrary(pool);
    const started = performance.now();
    const result = await applyLibrary(services.s3Client, pool, benchEnvironment(services.s3, prefix));
    process.stderr.write(
      `run ${i + 1}: ${Math.round(performance.now() - started)} ms, ${result.rowsWritten} rows\n`,
    );
  }
} finally {
  await pool.end();
  await services.stop();
}
