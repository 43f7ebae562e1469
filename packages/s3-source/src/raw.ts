/**
 * The pass-through reader's splitter: cuts a CSV byte stream into pieces of whole records without
 * parsing fields, so the bytes can go to PostgreSQL's COPY as they are.
 *
 * It only looks at quotes, commas next to quotes, CR and LF, jumping between them with
 * `indexOf`. Anything PostgreSQL's CSV reader and csv-parse could read differently (a quote
 * inside an unquoted field, text after a closing quote, a lone CR, mixed line endings, an empty
 * line, a NUL byte, a line holding only `\.` (COPY's end-of-data marker), an unterminated quote,
 * a huge record) makes the file `IrregularCsv`: the
 * reader then re-reads it with csv-parse from the first record not yet handed out, so the
 * result and the errors are those of the row path.
 */

const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const END_OF_DATA = Buffer.from('\\.', 'latin1');

/** Input the splitter will not pass through; the caller falls back to the row parser. */
export class IrregularCsv extends Error {
  constructor(reason: string) {
    super(`not passed through: ${reason}`);
    this.name = 'IrregularCsv';
  }
}

/** A run of whole records. */
export interface RawPiece {
  bytes: Buffer;
  records: number;
  /** Input line the piece's first record starts on (1-based). */
  firstLine: number;
  /** Records (index in the piece) that span more than one line, with their extra line count. */
  multiLine: Array<[record: number, extraLines: number]>;
  /** Data records of the file up to and including this piece. */
  recordsTotal: number;
}

export interface SplitterOptions {
  /** Cut a piece once it holds this many bytes… */
  pieceBytes: number;
  /** …or this many records. */
  pieceRecords: number;
  /** Data records already handed out: scanned, not returned again. */
  skip: number;
  /** Largest record in bytes; longer ones go to the row parser (which names their line). */
  maxRecordBytes: number;
}

export class CsvSplitter {
  /** The header record's bytes once complete (without its line ending). */
  header: Buffer | undefined;
  private headerParts: Buffer[] = [];
  private crlf = false;
  private first = true;
  /** The first bytes while they could still be a split BOM. */
  private head: Buffer = Buffer.alloc(0);

  private inQuote = false;
  /** Inside quotes, the last byte seen was a quote: an escaped `""` or the closing quote. */
  private quotePending = false;
  /** A CR outside quotes at this absolute offset; only an LF may follow it. */
  private crAt = -2;
  /** The last byte seen outside quotes (LF at a record start). */
  private last = LF;
  /** Absolute offset of the current buffer's first byte. */
  private abs = 0;
  private recordStart = 0;
  private recordExtraLines = 0;
  private lines = 0;

  private parts: Buffer[] = [];
  private partsBytes = 0;
  private pieceRecords = 0;
  private pieceFirstLine = 2;
  private pieceMultiLine: Array<[number, number]> = [];
  private records = 0;

  constructor(private readonly options: SplitterOptions) {}

  /** Bytes of a record after the last one scanned: the file has at least one more record. */
  get partialRecord(): boolean {
    return this.header !== undefined && this.abs > this.recordStart;
  }

  /** Scans one buffer; returns the pieces completed by it. */
  push(chunk: Buffer): RawPiece[] {
    let b = chunk;
    if (this.first) {
      // A UTF-8 BOM is dropped, even when it arrives split over buffers.
      b = this.head.length ? Buffer.concat([this.head, chunk]) : chunk;
      if (b.length < 3 && BOM.subarray(0, b.length).equals(b)) {
        this.head = b;
        return [];
      }
      this.first = false;
      this.head = Buffer.alloc(0);
      if (b.subarray(0, 3).equals(BOM)) b = b.subarray(3);
    }
    const out: RawPiece[] = [];
    const len = b.length;
    let pieceStart = 0;
    let i = 0;
    let nq = -1;
    let nn = -1;
    let ncr = -1;
    const next = (byte: number, cached: number): number => {
      if (cached >= i || cached === len) return cached;
      const at = b.indexOf(byte, i);
      return at < 0 ? len : at;
    };
    while (i < len) {
      if (this.inQuote) {
        if (this.quotePending) {
          this.quotePending = false;
          if (b[i] === QUOTE) {
            i++;
            continue;
          }
          this.inQuote = false;
          const c = b[i];
          if (c !== COMMA && c !== LF && c !== CR) throw new IrregularCsv('text after a closing quote');
          this.last = QUOTE;
          continue;
        }
        nq = next(QUOTE, nq);
        // Line breaks inside quotes belong to the field; they only move the line count.
        nn = next(LF, nn);
        while (nn < nq) {
          this.recordExtraLines++;
          this.lines++;
          i = nn + 1;
          nn = next(LF, nn);
        }
        if (nq === len) {
          i = len;
          if (this.abs + len - this.recordStart > this.options.maxRecordBytes)
            throw new IrregularCsv('a record longer than the pass-through limit');
          break;
        }
        i = nq + 1;
        this.quotePending = true;
        continue;
      }
      nq = next(QUOTE, nq);
      nn = next(LF, nn);
      ncr = next(CR, ncr);
      const at = Math.min(nq, nn, ncr);
      if (this.crAt >= 0 && !(at === nn && this.abs + nn === this.crAt + 1)) {
        throw new IrregularCsv('a carriage return not followed by a line feed');
      }
      if (at === len) {
        this.last = b[len - 1]!;
        i = len;
        break;
      }
      const before = at > i ? b[at - 1]! : this.last;
      if (at === nq) {
        if (before !== COMMA && before !== LF) throw new IrregularCsv('a quote inside an unquoted field');
        this.inQuote = true;
        i = at + 1;
        continue;
      }
      if (at === ncr) {
        this.crAt = this.abs + at;
        this.last = CR;
        i = at + 1;
        continue;
      }
      // LF outside quotes: a record ends.
      const endsWithCr = this.crAt === this.abs + at - 1;
      this.crAt = -2;
      const end = this.abs + at + 1;
      const contentBytes = end - this.recordStart - (endsWithCr ? 2 : 1);
      this.lines++;
      i = at + 1;
      this.last = LF;
      if (!this.header) {
        this.crlf = endsWithCr;
        this.headerParts.push(b.subarray(pieceStart, at));
        this.header = trimCr(Buffer.concat(this.headerParts));
        this.headerParts = [];
        if (this.header.length === 0) throw new IrregularCsv('an empty first line');
        this.startPiece(end);
        pieceStart = i;
        continue;
      }
      if (endsWithCr !== this.crlf) throw new IrregularCsv('mixed line endings');
      if (contentBytes === 0) throw new IrregularCsv('an empty line');
      if (end - this.recordStart > this.options.maxRecordBytes)
        throw new IrregularCsv('a record longer than the pass-through limit');
      this.records++;
      if (this.records <= this.options.skip) {
        this.startPiece(end);
        pieceStart = i;
        continue;
      }
      if (this.recordExtraLines) this.pieceMultiLine.push([this.pieceRecords, this.recordExtraLines]);
      this.recordExtraLines = 0;
      this.pieceRecords++;
      this.recordStart = end;
      if (
        this.partsBytes + (i - pieceStart) >= this.options.pieceBytes ||
        this.pieceRecords >= this.options.pieceRecords
      ) {
        out.push(this.cut(b.subarray(pieceStart, i)));
        this.startPiece(end);
        pieceStart = i;
      }
    }
    if (pieceStart < len) {
      const rest = b.subarray(pieceStart);
      if (this.header) {
        this.parts.push(rest);
        this.partsBytes += rest.length;
      } else {
        this.headerParts.push(rest);
      }
    }
    this.abs += len;
    return out;
  }

  /** The stream ended: the last piece (possibly empty), or the header-only case. */
  end(): RawPiece {
    if (this.first && this.head.length) {
      const head = this.head;
      this.head = Buffer.alloc(0);
      this.first = false;
      this.push(head);
    }
    if (this.inQuote && !this.quotePending) throw new IrregularCsv('an unterminated quote');
    this.inQuote = false;
    this.quotePending = false;
    if (this.crAt >= 0) throw new IrregularCsv('a carriage return not followed by a line feed');
    if (!this.header) {
      // The whole file was its header (no line ending): no data record.
      this.header = trimCr(Buffer.concat(this.headerParts));
      this.headerParts = [];
      this.parts = [];
      this.partsBytes = 0;
      this.recordStart = this.abs;
    }
    if (this.abs > this.recordStart) {
      // The last record has no line ending.
      if (this.abs - this.recordStart > this.options.maxRecordBytes)
        throw new IrregularCsv('a record longer than the pass-through limit');
      this.records++;
      if (this.records <= this.options.skip) {
        this.parts = [];
        this.partsBytes = 0;
      } else {
        if (this.recordExtraLines) this.pieceMultiLine.push([this.pieceRecords, this.recordExtraLines]);
        this.pieceRecords++;
      }
    }
    return this.cut(Buffer.alloc(0));
  }

  private cut(tail: Buffer): RawPiece {
    const bytes = this.parts.length ? Buffer.concat([...this.parts, tail]) : Buffer.from(tail);
    if (bytes.indexOf(0) >= 0) throw new IrregularCsv('a NUL byte');
    // PostgreSQL ends COPY at a line holding only `\.`: the rows after it would be lost.
    for (let i = bytes.indexOf(END_OF_DATA); i >= 0; i = bytes.indexOf(END_OF_DATA, i + 1)) {
      const after = i + 2;
      const lineStart = i === 0 || bytes[i - 1] === LF;
      const lineEnd =
        after === bytes.length ||
        bytes[after] === LF ||
        (bytes[after] === CR && (after + 1 === bytes.length || bytes[after + 1] === LF));
      if (lineStart && lineEnd) throw new IrregularCsv('a line holding only \\.');
    }
    return {
      bytes,
      records: this.pieceRecords,
      firstLine: this.pieceFirstLine,
      multiLine: this.pieceMultiLine,
      recordsTotal: Math.max(this.records, this.options.skip),
    };
  }

  private startPiece(recordStart: number): void {
    this.parts = [];
    this.partsBytes = 0;
    this.pieceRecords = 0;
    this.pieceMultiLine = [];
    this.recordStart = recordStart;
    this.recordExtraLines = 0;
    this.pieceFirstLine = this.lines + 1;
  }
}

function trimCr(header: Buffer): Buffer {
  return header.length && header[header.length - 1] === CR ? header.subarray(0, -1) : header;
}

/** The line record `index` of a piece ends on (its start line plus line breaks in quotes). */
export function pieceEndLine(piece: Pick<RawPiece, 'firstLine' | 'multiLine'>, index: number): number {
  const extra = piece.multiLine.find(([record]) => record === index)?.[1] ?? 0;
  return pieceLine(piece, index) + extra;
}

/** The line record `index` of a piece starts on. */
export function pieceLine(piece: Pick<RawPiece, 'firstLine' | 'multiLine'>, index: number): number {
  let line = piece.firstLine + index;
  for (const [record, extra] of piece.multiLine) {
    if (record >= index) break;
    line += extra;
  }
  return line;
}
