import type { ColumnCheck } from './stream-options.js';

/** The header check of a file against a stream's declared columns (CSV header or JSON keys). */

/** The header drift check, shared by CSV headers and JSON-line keys. */
export function checkColumns(
  found: readonly string[],
  expected: readonly string[] | undefined,
  check: ColumnCheck,
  ordered: boolean,
): { message: string; column: number } | undefined {
  const duplicate = found.find((name, index) => found.indexOf(name) !== index);
  if (duplicate !== undefined) {
    return {
      message: `column ${JSON.stringify(duplicate)} appears twice`,
      column: found.lastIndexOf(duplicate) + 1,
    };
  }
  const blank = found.indexOf('');
  if (blank >= 0 && ordered) return { message: `column ${blank + 1} has no name`, column: blank + 1 };
  if (!expected || check === 'any') return undefined;
  const missing = expected.filter((name) => !found.includes(name));
  const extra = check === 'exact' ? found.filter((name) => !expected.includes(name)) : [];
  const reordered =
    check === 'exact' &&
    ordered &&
    !missing.length &&
    !extra.length &&
    found.some((n, i) => n !== expected[i]);
  if (!missing.length && !extra.length && !reordered) return undefined;
  const firstBad = ordered
    ? found.findIndex((name, i) => (check === 'exact' ? name !== expected[i] : false))
    : -1;
  const detail = [
    missing.length ? `missing ${missing.join(', ')}` : '',
    extra.length ? `unexpected ${extra.join(', ')}` : '',
    reordered ? 'same columns in a different order' : '',
  ]
    .filter(Boolean)
    .join('; ');
  return {
    message: `expected [${expected.join(', ')}] (${check}), file has [${found.join(', ')}]: ${detail}`,
    column: firstBad >= 0 ? firstBad + 1 : found.length + 1,
  };
}
