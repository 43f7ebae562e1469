import { describe, expect, it } from 'vitest';
import {
  type Batch,
  cast,
  dropFields,
  filter,
  map,
  normalize,
  rename,
  type TributaryError,
  validate,
} from '../src/index.js';

function batch(rows: Record<string, unknown>[]): Batch {
  return {
    stream: 't/x',
    rows,
    position: {},
    meta: {
      commit: true,
      rowsRead: rows.length,
      filtered: {},
      locations: rows.map((_, i) => ({ file: 'x.csv', line: i + 2, record: i + 1 })),
    },
  };
}

describe('row transforms', () => {
  it('filter counts drops under its name and keeps locations aligned', async () => {
    const out = (await filter(
      'alarm',
      (r) => r['a'] !== 'true',
    )(batch([{ a: 'true' }, { a: 'no' }, { a: 'true' }])))!;
    expect(out.rows).toEqual([{ a: 'no' }]);
    expect(out.meta.filtered).toEqual({ alarm: 2 });
    expect(out.meta.locations).toEqual([{ file: 'x.csv', line: 3, record: 2 }]);
  });

  it('map can drop rows and counts them', async () => {
    const out = (await map((r) => (r['n'] === 1 ? undefined : { n: Number(r['n']) * 10 }))(
      batch([{ n: 1 }, { n: 2 }]),
    ))!;
    expect(out.rows).toEqual([{ n: 20 }]);
    expect(out.meta.filtered).toEqual({ map: 1 });
  });

  it('dropFields, rename', async () => {
    const out = (await rename({ b: 'c' })((await dropFields(['a'])(batch([{ a: 1, b: 2 }])))!))!;
    expect(out.rows).toEqual([{ c: 2 }]);
  });

  it('normalize maps by exact, then case-insensitive trimmed match, or by function', async () => {
    const t = normalize({
      region: { 'Nairobi East': 'NAIROBI_EAST' },
      status: (v) => String(v).toUpperCase(),
    });
    const out = (await t(
      batch([
        { region: ' nairobi east ', status: 'open' },
        { region: 'Other', status: 'x' },
      ]),
    ))!;
    expect(out.rows).toEqual([
      { region: 'NAIROBI_EAST', status: 'OPEN' },
      { region: 'Other', status: 'X' },
    ]);
  });

  it('cast converts, and a bad value names file, line and column', async () => {
    const ok = (await cast({ n: 'number', b: 'boolean' })(batch([{ n: '1.5', b: 'YES' }])))!;
    expect(ok.rows).toEqual([{ n: 1.5, b: true }]);
    const error = (() => {
      try {
        cast({ n: 'integer' })(batch([{ n: '1' }, { n: 'x1' }]));
      } catch (e) {
        return e as TributaryError;
      }
    })();
    expect(error?.code).toBe('CAST_FAILED');
    expect(error?.message).toContain('x.csv:3 column n');
    expect(error?.location).toMatchObject({ file: 'x.csv', line: 3, column: 'n' });
  });

  it('validate errors by default and drops with counting when asked', async () => {
    const check = (r: Record<string, unknown>) => (r['id'] ? undefined : 'empty key');
    expect(() => validate(check)(batch([{ id: '' }]))).toThrow(/x.csv:2: empty key/);
    const out = (await validate(check, { onInvalid: 'drop', name: 'no-key' })(
      batch([{ id: '' }, { id: 'a' }]),
    ))!;
    expect(out.rows).toEqual([{ id: 'a' }]);
    expect(out.meta.filtered).toEqual({ 'no-key': 1 });
  });
});
