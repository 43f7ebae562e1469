import type { Batch, Position, Row } from '@tributary/core';

function commitId(stream: string, position: Position): string {
  return `${stream}\0${String(position['key'])}\0${String(position['row'])}\0${String(position['done'])}`;
}

/**
 * Commit batches handed out and not yet confirmed by committed(): before failing, the source
 * lets them land so earlier files are never lost with the failing one.
 */
export class CommitTracker {
  readonly #outstanding = new Map<string, () => void>();
  readonly #outstandingDone = new Map<string, Promise<void>>();

  /** Called as a batch is handed out; only commit batches are awaited. */
  track(batch: Batch<Row>): void {
    if (!batch.meta.commit) return;
    const id = commitId(batch.stream, batch.position);
    this.#outstandingDone.set(
      id,
      new Promise<void>((resolve) => {
        this.#outstanding.set(id, resolve);
      }),
    );
  }

  /** The function that marks this batch settled (committed and its post-commit step done). */
  settler(batch: Batch<Row>): () => void {
    const id = commitId(batch.stream, batch.position);
    return () => {
      this.#outstanding.get(id)?.();
      this.#outstanding.delete(id);
      this.#outstandingDone.delete(id);
    };
  }

  /** Waits until every commit batch handed out has settled, or the signal aborts. */
  async settled(signal: AbortSignal): Promise<void> {
    if (this.#outstandingDone.size === 0 || signal.aborted) return;
    const aborted = new Promise<void>((resolve) =>
      signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    await Promise.race([Promise.all(this.#outstandingDone.values()), aborted]);
  }
}
