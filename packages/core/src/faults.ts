/**
 * Deterministic crash points for the reliability suite (issue 7). A test starts the binary with
 * `TRIBUTARY_FAULT=<point>[,<point>…]`; when execution reaches a named point the process kills
 * itself with SIGKILL — no cleanup, exactly like a power cut. Unset (production), a fault point
 * costs one Set lookup.
 */
const armed: ReadonlySet<string> = new Set(
  (globalThis.process?.env?.['TRIBUTARY_FAULT'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

/** Names of the crash points, for docs and tests. */
export const FAULT_POINTS = [
  's3-source:after-listing',
  's3-source:mid-download',
  'pg-sink:mid-copy',
  'pg-sink:after-upsert',
  'pg-sink:after-commit',
  's3-source:after-archive-copy',
  's3-source:after-archive-record',
  's3-source:watch-sleep',
  'kafka:subscriber-after-commit',
  'kafka:publisher-after-send',
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

export function faultPoint(name: FaultPoint): void {
  if (armed.size !== 0 && armed.has(name)) process.kill(process.pid, 'SIGKILL');
}
