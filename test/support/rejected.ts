/**
 * Issue 17's acceptance file: 10,000 data rows of which 3 are malformed (wrong field count) and
 * 2 do not cast, with where each bad one is (line = record + 1: the header is line 1).
 */
export const REJECT_HEADER = 'id,amount,day,note';

export interface BadRow {
  record: number;
  line: number;
  column: string;
  code: 'MALFORMED_ROW' | 'CAST_FAILED';
  text: string;
}

const BAD: Array<Omit<BadRow, 'line'>> = [
  { record: 100, column: '5', code: 'MALFORMED_ROW', text: '100,1.5,2026-01-01,extra,field' },
  { record: 2000, column: 'day', code: 'MALFORMED_ROW', text: '2000,1.5' },
  { record: 3000, column: 'amount', code: 'CAST_FAILED', text: '3000,abc,2026-01-01,bad amount' },
  { record: 5000, column: '5', code: 'MALFORMED_ROW', text: '5000,1,2026-01-01,a,b,c' },
  { record: 7000, column: 'day', code: 'CAST_FAILED', text: '7000,7,2026-13-45,bad day' },
];

export const BAD_ROWS: BadRow[] = BAD.map((bad) => ({ ...bad, line: bad.record + 1 }));

/** A clean record for id `i` (`version` changes its amount and note). */
export function cleanRecord(i: number, version = 1): string {
  return `${i},${i * version}.25,2026-01-${String((i % 28) + 1).padStart(2, '0')},"row ${i}, v${version}"`;
}

/** The acceptance file: `rows` records, the five bad ones in place when `withBad`. */
export function rejectFile(rows = 10_000, withBad = true): string {
  const bad = new Map(BAD_ROWS.map((b) => [b.record, b.text]));
  const lines = [REJECT_HEADER];
  for (let i = 1; i <= rows; i++) lines.push((withBad ? bad.get(i) : undefined) ?? cleanRecord(i));
  return `${lines.join('\n')}\n`;
}

/** The target's column types. */
export const REJECT_TYPES = { id: 'integer', amount: 'numeric', day: 'date', note: 'text' } as const;
