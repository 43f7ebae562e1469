import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { copyTextValue, quoteIdent, redactSecrets, redactUrl } from '../src/sql.js';

describe('quoteIdent', () => {
  it('always quotes and doubles embedded quotes', () => {
    expect(quoteIdent('tickets')).toBe('"tickets"');
    expect(quoteIdent('Mixed Case')).toBe('"Mixed Case"');
    expect(quoteIdent('a"; DROP TABLE x; --')).toBe('"a""; DROP TABLE x; --"');
  });
  it('rejects empty names and NUL', () => {
    expect(() => quoteIdent('')).toThrow(TypeError);
    expect(() => quoteIdent('a\u0000b')).toThrow(TypeError);
  });
});

describe('redactUrl', () => {
  it('hides the password of a URL and keeps the rest', () => {
    expect(redactUrl('postgres://app:s3cr%40t@db.example:5432/dwh?sslmode=require')).toBe(
      'postgres://app:***@db.example:5432/dwh?sslmode=require',
    );
    expect(redactUrl('postgres://db.example/dwh?password=hunter2&sslmode=require')).toBe(
      'postgres://db.example/dwh?password=***&sslmode=require',
    );
  });
  it('handles key/value connection strings and messages', () => {
    expect(redactUrl("host=db user=app password='p w' dbname=x")).toBe(
      'host=db user=app password=*** dbname=x',
    );
    expect(redactSecrets('cannot reach postgresql://app:hunter2@db:5432/x')).toBe(
      'cannot reach postgresql://app:***@db:5432/x',
    );
  });
});

describe('copyTextValue', () => {
  it('escapes the COPY text specials and renders null as \\N', () => {
    expect(copyTextValue(null)).toBe('\\N');
    expect(copyTextValue(undefined)).toBe('\\N');
    expect(copyTextValue('a\tb\nc\rd\\e')).toBe('a\\tb\\nc\\rd\\\\e');
    expect(copyTextValue('\\N')).toBe('\\\\N');
    expect(copyTextValue(12.5)).toBe('12.5');
    expect(copyTextValue(true)).toBe('true');
    expect(copyTextValue({ a: 1 })).toBe('{"a":1}');
    expect(copyTextValue(new Date('2024-01-02T03:04:05Z'))).toBe('2024-01-02T03:04:05.000Z');
  });
});

describe('options', () => {
  const base = { connectionString: 'postgres://x@localhost/db' };
  it('fails before any I/O with the option path', () => {
    expect(() => resolveOptions({ ...base, targets: { s: { schema: 'a', table: 't', key: [] } } })).toThrow(
      /pgSink\(\): targets\.s\.key: must list at least one column/,
    );
    expect(() =>
      resolveOptions({
        ...base,
        targets: {
          s: { schema: 'a', table: 't', key: ['id'], columns: [{ name: 'id', type: 'int; DROP TABLE x' }] },
        },
      }),
    ).toThrow(/targets\.s\.columns\[0\]\.type: is not a type name/);
    expect(() =>
      resolveOptions({
        ...base,
        targets: { s: { schema: 'a', table: 't', key: ['id'], timeZone: 'Mars/Olympus' } },
      }),
    ).toThrow(/targets\.s\.timeZone: is not an IANA time zone/);
    expect(() => resolveOptions({ ...base, targets: {}, retries: -1 })).toThrow(
      /retries: must be an integer ≥ 0/,
    );
    expect(() => resolveOptions({ ...base, targets: {}, lock: { wait: { timeoutMs: 0 } } })).toThrow(
      /lock\.wait/,
    );
  });
  it('accepts the usual type names and applies defaults', () => {
    const resolved = resolveOptions({
      ...base,
      targets: {
        s: {
          schema: 'a',
          table: 't',
          key: ['id'],
          columns: [
            { name: 'id', type: 'bigint' },
            { name: 'amount', type: 'numeric(12, 2)' },
            { name: 'at', type: 'timestamp with time zone' },
            { name: 'x', type: 'double precision' },
            { name: 'tags', type: 'text[]' },
          ],
        },
      },
    });
    expect(resolved).toMatchObject({ schema: 'tributary', migrate: true, retries: 3, lockWaitMs: undefined });
  });
});
