import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { TributaryError } from '@tributary/core';
import { optionsTable, withOptionsTable } from '@tributary/core/options';
import { describe, expect, it } from 'vitest';
import {
  resolveOptions,
  type S3SourceOptions,
  type StreamDefinition,
  s3FileTargetOptionsSchema,
  s3Source,
  s3SourceOptionsSchema,
} from '../src/index.js';

const client = new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
const stream: StreamDefinition = {
  id: 'tickets/inc',
  bucket: 'tickets',
  prefix: 'automations/inc/changes/',
  keyPattern: 'YYYY-MM-DDTHH-mm-ss',
  timeZone: 'Africa/Nairobi',
};

function invalid(
  options: Partial<S3SourceOptions>,
  streamPatch: Record<string, unknown> = {},
): TributaryError {
  try {
    s3Source({ client, streams: [{ ...stream, ...streamPatch } as StreamDefinition], ...options });
  } catch (error) {
    expect(error).toBeInstanceOf(TributaryError);
    expect((error as TributaryError).code).toBe('INVALID_OPTIONS');
    return error as TributaryError;
  }
  throw new Error('expected INVALID_OPTIONS');
}

describe('options', () => {
  it('the README tables are generated from the schemas (`pnpm docs:options`)', async () => {
    const readme = await readFile(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    let expected = readme;
    for (const [name, schema] of Object.entries({
      s3Source: s3SourceOptionsSchema,
      s3FileTarget: s3FileTargetOptionsSchema,
    }))
      expected = withOptionsTable(expected, name, optionsTable(schema));
    // biome aligns the columns afterwards: compare cell contents, not padding.
    const cells = (text: string) => text.replaceAll(/ *\| */g, '|').replaceAll(/\|-+/g, '|-');
    expect(cells(readme)).toBe(cells(expected));
  });

  it('fills every default', () => {
    const resolved = resolveOptions({ client, streams: [stream] });
    expect(resolved).toMatchObject({
      batchRows: 5000,
      batchBytes: 8 * 1024 * 1024,
      archive: true,
      watch: undefined,
    });
    expect(resolved.streams[0]).toMatchObject({
      processedPrefix: 'automations/inc/processed/',
      latePrefix: 'automations/inc/late/',
      lateFiles: 'error',
      etagChanged: 'error',
      granularity: 'file',
      columnCheck: 'any',
      layout: 'changes',
      archiveBase: 'automations/inc/changes/',
    });
    const qlik = resolveOptions({
      client,
      streams: [{ id: 'q', bucket: 'b', prefix: 'cubic/ods_qlik/EDW.SAMPLE/', layout: 'qlik' }],
    }).streams[0]!;
    expect(qlik.keyPattern).toBe('YYYYMMDD-HHmmssSSS');
    expect(qlik.areas.map((a) => a.prefix)).toEqual([
      'cubic/ods_qlik/EDW.SAMPLE/',
      'cubic/ods_qlik/EDW.SAMPLE__ct/',
    ]);
    expect(qlik.processedPrefix).toBe('cubic/ods_qlik/processed/');
    expect(resolveOptions({ client, streams: [{ ...stream, columns: ['a'] }] }).streams[0]!.columnCheck).toBe(
      'exact',
    );
  });

  it('names the option path of a bad option, before any I/O', () => {
    expect(invalid({}, { timeZone: 'Mars/Olympus' }).message).toMatch(/streams\[0\]\.timeZone/);
    expect(invalid({}, { keyPattern: 'YYYY' }).message).toMatch(/streams\[0\]\.keyPattern/);
    expect(invalid({}, { keyPattern: undefined }).message).toMatch(/streams\[0\]\.keyPattern: is required/);
    expect(invalid({}, { prefix: 'no/slash' }).message).toMatch(/streams\[0\]\.prefix/);
    expect(invalid({}, { lateFiles: 'ignore' }).message).toMatch(/streams\[0\]\.lateFiles/);
    expect(invalid({}, { columnCheck: 'subset' }).message).toMatch(
      /streams\[0\]\.columnCheck: 'subset' needs columns/,
    );
    expect(invalid({}, { processedPrefix: 'automations/inc/changes/' }).message).toMatch(/processedPrefix/);
    expect(invalid({ batchRows: 0 }).message).toMatch(/batchRows/);
    expect(invalid({ watch: { intervalMs: 1000, jitter: 2 } }).message).toMatch(/watch\.jitter/);
    expect(invalid({ retry: { retries: -1 } }).message).toMatch(/retry\.retries/);
    expect(() =>
      s3Source({ client, streams: [stream, { ...stream, prefix: 'automations/crq/changes/' }] }),
    ).toThrow(/streams\[1\]\.id: "tickets\/inc" is used twice/);
  });
});
