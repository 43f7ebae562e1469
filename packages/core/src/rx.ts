import { from, lastValueFrom, Observable, type OperatorFunction, toArray } from 'rxjs';
import type { Batch, CheckpointLookup, EmitEvent, Row, Source, Transform } from './types.js';

export interface ObserveOptions {
  checkpoint?: CheckpointLookup;
  emit?: EmitEvent;
}

/**
 * A source as an Observable of batches, in source order. Unsubscribing aborts the read.
 * Nothing is committed: this is for observing or feeding rxjs-based consumers.
 */
export function sourceToObservable<R = Row>(
  source: Source<R>,
  options: ObserveOptions = {},
): Observable<Batch<R>> {
  return new Observable<Batch<R>>((subscriber) => {
    const controller = new AbortController();
    (async () => {
      const batches = source.read({
        checkpoint: options.checkpoint ?? (async () => null),
        signal: controller.signal,
        emit: options.emit ?? (() => {}),
      });
      for await (const batch of batches) {
        if (subscriber.closed) return;
        subscriber.next(batch);
      }
      subscriber.complete();
    })().catch((error: unknown) => subscriber.error(error));
    return () => controller.abort();
  });
}

/**
 * An rxjs operator over batches used as a transform. Each batch goes through the operator on
 * its own; if it emits several batches their rows are concatenated in order, if none the
 * batch is dropped (and counted by the pipeline).
 */
export function rxTransform(operator: OperatorFunction<Batch<Row>, Batch<Row>>): Transform {
  return async (batch) => {
    const out = await lastValueFrom(from([batch]).pipe(operator, toArray()));
    if (out.length === 0) return undefined;
    if (out.length === 1) return out[0];
    return { ...batch, rows: out.flatMap((b) => b.rows), meta: { ...batch.meta, locations: undefined } };
  };
}

/** An rxjs operator over rows (e.g. `filter`, `map`) applied to every batch's rows. */
export function rxRows(operator: OperatorFunction<Row, Row>, name = 'rx'): Transform {
  return async (batch) => {
    const rows = await lastValueFrom(from(batch.rows).pipe(operator, toArray()));
    const dropped = Math.max(0, batch.rows.length - rows.length);
    return {
      ...batch,
      rows,
      meta: {
        ...batch.meta,
        locations: undefined,
        filtered: dropped
          ? { ...batch.meta.filtered, [name]: (batch.meta.filtered[name] ?? 0) + dropped }
          : batch.meta.filtered,
      },
    };
  };
}
