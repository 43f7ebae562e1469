/** Summary of repeated measurements: every figure in the report is a median with its range. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number;
  values: number[];
}

export function summarize(values: readonly number[]): Summary {
  if (!values.length) throw new Error('summarize(): no values');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted.at(-1)!, runs: values.length, values: [...values] };
}

/** p-th percentile by nearest rank (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** Ratio of two medians measured in the same process run. */
export function ratio(a: Summary, b: Summary): number {
  return a.median / b.median;
}

/**
 * Peak resident set size while a measured step runs: sampled every 20 ms from
 * process.memoryUsage.rss() (getrusage's maxRSS only ever grows over the process lifetime).
 */
export class RssSampler {
  #peak = 0;
  #timer: NodeJS.Timeout | undefined;

  start(): void {
    this.#peak = process.memoryUsage.rss();
    this.#timer = setInterval(() => {
      this.#peak = Math.max(this.#peak, process.memoryUsage.rss());
    }, 20);
    this.#timer.unref();
  }

  /** Peak RSS in MiB since start(). */
  stop(): number {
    clearInterval(this.#timer);
    this.#peak = Math.max(this.#peak, process.memoryUsage.rss());
    return this.#peak / 1024 / 1024;
  }
}

/** Wall time of `fn` in milliseconds, with the peak RSS (MiB) seen while it ran. */
export async function measure<T>(fn: () => Promise<T>): Promise<{ ms: number; rssMiB: number; value: T }> {
  const sampler = new RssSampler();
  sampler.start();
  const started = performance.now();
  try {
    const value = await fn();
    return { ms: performance.now() - started, rssMiB: sampler.stop(), value };
  } catch (error) {
    sampler.stop();
    throw error;
  }
}

export const round = (n: number, digits = 2): number => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};
