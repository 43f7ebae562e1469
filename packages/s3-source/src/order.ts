import { type KeyPattern, parseKeyTime, qlikLoadNumber } from './keys.js';
import type { ListedObject } from './list.js';
import type { Layout } from './stream-options.js';

/**
 * The apply order of a stream's files (invariant 1): by the instant a key's name encodes, Qlik
 * LOAD files first by number, ties by key; and the watermark, the newest file applied so far.
 */

/** The newest file applied so far: its key and the instant its name encodes. */
export interface Watermark {
  key: string;
  time: string;
}

/** A candidate file with its place in the apply order. */
export interface OrderedObject extends ListedObject {
  role: 'baseline' | 'changes';
}

/** Sort key of a file: (time, LOAD number, key). Ties break by key, never by upload time. */
export interface OrderKey {
  timeMs: number;
  seq: number;
  key: string;
}

export function compareOrder(a: OrderKey, b: OrderKey): number {
  if (a.timeMs !== b.timeMs) return a.timeMs - b.timeMs;
  if (a.seq !== b.seq) return a.seq - b.seq;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

export interface KeyOrderOptions {
  keyPattern: KeyPattern;
  timeZone: string;
  layout: Layout;
}

/**
 * Where a key sorts in its stream, or undefined for a bad key. Qlik `LOADnnn` files sort at the
 * epoch by number: every baseline is applied before any change-table file (invariant 1).
 * `unordered` files (names without a time) sort by the object's LastModified, then key: the
 * weaker guarantee a name without time allows.
 */
export function orderOf(
  key: string,
  role: 'baseline' | 'changes',
  options: KeyOrderOptions,
  lastModified?: Date,
): (OrderKey & { resolution: string }) | undefined {
  if (options.layout === 'unordered') {
    if (!lastModified) return undefined;
    return { timeMs: lastModified.getTime(), seq: 0, key, resolution: 'exact' };
  }
  if (options.layout === 'qlik' && role === 'baseline') {
    const seq = qlikLoadNumber(key);
    return seq === undefined ? undefined : { timeMs: 0, seq, key, resolution: 'exact' };
  }
  const parsed = parseKeyTime(key, options.keyPattern, options.timeZone);
  if (!parsed) return undefined;
  return { timeMs: parsed.time.getTime(), seq: 0, key, resolution: parsed.resolution };
}

/** The order key of a watermark (its key decides ties and the LOAD number). */
export function watermarkOrder(watermark: Watermark): OrderKey {
  const seq = qlikLoadNumber(watermark.key);
  const timeMs = Date.parse(watermark.time);
  return { timeMs, seq: seq !== undefined && timeMs === 0 ? seq : 0, key: watermark.key };
}

/** The later of two watermarks. */
export function maxWatermark(
  a: Watermark | null | undefined,
  b: Watermark | null | undefined,
): Watermark | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return compareOrder(watermarkOrder(a), watermarkOrder(b)) >= 0 ? a : b;
}
