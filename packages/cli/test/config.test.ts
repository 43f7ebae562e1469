import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.js';
import { withConfigReference } from '../src/reference.js';
import { selectSpecs } from '../src/specs.js';
import { expandTemplates } from '../src/templates.js';

const stream = (id: string, prefix: string, extra = '') => `  - id: ${id}
    source: { bucket: b, prefix: ${prefix}, keyPattern: YYYYMMDD${extra} }
    target: { table: ods.t, key: [id] }
`;

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, 'c.yaml', env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((p) => `${p.path}: ${p.message}`);
    throw error;
  }
  return [];
}

describe('tributary config', () => {
  it('expands $' + '{VAR}, applies defaults and builds specs with per-stream archive folders', () => {
    const config = parseConfig(
      `streams:\n  - id: cubic/a\n    source: { bucket: '\${B}', prefix: cubic/dmap/a, keyPattern: YYYYMMDD }\n    transforms: [ { dropFields: [junk] }, { rename: { amt: amount } } ]\n    target: { table: ods.a, key: [id], types: { amount: numeric } }\n`,
      'c.yaml',
      { B: 'bucket-1' },
    );
    const [spec] = selectSpecs(config, undefined, {});
    expect(spec?.source).toMatchObject({
      bucket: 'bucket-1',
      prefix: 'cubic/dmap/a/',
      timeZone: 'UTC',
      lateFiles: 'error',
      processedPrefix: 'cubic/dmap/a/processed/',
      latePrefix: 'cubic/dmap/a/late/',
    });
    expect(spec?.target).toMatchObject({
      schema: 'ods',
      table: 'a',
      key: ['id'],
      mode: 'upsert',
      createTable: true,
    });
    expect(spec?.columnsFromHeader?.(['id', 'amt', 'junk'])).toEqual([
      { name: 'id', type: 'text' },
      { name: 'amount', type: 'numeric' },
    ]);
    expect(spec?.transforms()).toHaveLength(2);
  });

  it('names every problem by its option path', () => {
    expect(
      problems('streams:\n  - id: nope\n    source: { prefix: /x }\n    target: { table: t, key: [] }\n'),
    ).toEqual([
      'streams[0].id: must be <source>/<dataset>, e.g. cubic/edw_sample (with {table} in a discover template)',
      'streams[0].source.prefix: prefix is an S3 key prefix: no leading slash',
      'streams[0].target.table: must be schema.table',
      'streams[0].target.key: Too small: expected array to have >=1 items',
    ]);
    expect(
      problems(`streams:\n${stream('a/b', 'p/', '')}`.replace('bucket: b', "bucket: '$" + "{MISSING}'")),
    ).toEqual(['streams[0].source.bucket: environment variable MISSING is not set']);
    expect(problems('streams: [')[0]).toMatch(/^\(file\): /);
    expect(problems('streams: []\nextra: 1\n')).toEqual([
      'streams: Too small: expected array to have >=1 items',
      '(root): Unrecognized key: "extra"',
    ]);
  });

  it('issue 17 target keys: schemaDrift, versionColumn and afterCommit reach the sink target', () => {
    const config = parseConfig(
      `streams:\n  - id: shop/a\n    source: { bucket: b, prefix: a/, keyPattern: YYYYMMDD, columns: [id, v] }\n    target:\n      table: shop.a\n      key: [id]\n      mode: history\n      types: { n: integer }\n      schemaDrift: evolve\n      versionColumn: updated_at\n      afterCommit: { sql: 'REFRESH MATERIALIZED VIEW r.mv' }\n`,
      'c.yaml',
      {},
    );
    const [spec] = selectSpecs(config, undefined, {});
    expect(spec?.target).toMatchObject({
      schemaDrift: 'evolve',
      types: { n: 'integer' },
      versionColumn: 'updated_at',
      afterCommit: { sql: 'REFRESH MATERIALIZED VIEW r.mv', minIntervalSeconds: 0 },
    });
    // Under evolve the sink judges a changed header: the source no longer checks it exactly.
    expect(spec?.source.columnCheck).toBe('any');
    const strict = selectSpecs(
      parseConfig(`streams:\n${stream('a/b', 'p/', ', columns: [id]')}`, 'c.yaml', {}),
      undefined,
      {},
    );
    expect(strict[0]?.source.columnCheck).toBe('exact');
    expect(strict[0]?.target.schemaDrift).toBeUndefined();
    expect(
      problems(
        `streams:\n${stream('a/b', 'p/')}`.replace(
          'key: [id] }',
          "key: [id], schemaDrift: grow, afterCommit: { sql: '', minIntervalSeconds: -1 } }",
        ),
      ),
    ).toEqual([
      'streams[0].target.schemaDrift: Invalid option: expected one of "fail"|"evolve"|"freeze-extra"',
      'streams[0].target.afterCommit.sql: Too small: expected string to have >=1 characters',
      'streams[0].target.afterCommit.minIntervalSeconds: Too small: expected number to be >=0',
    ]);
  });

  it('refuses duplicate ids and overlapping prefixes, naming both streams', () => {
    expect(problems(`streams:\n${stream('a/x', 'p/')}${stream('a/x', 'q/')}`)).toEqual([
      'streams[1].id: "a/x" is also streams[0].id',
    ]);
    expect(problems(`streams:\n${stream('a/x', 'cubic/dmap/x/')}${stream('a/y', 'cubic/dmap/')}`)).toEqual([
      'streams[1].source: streams "a/x" and "a/y" share s3://b prefixes: listing cubic/dmap/x/ overlaps listing cubic/dmap/',
    ]);
    // The old sibling default: two tables archiving into one shared processed/ folder.
    const shared = `streams:\n${stream('a/x', 'cubic/dmap/x/', ', processedPrefix: cubic/dmap/processed/')}${stream('a/y', 'cubic/dmap/y/', ', processedPrefix: cubic/dmap/processed/')}`;
    expect(problems(shared)).toEqual([
      'streams[1].source: streams "a/x" and "a/y" share s3://b prefixes: archive cubic/dmap/processed/ overlaps archive cubic/dmap/processed/',
    ]);
    // Different buckets never clash.
    expect(
      problems(`streams:\n${stream('a/x', 'p/')}${stream('a/y', 'p/').replace('bucket: b', 'bucket: c')}`),
    ).toEqual([]);
  });

  it('the README config reference is generated from the schema (run pnpm docs:config)', async () => {
    const readme = await readFile(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    // Biome pads table cells; compare the content.
    const normalise = (text: string) => text.replace(/-{3,}/g, '---').replace(/\s+/g, ' ');
    expect(normalise(withConfigReference(readme))).toBe(normalise(readme));
  });

  it('a discover template: {table} required, expanded per folder, explicit streams keep theirs', () => {
    expect(
      problems(
        'streams:\n  - id: dmap/x\n    discover: { under: cubic/dmap }\n    source: { bucket: b, prefix: p/, keyPattern: YYYYMMDD }\n    target: { table: ods.x, key: [id] }\n',
      ),
    ).toEqual([
      'streams[0].source.prefix: is <discover.under><table>/ for a template: leave it out',
      'streams[0].id: must contain {table} in a discover template',
      'streams[0].target.table: must contain {table} in a discover template',
    ]);
    const config = parseConfig(
      `streams:\n${stream('dmap/agg_a', 'cubic/dmap/agg_a/')}  - id: dmap/{table}\n    discover: { under: cubic/dmap/ }\n    source: { bucket: b, keyPattern: YYYYMMDD }\n    target: { table: 'ods.{table}', key: [id] }\n`,
      'c.yaml',
      {},
    );
    const expanded = expandTemplates(config, new Map([[1, ['agg_a', 'agg_b']]]), 'c.yaml', {});
    expect(expanded.streams.map((s) => [s.id, s.source.prefix, s.target.table])).toEqual([
      ['dmap/agg_a', 'cubic/dmap/agg_a/', 'ods.t'],
      ['dmap/agg_b', 'cubic/dmap/agg_b/', 'ods.agg_b'],
    ]);
  });
});

describe('tributary config: extract streams (source.postgres → target.s3)', () => {
  const extract = (id: string, prefix: string, extra = '') => `  - id: ${id}
    source: { postgres: { url: '\${SRC}', table: public.trips, watermark: inserted_at, key: [id]${extra} } }
    target: { s3: { bucket: b, prefix: ${prefix} } }
`;

  it('parses beside load streams with defaults; --stream selects either kind', async () => {
    const { selectExtracts } = await import('../src/specs.js');
    const config = parseConfig(
      `streams:\n${extract('dwh/trips', 'dwh/exports/trips')}${stream('bronze/trips', 'dwh/exports/trips/').replace('keyPattern: YYYYMMDD', "keyPattern: 'YYYYMMDD_HHMM_<TZ>'")}`,
      'c.yaml',
      {
        SRC: 'postgres://ro@src/db',
      },
    );
    expect(config.extracts).toEqual([
      {
        id: 'dwh/trips',
        source: {
          postgres: {
            url: 'postgres://ro@src/db',
            table: 'public.trips',
            watermark: 'inserted_at',
            key: ['id'],
            mode: 'incremental',
            safetyLag: 0,
          },
        },
        target: {
          s3: {
            bucket: 'b',
            prefix: 'dwh/exports/trips/',
            keyPattern: 'YYYYMMDD_HHMM_<TZ>',
            timeZone: 'UTC',
            gzip: false,
          },
        },
      },
    ]);
    expect(config.streams.map((s) => s.id)).toEqual(['bronze/trips']);
    expect(selectSpecs(config, ['dwh/trips'], {})).toEqual([]);
    expect(selectExtracts(config, ['bronze/trips'])).toEqual([]);
    expect(selectExtracts(config, ['dwh/trips'])).toHaveLength(1);
    // Extract streams alone are a valid config (the load may run elsewhere).
    expect(parseConfig(`streams:\n${extract('dwh/trips', 'e/')}`, 'c.yaml', { SRC: 'u' }).streams).toEqual(
      [],
    );
  });

  it('names problems by the entry’s place in the file', () => {
    expect(
      problems(
        `streams:\n${stream('a/b', 'p/')}  - id: dwh/x\n    source: { postgres: { url: u, table: trips, key: [id], mode: incremental } }\n    target: { s3: { prefix: /x } }\n${extract('dwh/y', 'e/', ', mode: snapshot')}${extract('dwh/z', 'f/')}`,
        { SRC: 'u' },
      ),
    ).toEqual([
      'streams[1].source.postgres.table: must be schema.table',
      'streams[1].target.s3.prefix: prefix is an S3 key prefix: no leading slash',
    ]);
    expect(
      problems(`streams:\n${extract('dwh/y', 'e/', ', mode: snapshot')}${extract('dwh/y', 'e/z/')}`, {
        SRC: 'u',
      }),
    ).toEqual([
      'streams[1].id: "dwh/y" is the id of another stream',
      'streams[1].target.s3.prefix: streams "dwh/y" and "dwh/y" write into overlapping folders e/ and e/z/',
    ]);
    expect(
      problems(`streams:\n${extract('dwh/y', 'e/').replace(', watermark: inserted_at', '')}`, { SRC: 'u' }),
    ).toEqual(["streams[0].source.postgres.watermark: is required for mode 'incremental'"]);
    // The load stream over the extract's folder reads YYYYMMDD names; the extract writes the manual's.
    expect(problems(`streams:\n${extract('dwh/y', 'e/')}${stream('bronze/y', 'e/')}`, { SRC: 'u' })).toEqual([
      'streams[0].target.s3: stream "bronze/y" reads e/ with keyPattern YYYYMMDD in UTC, but "dwh/y" writes YYYYMMDD_HHMM_<TZ> in UTC',
    ]);
  });
});
