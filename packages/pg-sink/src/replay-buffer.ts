import type { Batch, Row } from '@tributary/core';

/** How much of an open unit may be held in memory to replay it. */
export interface ReplayBounds {
  rows: number;
  bytes: number;
}

/**
 * The batches of the open unit, kept so a transient failure (a lost connection) or the switch
 * to the checked path can re-run the whole unit in process. Bounded in rows and input bytes:
 * a larger unit is dropped and re-read by `pipeline()` from the checkpoint instead (invariant 7:
 * memory does not grow with file size).
 */
export class ReplayBuffer {
  readonly #bounds: ReplayBounds;
  /** undefined once over the bounds. */
  #batches: Batch<Row>[] | undefined = [];
  #rows = 0;
  #bytes = 0;

  constructor(bounds: ReplayBounds) {
    this.#bounds = bounds;
  }

  /** Keeps the batch, or lets the whole unit go once it no longer fits. */
  keep(batch: Batch<Row>): void {
    if (!this.#batches) return;
    const bytes = Math.max(batch.meta.bytes ?? 0, batch.raw?.bytes.length ?? 0);
    const rows = batch.raw?.records ?? batch.rows.length;
    if (this.#rows + rows <= this.#bounds.rows && this.#bytes + bytes <= this.#bounds.bytes) {
      this.#batches.push(batch);
      this.#rows += rows;
      this.#bytes += bytes;
    } else {
      this.#batches = undefined; // too large to replay in process (invariant 7)
    }
  }

  /** Every batch of the unit so far is held. */
  get holdsUnit(): boolean {
    return this.#batches !== undefined;
  }

  /** The unit's batches from the first up to `last` (all when not given). */
  batches(last?: Batch<Row>): Batch<Row>[] {
    const batches = this.#batches;
    if (!batches) throw new Error('replay buffer: the unit was too large to hold');
    return last === undefined ? batches : batches.slice(0, batches.indexOf(last) + 1);
  }
}
