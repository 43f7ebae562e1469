import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { optionsTable, withOptionsTable } from '@tributary/core/options';
import { describe, expect, it } from 'vitest';
import { pgSinkOptionsSchema, targetTableSchema } from '../src/index.js';
import { resolveOptions, targetFor } from '../src/options.js';

const base = { connectionString: 'postgres://x@localhost/db' };

describe('pgSink options', () => {
  it('the README tables are generated from the schemas (`pnpm docs:options`)', async () => {
    const readme = await readFile(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    let expected = readme;
    for (const [name, schema] of Object.entries({ pgSink: pgSinkOptionsSchema, target: targetTableSchema }))
      expected = withOptionsTable(expected, name, optionsTable(schema));
    // biome aligns the columns afterwards: compare cell contents, not padding.
    const cells = (text: string) => text.replaceAll(/ *\| */g, '|').replaceAll(/\|-+/g, '|-');
    expect(cells(readme)).toBe(cells(expected));
  });

  it('keeps the defaults of the hand-written resolver', () => {
    expect(resolveOptions({ ...base, targets: {} })).toEqual({
      schema: 'tributary',
      migrate: true,
      targets: {},
      lockEnabled: true,
      lockWaitMs: undefined,
      retries: 3,
      replayBufferRows: 500_000,
      replayBufferBytes: 4 * 1024 * 1024,
      faults: undefined,
      onCommitted: undefined,
    });
    expect(resolveOptions({ ...base, targets: {}, lock: { wait: { timeoutMs: 500 } } }).lockWaitMs).toBe(500);
  });

  it('names the nested option in errors, also inside unions', () => {
    const target = { schema: 'a', table: 't', key: ['id'] };
    expect(() =>
      resolveOptions({ ...base, targets: { s: { ...target, qlik: { deletes: 'x' as 'hard' } } } }),
    ).toThrow(/targets\.s\.qlik\.deletes: must be 'hard' or 'soft', got "x"/);
    expect(() =>
      resolveOptions({ ...base, targets: { s: { ...target, mode: 'merge' as 'upsert' } } }),
    ).toThrow(/targets\.s\.mode: must be 'upsert', 'insert-ignore' or 'history', got "merge"/);
    expect(() =>
      resolveOptions({ ...base, targets: { s: { ...target, qlik: true, versionColumn: 'v' } } }),
    ).toThrow(/targets\.s\.versionColumn: cannot be combined with qlik/);
    expect(() => resolveOptions({ ...base, targets: 3 as never })).toThrow(
      /targets: must be an object keyed by stream id or a function/,
    );
    // A function's targets are checked per stream, on first use.
    expect(() => targetFor(() => ({ ...target, key: [] }), 'tickets/inc')).toThrow(
      /targets\("tickets\/inc"\)\.key: must list at least one column/,
    );
  });

  it('refuses unknown keys, so a misspelt option is not silently ignored', () => {
    const target = { schema: 'a', table: 't', key: ['id'] };
    expect(() => resolveOptions({ ...base, targets: {}, createTabel: false } as never)).toThrow(
      /createTabel/,
    );
    expect(() =>
      resolveOptions({ ...base, targets: { s: { ...target, verisonColumn: 'v' } as never } }),
    ).toThrow(/targets\.s.*verisonColumn/);
    expect(() => resolveOptions({ ...base, targets: {}, lock: { enabeld: false } as never })).toThrow(
      /enabeld/,
    );
  });

  it('needs a pool or a connection string before any I/O', () => {
    const saved = process.env.DATABASE_URL;
    delete process.env.DATABASE_URL;
    try {
      expect(() => resolveOptions({ targets: {} })).toThrow(
        /pool: or connectionString \(or DATABASE_URL\) is required/,
      );
    } finally {
      if (saved !== undefined) process.env.DATABASE_URL = saved;
    }
  });
});
