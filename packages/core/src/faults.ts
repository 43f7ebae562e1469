/**
 * Deterministic crash points for the reliability suite (issue 7). A test starts the binary with
 * `TRIBUTARY_FAULT=<point>[@<n>][~<stream>][,<point>…]`; when execution reaches a named point (for
 * the n-th time, counting only where `<stream>` is concerned when given) the process kills itself
 * with SIGKILL — no cleanup, exactly like a power cut. Streams run concurrently, so a test that
 * needs "this stream got here" names the stream. Unset (production), a fault point costs one size
 * check.
 */
interface Armed {
  readonly nth: number;
  readonly stream: string | undefined;
}
const armed: ReadonlyMap<string, Armed> = new Map(
  (globalThis.process?.env?.['TRIBUTARY_FAULT'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const [point, stream] = entry.split('~');
      const [name, nth] = point!.split('@');
      return [name!, { nth: Math.max(1, Number(nth ?? 1) || 1), stream }] as const;
    }),
);
const reached = new Map<string, number>();

/** Names of the crash points, for docs and tests. */
export const FAULT_POINTS = [
  's3-source:after-listing',
  's3-source:mid-download',
  'pg-sink:mid-copy',
  'pg-sink:after-upsert',
  'pg-sink:after-reject',
  'pg-sink:after-commit',
  's3-source:after-archive-copy',
  's3-source:after-archive-record',
  's3-source:watch-sleep',
  'kafka:subscriber-after-commit',
  'kafka:publisher-after-send',
  'pg-source:mid-copy',
  'pg-source:after-upload',
  'pg-source:after-watermark',
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

/** `streams`: the streams this point is reached for, matched against a `~<stream>` scope. */
export function faultPoint(name: FaultPoint, streams?: readonly string[]): void {
  if (armed.size === 0) return;
  const point = armed.get(name);
  if (point === undefined) return;
  if (point.stream !== undefined && !streams?.includes(point.stream)) return;
  const count = (reached.get(name) ?? 0) + 1;
  reached.set(name, count);
  if (count === point.nth) process.kill(process.pid, 'SIGKILL');
}
