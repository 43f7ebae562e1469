/**
 * Deterministic crash points for the reliability suite (issue 7). A test starts the binary with
 * `TRIBUTARY_FAULT=<point>[@<n>][,<point>…]`; when execution reaches a named point (for the n-th
 * time) the process kills itself with SIGKILL — no cleanup, exactly like a power cut. Unset (production), a fault point
 * costs one size check.
 */
const armed: ReadonlyMap<string, number> = new Map(
  (globalThis.process?.env?.['TRIBUTARY_FAULT'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      // `<point>@<n>`: the n-th time the point is reached (default the first).
      const [name, nth] = entry.split('@');
      return [name!, Math.max(1, Number(nth ?? 1) || 1)] as const;
    }),
);
const reached = new Map<string, number>();

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
  if (armed.size === 0) return;
  const nth = armed.get(name);
  if (nth === undefined) return;
  const count = (reached.get(name) ?? 0) + 1;
  reached.set(name, count);
  if (count === nth) process.kill(process.pid, 'SIGKILL');
}
