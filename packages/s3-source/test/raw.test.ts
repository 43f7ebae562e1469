import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { CsvSplitter, IrregularCsv, pieceLine, type RawPiece } from '../src/raw.js';

const LIMITS = {
  pieceBytes: 1 << 20,
  pieceRecords: Number.POSITIVE_INFINITY,
  skip: 0,
  maxRecordBytes: 1 << 20,
};

/** Feeds `text` in buffers cut at `cuts`, then ends; returns the header and every piece. */
function split(text: string | Buffer, cuts: number[] = [], options: Partial<typeof LIMITS> = {}) {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  const splitter = new CsvSplitter({ ...LIMITS, ...options });
  const pieces: RawPiece[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    pieces.push(...splitter.push(bytes.subarray(from, cut)));
    from = cut;
  }
  pieces.push(splitter.end());
  return { header: splitter.header?.toString('utf8'), pieces };
}

/** Records of the pieces, parsed, with the line each starts on. */
function records(pieces: RawPiece[]): Array<{ fields: string[]; line: number }> {
  return pieces.flatMap((piece) => {
    const rows = parse(piece.bytes) as string[][];
    expect(rows.length).toBe(piece.records);
    return rows.map((fields, i) => ({ fields, line: pieceLine(piece, i) }));
  });
}

// Regular CSV the way exports write it: quoted commas, escaped quotes, line breaks inside quotes
// (LF and CRLF), empty fields, multi-byte characters, a last record without a line ending.
const REGULAR = [
  'id,note,city\n1,"a, b",Nairobi\n2,"she said ""hi""",Mombasa\n3,"line one\nline two",\n4,,"ünïcödé ✓"\n5,"",x',
  'id,note\r\n1,"a\r\nb"\r\n2,plain\r\n3,""""\r\n',
  '\ufeffid,"quoted, header"\n1,2\n',
  'only,a,header\n',
  'id\n1\n2\n3',
  'id,name',
  '"id","name"',
];

describe('CsvSplitter', () => {
  it('cuts regular CSV into whole records, wherever the buffers break', () => {
    for (const text of REGULAR) {
      const expected = parse(text, { bom: true }) as string[][];
      const bytes = Buffer.from(text, 'utf8');
      // Every single cut position, so quotes, CRLF and multi-byte characters straddle buffers.
      for (let cut = 0; cut <= bytes.length; cut++) {
        const { header, pieces } = split(bytes, [cut]);
        expect(parse(header!)[0]).toEqual(expected[0]);
        expect(records(pieces).map((r) => r.fields)).toEqual(expected.slice(1));
        expect(pieces.at(-1)!.recordsTotal).toBe(expected.length - 1);
      }
    }
  });

  it('names the line each record starts on, counting line breaks inside quotes', () => {
    const { pieces } = split('h1,h2\na,"x\ny\nz"\nb,c\r\n'.replaceAll('\r\n', '\n'));
    expect(records(pieces).map((r) => r.line)).toEqual([2, 5]);
  });

  it('cuts pieces by bytes and by records, and skips records already handed out', () => {
    const body = Array.from({ length: 50 }, (_, i) => `${i},"v ${i}"`).join('\n');
    const text = `id,v\n${body}\n`;
    const byRecords = split(text, [7, 100, 333], { pieceRecords: 8 }).pieces;
    expect(byRecords.map((p) => p.records)).toEqual([8, 8, 8, 8, 8, 8, 2]);
    expect(byRecords.map((p) => p.firstLine)).toEqual([2, 10, 18, 26, 34, 42, 50]);
    const byBytes = split(text, [], { pieceBytes: 100 }).pieces;
    expect(byBytes.slice(0, -1).every((p) => p.bytes.length >= 100)).toBe(true);
    expect(records(byBytes).map((r) => r.fields[0])).toEqual(Array.from({ length: 50 }, (_, i) => `${i}`));
    const resumed = split(text, [64], { skip: 45 }).pieces;
    expect(records(resumed).map((r) => [r.fields[0], r.line])).toEqual([
      ['45', 47],
      ['46', 48],
      ['47', 49],
      ['48', 50],
      ['49', 51],
    ]);
    expect(resumed.at(-1)!.recordsTotal).toBe(50);
  });

  it('refuses what PostgreSQL and csv-parse could read differently, wherever the buffers break', () => {
    const irregular: Record<string, string> = {
      'a quote inside an unquoted field': 'a,b\n1,x"y\n',
      'text after a closing quote': 'a,b\n1,"x"y\n',
      'an unterminated quote': 'a,b\n1,"xy\n2,3\n',
      'mixed line endings': 'a,b\r\n1,2\n',
      'a carriage return not followed by a line feed': 'a,b\n1,2\r3\n',
      'an empty line': 'a,b\n1,2\n\n3,4\n',
      'a NUL byte': 'a,b\n1,2\u0000\n',
      'an empty first line': '\na,b\n1,2\n',
      'a line holding only \\.': 'a\n1\n\\.\n3\n',
    };
    for (const [reason, text] of Object.entries(irregular)) {
      const bytes = Buffer.from(text, 'utf8');
      for (let cut = 0; cut <= bytes.length; cut++) {
        expect(() => split(bytes, [cut]), `${reason} (cut at ${cut})`).toThrow(IrregularCsv);
        try {
          split(bytes, [cut]);
        } catch (error) {
          expect((error as Error).message).toContain(reason);
        }
      }
    }
  });

  it('sends a record longer than the limit to the row parser', () => {
    const text = `a,b\n1,"${'x'.repeat(500)}"\n`;
    expect(() => split(text, [10, 20], { maxRecordBytes: 100 })).toThrow(
      /longer than the pass-through limit/,
    );
  });
});
