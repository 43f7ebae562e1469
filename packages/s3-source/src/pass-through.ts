import { isUtf8 } from 'node:buffer';
import { PassThrough } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import type { InputLocation, RawCsv, RejectedRecord, Row } from '@tributary/core';
import { parse as parseSync } from 'csv-parse/sync';
import { openObject } from './object.js';
import { CsvSplitter, pieceEndLine, pieceLine, type RawPiece } from './raw.js';
import type { FileChunk, ReadFileOptions } from './read.js';
import { headerDrift, invalidUtf8, readError, rejectedRecord } from './read-errors.js';
import { firstInvalidUtf8, MAX_RECORD_CHARS } from './stages.js';

/**
 * The pass-through (raw) path: whole CSV records handed on as bytes (`RawCsv`), parsed only when
 * a stage needs rows, with the same rows and locations as the row path.
 */

/**
 * The pass-through read: the decoded bytes are cut into runs of whole records (`CsvSplitter`)
 * and handed out unparsed. Only the header is parsed here (and checked like the row path's).
 * Every run is checked to be UTF-8. Irregular input throws `IrregularCsv` before anything
 * irregular is handed out.
 */
export async function* readRawOnce(options: ReadFileOptions, skip: number): AsyncGenerator<FileChunk> {
  const opened = await openObject(options);
  if (!opened) {
    yield { rows: [], locations: [], row: skip, done: true, bytes: 0, totalBytes: 0 };
    return;
  }
  const { stored } = opened;
  const splitter = new CsvSplitter({
    pieceBytes: options.batchBytes,
    pieceRecords: options.rawBatchRows ?? Number.POSITIVE_INFINITY,
    skip,
    maxRecordBytes: MAX_RECORD_CHARS,
  });
  const out = new PassThrough();
  const wiring = (streamPipeline as unknown as (...s: unknown[]) => Promise<void>)(
    opened.body,
    ...opened.stages,
    out,
  );
  wiring.catch(() => undefined); // failures surface through `out`, iterated below
  let header: string[] | undefined;
  let decodedOffset = 0;
  const check = (piece: RawPiece): void => {
    if (!isUtf8(piece.bytes)) {
      const bad = firstInvalidUtf8(piece.bytes);
      let lines = 0;
      for (let i = piece.bytes.indexOf(0x0a); i >= 0 && i < bad; i = piece.bytes.indexOf(0x0a, i + 1))
        lines++;
      throw invalidUtf8(options, piece.firstLine + lines, decodedOffset + bad);
    }
    decodedOffset += piece.bytes.length;
  };
  const readHeader = (): string[] => {
    const bytes = splitter.header!;
    if (!isUtf8(bytes)) throw invalidUtf8(options, 1, firstInvalidUtf8(bytes));
    decodedOffset = bytes.length;
    if (bytes.length === 0) return [];
    const names = parseHeader(bytes);
    const drift = headerDrift(options, names);
    if (drift) throw drift;
    return names;
  };
  const chunkOf = (piece: RawPiece, done: boolean): FileChunk => ({
    rows: [],
    raw: rawCsv(options, header!, piece),
    locations: [],
    row: piece.recordsTotal,
    done,
    bytes: 0,
    totalBytes: stored.bytes,
  });
  // A piece is held back only while it may be the file's last (so that the last one is the
  // `done` chunk, never an empty one after it). Once bytes of a further record arrive it goes out,
  // and the sink COPYs it while the rest downloads (issue 12: holding every piece until the next
  // was cut made a 12 MB file's first COPY wait for its whole download).
  let held: RawPiece | undefined;
  let handedOut: RawPiece | undefined;
  for await (const buffer of out as AsyncIterable<Buffer>) {
    const pieces = splitter.push(buffer);
    if (!header && splitter.header) header = readHeader();
    for (const piece of pieces) {
      check(piece);
      if (held) yield chunkOf(held, false);
      held = piece;
    }
    if (held && splitter.partialRecord) {
      handedOut = held;
      held = undefined;
      yield chunkOf(handedOut, false);
    }
  }
  await wiring;
  const last = splitter.end();
  if (!header) header = readHeader();
  check(last);
  if (held && last.records === 0) {
    yield chunkOf(held, true);
    return;
  }
  if (held) yield chunkOf(held, false);
  if (handedOut && !held && last.records === 0) {
    // Not reached with regular input (a partial record ends as a record or an error); kept so
    // the file still ends with its `done` chunk.
    yield {
      rows: [],
      locations: [],
      row: handedOut.recordsTotal,
      done: true,
      bytes: 0,
      totalBytes: stored.bytes,
    };
    return;
  }
  yield chunkOf(last, true);
}

let lastHeader: { bytes: Buffer; names: readonly string[] } | undefined;

/**
 * The names in a header line. Every file of a stream has the same header: the last one parsed
 * is kept, so csv-parse (whose set-up costs more than a small file's whole read) runs once, not
 * once per file.
 */
function parseHeader(bytes: Buffer): string[] {
  if (lastHeader?.bytes.equals(bytes)) return [...lastHeader.names];
  const [names = []] = parseSync(bytes, { max_record_size: MAX_RECORD_CHARS }) as string[][];
  lastHeader = { bytes: Buffer.from(bytes), names: [...names] };
  return names;
}

/** A raw batch payload over one piece; `parse()` is the row path's csv-parse over its bytes. */
function rawCsv(options: ReadFileOptions, header: string[], piece: RawPiece): RawCsv {
  const emptyAsNull = options.emptyAsNull === true;
  return {
    bytes: piece.bytes,
    header,
    records: piece.records,
    firstRecord: piece.recordsTotal - piece.records + 1,
    emptyAsNull,
    steps: [],
    line: (index) => pieceLine(piece, index),
    parse: () => {
      const before = piece.recordsTotal - piece.records;
      let rows: Row[];
      try {
        rows = parseSync(piece.bytes, {
          columns: header,
          max_record_size: MAX_RECORD_CHARS,
        }) as Row[];
      } catch (error) {
        // csv-parse counts from the piece's start (and a CRLF inside quotes as two lines): the
        // failing record's line comes from the piece instead, as the row path reports it.
        const csv = error as { lines?: number; records?: number };
        if (typeof csv.records === 'number') {
          csv.lines = pieceEndLine(piece, csv.records);
          csv.records += before;
        } else if (typeof csv.lines === 'number') {
          csv.lines += piece.firstLine - 1;
        }
        throw readError(error, options, 0);
      }
      const locations: InputLocation[] = new Array(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        if (emptyAsNull) for (const name in row) if (row[name] === '') row[name] = null;
        locations[i] = { file: options.key, line: pieceLine(piece, i), record: before + i + 1 };
      }
      return { rows, locations };
    },
    parseChecked: () => parsePieceChecked(options, header, piece),
  };
}

/** `RawCsv.parseChecked` over one piece: records with the wrong field count are set aside. */
function parsePieceChecked(options: ReadFileOptions, header: string[], piece: RawPiece) {
  const before = piece.recordsTotal - piece.records;
  const emptyAsNull = options.emptyAsNull === true;
  const rows: Row[] = [];
  const locations: InputLocation[] = [];
  const texts: string[] = [];
  const rejected: RejectedRecord[] = [];
  let index = 0; // records of the piece seen so far, kept or not
  parseSync(piece.bytes, {
    columns: header,
    max_record_size: MAX_RECORD_CHARS,
    raw: true,
    skip_records_with_error: true,
    on_skip: (error, text) => {
      const at = {
        line: pieceLine(piece, index),
        endLine: pieceEndLine(piece, index),
        record: before + index + 1,
      };
      rejected.push(rejectedRecord(options, error, at, text));
      index++;
      return undefined;
    },
    on_record: (parsed: { record: Row; raw: string }) => {
      const row = parsed.record;
      if (emptyAsNull) for (const name in row) if (row[name] === '') row[name] = null;
      rows.push(row);
      texts.push(parsed.raw.replace(/\r?\n$/, ''));
      locations.push({ file: options.key, line: pieceLine(piece, index), record: before + index + 1 });
      index++;
      return undefined;
    },
  });
  return { rows, locations, texts, rejected };
}
