import { DeleteObjectCommand, DeleteObjectsCommand } from '@aws-sdk/client-s3';
import { faultPoint } from '@tributary/core';
import type { SourceRuntime } from './runtime.js';

/** At most this many keys per DeleteObjects request (the S3 API's limit). */
const MAX_KEYS_PER_REQUEST = 1000;
/**
 * How long an archived original may wait for others to share its delete request. Short: until
 * it is deleted the original still sits in changes/ (beside its confirmed, recorded copy), and a
 * new upload under the same key in that window would be deleted with it.
 */
const GATHER_MS = 250;

export interface PendingDelete {
  stream: string;
  bucket: string;
  key: string;
  /** Records the archive in the load log; runs before the delete, which waits for it. */
  record?: () => Promise<void>;
}

type Pending = PendingDelete;

/**
 * The last steps of archiving, batched (issue 12): originals whose copy is confirmed are recorded
 * as archived in the load log (the marks of a batch share one UPDATE) and then deleted together
 * with DeleteObjects, up to 1,000 keys per request, within `GATHER_MS` of the first one, instead
 * of one UPDATE and one DeleteObject each. With a trickle of small files those were a third of
 * the S3 requests and a quarter of the PostgreSQL writes a file cost.
 *
 * Nothing depends on the delete for correctness (invariant 3): a crash or a failed delete leaves
 * a file in changes/ whose copy is confirmed and whose load row says `archived`; the next run
 * lists it, sees it applied, and finishes the move. A key the server reports it could not delete
 * is a warning, like a failed DeleteObject. A server without DeleteObjects (501, NotImplemented)
 * gets one DeleteObject per key.
 */
export class OriginalDeletes {
  readonly #runtime: SourceRuntime;
  #pending: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #flushing = new Set<Promise<void>>();
  #oneByOne = false;

  constructor(runtime: SourceRuntime) {
    this.#runtime = runtime;
  }

  /** Queues an original for deletion; it is deleted within `GATHER_MS`, or at `done()`. */
  add(item: PendingDelete): void {
    this.#pending.push(item);
    if (this.#pending.length >= MAX_KEYS_PER_REQUEST) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), GATHER_MS).unref();
  }

  /** Deletes everything queued and waits for every delete in flight. */
  async done(): Promise<void> {
    this.#flush();
    while (this.#flushing.size) await Promise.all(this.#flushing);
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    const task = this.#delete(batch).finally(() => this.#flushing.delete(task));
    this.#flushing.add(task);
  }

  async #delete(queued: Pending[]): Promise<void> {
    // Recorded first (invariant 3): an original whose archive could not be recorded stays.
    const recorded = await Promise.all(
      queued.map(async (item) => {
        try {
          await item.record?.();
          return true;
        } catch (error) {
          this.#warn(item, item.key, `recording the archive failed: ${(error as Error).message}`);
          return false;
        }
      }),
    );
    const batch = queued.filter((_, i) => recorded[i]);
    if (batch.some((item) => item.record)) faultPoint('s3-source:after-archive-record'); // recorded, not deleted
    const byBucket = new Map<string, Pending[]>();
    for (const item of batch) {
      const items = byBucket.get(item.bucket);
      if (items) items.push(item);
      else byBucket.set(item.bucket, [item]);
    }
    for (const [bucket, items] of byBucket) {
      if (this.#oneByOne) {
        await Promise.all(items.map((item) => this.#deleteOne(item)));
        continue;
      }
      try {
        const send = this.#runtime.sender(undefined, items[0]!.stream);
        const { client } = this.#runtime.config;
        const result = await send(() =>
          client.send(
            new DeleteObjectsCommand({
              Bucket: bucket,
              Delete: { Objects: items.map(({ key }) => ({ Key: key })), Quiet: true },
            }),
          ),
        );
        const byKey = new Map(items.map((item) => [item.key, item]));
        for (const error of result.Errors ?? []) {
          const item = byKey.get(error.Key ?? '');
          this.#warn(
            item ?? items[0]!,
            error.Key ?? '(no key)',
            `${error.Code ?? ''} ${error.Message ?? ''}`.trim(),
          );
        }
      } catch (error) {
        const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (status === 501 || (error as { name?: string }).name === 'NotImplemented') {
          this.#oneByOne = true;
          await Promise.all(items.map((item) => this.#deleteOne(item)));
          continue;
        }
        for (const item of items) this.#warn(item, item.key, (error as Error).message);
      }
    }
  }

  async #deleteOne(item: Pending): Promise<void> {
    try {
      const send = this.#runtime.sender(undefined, item.stream);
      await send(() =>
        this.#runtime.config.client.send(new DeleteObjectCommand({ Bucket: item.bucket, Key: item.key })),
      );
    } catch (error) {
      this.#warn(item, item.key, (error as Error).message);
    }
  }

  #warn(item: Pending, key: string, reason: string): void {
    this.#runtime.emit({
      type: 'warning',
      stream: item.stream,
      message: `archiving ${key}: the copy is confirmed but deleting the original failed; it stays in place and the next run finishes the move: ${reason}`,
      detail: { key },
    });
  }
}
