import { pipeline as streamPipeline } from 'node:stream/promises';
import { type InputLocation, type RejectedRecord, type Row, TributaryError } from '@tributary/core';
import { type CsvError, parse } from 'csv-parse';
import { checkColumns } from './columns.js';
import { JsonLinesParser, JsonValuesParser, type ParsedRecord } from './json.js';
import { openObject } from './object.js';
import type { FileChunk, ReadFileOptions } from './read.js';
import { headerDrift, invalidUtf8, RECORD_SCOPED, rejectedRecord } from './read-errors.js';
import { drain, MAX_RECORD_CHARS, Utf8Validator } from './stages.js';

/**
 * The row path: the decoded bytes go through csv-parse (or the JSON parsers) and come out as
 * parsed rows with their locations, cut into chunks of `batchRows` rows or `batchBytes` bytes.
 */

export async function* readRowsOnce(
  options: ReadFileOptions,
  skip: number,
  state: { correction: number },
): AsyncGenerator<FileChunk> {
  const opened = await openObject(options);
  if (!opened) {
    yield { rows: [], locations: [], row: skip, done: true, bytes: 0, totalBytes: 0 };
    return;
  }
  const { body: raw, stored, decoded } = opened;
  const { key, stream: streamId } = options;

  let headerError: TributaryError | undefined;
  // Records csv-parse skipped (`setAside`), in order; placed between the records around them.
  const skips: Array<{ error: unknown; text: string | undefined; lines: number }> = [];
  const setAside = options.setAside
    ? {
        raw: true,
        skip_records_with_error: true,
        on_skip: (error: CsvError | undefined, text: string | undefined) => {
          // Only a record with the wrong field count is set aside: after a stray quote csv-parse
          // cannot tell where the next record starts, so the file fails as on the row path.
          if (error && !RECORD_SCOPED.has(error.code)) throw error;
          if (error) skips.push({ error, text, lines: Number(error.lines) });
          return undefined;
        },
      }
    : {};
  const parser =
    options.format === 'jsonl'
      ? new JsonLinesParser()
      : options.format === 'json'
        ? new JsonValuesParser()
        : parse({
            bom: true,
            info: true,
            // One record may not hold more than this many characters: a runaway quote must fail
            // with its line, not buffer the rest of a multi-GB file (invariant 7).
            max_record_size: MAX_RECORD_CHARS,
            skip_empty_lines: true,
            ...setAside,
            // Header → column names, checked before any row of the file is emitted.
            columns: (header: string[]) => {
              headerError = headerDrift(options, header);
              if (headerError) throw headerError;
              return header;
            },
          });
  const utf8 = new Utf8Validator((line, byteOffset) => invalidUtf8(options, line, byteOffset));
  const stages = [...opened.stages, utf8];
  const wiring = (streamPipeline as unknown as (...s: unknown[]) => Promise<void>)(raw, ...stages, parser);
  wiring.catch(() => undefined); // failures surface through the parser, drained below

  let rows: Row[] = [];
  let locations: InputLocation[] = [];
  let rejected: RejectedRecord[] = [];
  let held: FileChunk | undefined;
  let record = 0;
  let decodedAtBatch = 0;
  let lastReportedLine = 1;
  const json = options.format !== 'csv';
  let lastLine = json ? 0 : 1;
  let lastEmpty = 0;
  const emptyAsNull = options.emptyAsNull === true;
  const jsonCheck = json && options.columns && options.columnCheck !== 'any';
  /** Skipped records that ended before csv-parse line `upTo`: numbered and set aside. */
  const takeSkips = (upTo: number) => {
    while (skips.length && skips[0]!.lines < upTo) {
      const entry = skips.shift()!;
      record++;
      const line = lastLine + 1;
      lastLine = line + Math.max(0, entry.lines - lastReportedLine - 1);
      lastReportedLine = entry.lines;
      const set = rejectedRecord(options, entry.error, { line, endLine: lastLine, record }, entry.text);
      // Set aside with an earlier commit of this file already (a resumed read): not again.
      if (record > skip) rejected.push(set);
    }
  };

  try {
    for await (const items of drain<unknown>(parser)) {
      for (const item of items) {
        // Skipped records before this one are numbered first (file record numbers).
        if (skips.length && !json) takeSkips((item as { info: { lines: number } }).info.lines);
        record++;
        let row: Row;
        let line: number;
        if (json) {
          const parsed = item as ParsedRecord;
          row = parsed.record;
          line = parsed.line;
          if (jsonCheck) {
            const problem = checkColumns(
              Object.keys(row),
              options.columns,
              options.columnCheck ?? 'exact',
              false,
            );
            if (problem) {
              throw new TributaryError('SCHEMA_DRIFT', `${key}:${line}:1: key drift: ${problem.message}`, {
                stream: streamId,
                location: { file: key, line, column: 1, record },
              });
            }
          }
        } else {
          const parsed = item as { record: Row; info: { lines: number; empty_lines: number } };
          row = parsed.record;
          // csv-parse reports the line a record ends on, and counts a CRLF inside quotes as two
          // lines; the record's first line is worked out from the previous record's end.
          const { lines, empty_lines } = parsed.info;
          const reported = lines - lastReportedLine;
          const empties = empty_lines - lastEmpty;
          let span = reported - empties;
          if (span > 1) {
            let crlf = 0;
            for (const value of Object.values(row)) {
              if (typeof value === 'string' && value.includes('\r\n')) crlf += value.split('\r\n').length - 1;
            }
            span -= crlf;
            state.correction += crlf;
          }
          line = lastLine + empties + 1;
          lastLine = line + span - 1;
          lastReportedLine = lines;
          lastEmpty = empty_lines;
        }
        if (record <= skip) continue;
        if (emptyAsNull) {
          for (const name in row) if (row[name] === '') row[name] = null;
        }
        if (held) {
          yield held;
          held = undefined;
        }
        rows.push(row);
        locations.push({ file: key, line, record });
        if (rows.length >= options.batchRows || decoded.bytes - decodedAtBatch >= options.batchBytes) {
          decodedAtBatch = decoded.bytes;
          // Held until the next record shows up, so a file never ends with an empty batch.
          held = { rows, locations, row: record, done: false, bytes: 0, totalBytes: stored.bytes };
          if (rejected.length) held.rejected = rejected;
          rows = [];
          locations = [];
          rejected = [];
        }
      }
    }
    await wiring;
    takeSkips(Number.POSITIVE_INFINITY);
  } catch (error) {
    throw headerError ?? error;
  }
  if (held) {
    const setAside = [...(held.rejected ?? []), ...rejected];
    yield {
      ...held,
      done: true,
      totalBytes: stored.bytes,
      ...(setAside.length ? { rejected: setAside } : {}),
    };
    return;
  }
  yield {
    rows,
    locations,
    ...(rejected.length ? { rejected } : {}),
    row: Math.max(record, skip),
    done: true,
    bytes: 0,
    totalBytes: stored.bytes,
  };
}
