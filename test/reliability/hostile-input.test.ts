import { gzipSync } from 'node:zlib';
import { changeFiles, type GeneratedFile, generateBucket, TICKET_COLUMNS } from '@tributary/example-tickets';
import { describe, expect, it } from 'vitest';
import { type CliResult, runCli } from '../support/cli.js';
import { checkpointOf, exactProblems, putObject, SMALL, type World, world } from '../support/reliability.js';
import { diffAgainstOracle, listAll } from '../support/tickets.js';

/**
 * Hostile and broken input through the real binary (issue 7). A bad inc file sits between the
 * third and the last delta; each case must end with a clear error naming dataset, file and
 * (where it applies) line and column; the checkpoint stays on the previous file; the bad file
 * and the later one stay in changes/; earlier files stay applied; crq finishes exactly.
 * Inputs that are not errors (0-byte file, duplicate keys, injection-looking values) are
 * applied and the end state is exact.
 */

const BAD = 'automations/inc/changes/2026-06-22T17-12-00.csv';
const PREVIOUS = 'automations/inc/changes/2026-06-22T17-10-41.csv';
const LATER = 'automations/inc/changes/2026-06-22T17-15-41.csv';
const HEADER: string[] = [...TICKET_COLUMNS];

const field = (v: unknown) => {
  const text = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
};
const line = (values: readonly unknown[]) => `${values.map(field).join(',')}\n`;

/** Valid ticket rows (from the generated 17-10-41 delta) with fresh ids. */
const GENERATED = generateBucket({ scale: SMALL });
function validRows(n = 3): Record<string, unknown>[] {
  const from = GENERATED.find((f) => f.key === PREVIOUS)!;
  return [...from.rows()]
    .slice(0, n)
    .map((r, i) => ({ ...r, ticket_id: `INC9${String(i).padStart(7, '0')}` }));
}
const csv = (rows: Record<string, unknown>[], header: readonly string[] = HEADER) =>
  line(header) + rows.map((r) => line(header.map((c) => r[c]))).join('');

async function runBoth(w: World): Promise<CliResult> {
  return runCli(['run', '--dataset', 'inc,crq', '--apply', '--json'], w.env);
}

/** The invariant-6 checks shared by every error case. Returns the inc error line of stderr. */
async function expectStoppedAt(w: World, result: CliResult, key = BAD): Promise<string> {
  expect(result.code, result.stderr).toBe(1);
  const error = result.stderr.split('\n').find((l) => l.startsWith('tickets-pipeline: dataset inc:')) ?? '';
  expect(error, result.stderr).toContain(key);
  expect(String((await checkpointOf(w))?.['key'])).toBe(PREVIOUS);
  expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toEqual([key, LATER].sort());
  // Earlier files stay applied: inc equals the fold of every file before the bad one.
  const before = w.files.filter((f) => !(f.dataset === 'inc' && f.key >= BAD));
  expect(await diffAgainstOracle(w.db.pool, 'inc', before)).toEqual([]);
  expect(await exactProblems(w, ['crq'])).toEqual([]);
  const failures = await w.db.pool.query(
    `SELECT source FROM tributary.v_recent_failures WHERE stream = 'tickets/inc'`,
  );
  expect(failures.rows).toEqual([{ source: key }]);
  return error;
}

async function badFile(body: string | Buffer, key = BAD): Promise<{ w: World; error: string }> {
  const w = await world();
  await putObject(w, key, body);
  const result = await runBoth(w);
  return { w, error: await expectStoppedAt(w, result, key) };
}

/** A file that is not an error: added to the oracle, then everything must be exact. */
async function goodFile(w: World, key: string, rows: Record<string, unknown>[], body?: string | Buffer) {
  const file: GeneratedFile = { key, dataset: 'inc', kind: 'delta', rowCount: rows.length, rows: () => rows };
  w.files.push(file);
  await putObject(w, key, body ?? csv(rows));
}

describe.concurrent('hostile and broken input', () => {
  describe('hostile input: a clear error; checkpoint unmoved; file stays; other dataset finishes', () => {
    it('unclosed quote', async () => {
      const rows = validRows();
      const body = csv(rows).replace(/\n([^\n]*)\n$/, '\n"$1\n'); // the last record opens a quote
      const { error } = await badFile(body);
      expect(error).toMatch(/17-12-00\.csv:\d+:\d+: malformed CSV row.*quote/i);
    });

    it('wrong column count (a field missing on line 3)', async () => {
      const rows = validRows();
      const lines = csv(rows).split('\n');
      lines[2] = lines[2]!.replace(/,[^,]*$/, ''); // drop the last field of line 3
      const { error } = await badFile(lines.join('\n'));
      expect(error).toMatch(/17-12-00\.csv:3:\d+: malformed CSV row/);
    });

    it.each([
      [
        'renamed',
        HEADER.map((c) => (c === 'raw_status' ? 'status_raw' : c)),
        /:1:5: header drift.*missing raw_status.*unexpected status_raw/,
      ],
      ['missing', HEADER.filter((c) => c !== 'mttr'), /:1:\d+: header drift.*missing mttr/],
      ['extra', [...HEADER, 'surprise'], /:1:33: header drift.*unexpected surprise/],
      [
        'reordered',
        [HEADER[1]!, HEADER[0]!, ...HEADER.slice(2)],
        /:1:1: header drift.*same columns in a different order/,
      ],
    ])('header %s', async (_name, header, pattern) => {
      const { error } = await badFile(csv(validRows(), header));
      expect(error).toMatch(pattern);
      expect(error).toMatch(/\[SCHEMA_DRIFT\]/);
    });

    it('corrupt gzip', async () => {
      const gz = gzipSync(Buffer.from(csv(validRows())));
      const corrupt = Buffer.concat([gz.subarray(0, 20), Buffer.alloc(200, 0x41), gz.subarray(220)]);
      const { error } = await badFile(corrupt, `${BAD}.gz`);
      expect(error).toMatch(/not valid gzip data/);
    });

    it('empty (NULL) key', async () => {
      const rows = validRows();
      rows[1]!['ticket_id'] = '';
      const { error } = await badFile(csv(rows));
      expect(error).toMatch(
        /empty key column "ticket_id" at .*17-12-00\.csv:3 \(row 2, column "ticket_id"\).*\[BAD_KEY\]/,
      );
    });

    it('bad timestamp in a timestamptz column', async () => {
      const rows = validRows();
      rows[2]!['updated_at'] = 'yesterday-ish';
      const { error } = await badFile(csv(rows));
      expect(error).toMatch(
        /"yesterday-ish" is not a valid timestamp.*17-12-00\.csv:4 \(row 3, column "updated_at"\)/,
      );
    });

    it('bad number in a numeric column', async () => {
      const rows = validRows();
      rows[0]!['mttr'] = '12,5x';
      const { error } = await badFile(csv(rows));
      expect(error).toMatch(/"12,5x" is not a valid numeric.*17-12-00\.csv:2 \(row 1, column "mttr"\)/);
    });

    it('a column name that tries SQL injection is a header error; nothing is executed', async () => {
      const evil = 'raw_status"; DROP TABLE tickets.inc; --';
      const header = HEADER.map((c) => (c === 'raw_status' ? evil : c));
      const { w, error } = await badFile(csv(validRows(), header));
      expect(error).toMatch(/header drift/);
      expect((await w.db.pool.query(`SELECT to_regclass('tickets.inc') IS NOT NULL AS ok`)).rows[0].ok).toBe(
        true,
      );
    });

    // KNOWN BUG (packages/s3-source/src/rows.ts, left to the engineer who owns that file): bytes
    // that are not UTF-8 are decoded with U+FFFD replacement characters and the row is applied
    // silently, instead of failing with file:line:column. `.fails` keeps the suite green while
    // the bug stands and turns red the day it is fixed: then drop `.fails`.
    it('non-UTF-8 bytes', async () => {
      const rows = validRows();
      rows[1]!['location_name'] = 'MARK';
      const body = Buffer.from(csv(rows));
      const at = body.indexOf('MARK');
      body[at] = 0xff; // invalid UTF-8 start byte
      body[at + 1] = 0xfe;
      const { error } = await badFile(body);
      expect(error).toMatch(/17-12-00\.csv:3/);
    });
  });

  describe('hostile input that is not an error (applied, exact)', () => {
    it('a 0-byte file is recorded and archived', async () => {
      const w = await world();
      await goodFile(w, BAD, [], '');
      const result = await runBoth(w);
      expect(result.code, result.stderr).toBe(0);
      expect(await exactProblems(w)).toEqual([]);
      const load = await w.db.pool.query(`SELECT status, rows_read FROM tributary.loads WHERE source = $1`, [
        BAD,
      ]);
      expect(load.rows).toEqual([{ status: 'archived', rows_read: '0' }]);
    });

    it('duplicate keys inside one file: the last one wins', async () => {
      const w = await world();
      const [a, b] = validRows(2);
      const first = { ...a!, ticket_id: 'INC00000003', raw_status: 'first' };
      const middle = { ...b!, ticket_id: 'INC90000009', raw_status: 'only' };
      const last = { ...a!, ticket_id: 'INC00000003', raw_status: 'last', region: 'Last Region' };
      await goodFile(w, BAD, [first, middle, last]);
      const result = await runBoth(w);
      expect(result.code, result.stderr).toBe(0);
      expect(await exactProblems(w)).toEqual([]);
      const row = await w.db.pool.query(
        `SELECT raw_status, region FROM tickets.inc WHERE ticket_id = 'INC00000003'`,
      );
      expect(row.rows).toEqual([{ raw_status: 'last', region: 'LAST REGION' }]);
    });

    it('key and values that try SQL injection are stored verbatim, nothing is executed', async () => {
      const w = await world();
      const [a, b] = validRows(2);
      const evilKey = `INC'); DROP TABLE tickets.inc; --`;
      const evilValue = `x'; DELETE FROM tributary.loads; --`;
      await goodFile(w, BAD, [
        { ...a!, ticket_id: evilKey },
        { ...b!, location_name: evilValue },
      ]);
      const result = await runBoth(w);
      expect(result.code, result.stderr).toBe(0);
      expect(await exactProblems(w)).toEqual([]);
      const row = await w.db.pool.query(`SELECT ticket_id FROM tickets.inc WHERE ticket_id = $1`, [evilKey]);
      expect(row.rowCount).toBe(1);
    });
  });

  describe('hostile keys and re-exports (after a first complete run)', () => {
    it('an unparseable key name (with SQL in it) stops the dataset before reading; nothing executed', async () => {
      const w = await world();
      expect((await runBoth(w)).code).toBe(0);
      const evil = `automations/inc/changes/2026-06-22T18-00-00'); DROP TABLE tickets.inc; --.csv`;
      const next = 'automations/inc/changes/2026-06-22T19-00-00.csv';
      await putObject(w, evil, csv(validRows()));
      await putObject(w, next, csv(validRows()));
      const result = await runBoth(w);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        /dataset inc: .*18-00-00'\); DROP TABLE .* does not match the key pattern.*\[BAD_KEY\]/,
      );
      expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]); // unchanged, next not applied
      expect(await exactProblems(w, ['crq'])).toEqual([]);
      expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toEqual([evil, next].sort());
      expect(String((await checkpointOf(w))?.['key'])).toBe(LATER);
    });

    it('a file re-exported in place with a new ETag is an error naming it; nothing re-applied', async () => {
      const w = await world();
      expect((await runBoth(w)).code).toBe(0);
      const file = changeFiles(w.files, 'inc')[2]!;
      const rows = [...file.rows()].map((r) => ({ ...r, raw_status: 're-exported' }));
      await putObject(w, file.key, csv(rows));
      const result = await runBoth(w);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        /dataset inc: .*17-10-41\.csv was already applied but its ETag changed.*\[ETAG_CHANGED\]/,
      );
      expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
      expect(await exactProblems(w, ['crq'])).toEqual([]);
      expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toEqual([file.key]);
    });
  });

  describe('a 50 MB single field', () => {
    it('is applied intact, never truncated (there is no record-size limit today)', async () => {
      const w = await world();
      const [a] = validRows(1);
      const huge = 'Z'.repeat(50 * 1024 * 1024);
      await goodFile(w, BAD, [{ ...a!, location_name: huge }]);
      const result = await runBoth(w);
      expect(result.code, result.stderr.slice(0, 2000)).toBe(0);
      const row = await w.db.pool.query(
        `SELECT length(location_name) AS n FROM tickets.inc WHERE ticket_id = $1`,
        [a!['ticket_id']],
      );
      expect(row.rows).toEqual([{ n: huge.length }]);
      w.files.pop(); // the oracle's text compare of 50 MB adds nothing over the length check
      const others = await exactProblems(w, ['crq']);
      expect(others).toEqual([]);
    });
  });
});
