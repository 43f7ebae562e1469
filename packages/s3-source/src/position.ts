import type { ExportKind, Position } from '@tributary/core';
import type { Watermark } from './order.js';

/** The S3 source's position: where to resume, and the watermark it carries. */
export type S3Position = {
  key: string;
  etag: string;
  /** Data records of `key` consumed up to and including the committed batch. */
  row: number;
  /** The file is complete. */
  done: boolean;
  kind?: ExportKind;
  /**
   * The newest file applied so far. Carried in the position because an applied late file must
   * never move it back (a position's own key may be older than the watermark).
   */
  watermark?: Watermark | null;
  /** Set on the empty commit batch of a late file skipped under `lateFiles: 'skip'`. */
  late?: 'skipped';
};

/** Reads an S3 position from an opaque checkpoint; null when it is not one of ours. */
export function toS3Position(position: Position | null | undefined): S3Position | null {
  if (!position || typeof position['key'] !== 'string') return null;
  const watermark = position['watermark'];
  const w =
    watermark && typeof watermark === 'object' && !Array.isArray(watermark)
      ? (watermark as Record<string, unknown>)
      : undefined;
  return {
    key: position['key'],
    etag: typeof position['etag'] === 'string' ? position['etag'] : '',
    row: typeof position['row'] === 'number' ? position['row'] : 0,
    done: position['done'] !== false,
    ...(position['kind'] === 'baseline' || position['kind'] === 'delta' ? { kind: position['kind'] } : {}),
    ...(w && typeof w['key'] === 'string' && typeof w['time'] === 'string'
      ? { watermark: { key: w['key'], time: w['time'] } }
      : watermark === null
        ? { watermark: null }
        : {}),
  };
}
