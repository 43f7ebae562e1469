import { HeadObjectCommand } from '@aws-sdk/client-s3';
import type { Batch, Row, WriteResult } from '@tributary/core';
import { archiveFile } from './archive.js';
import { OriginalDeletes } from './deletes.js';
import { archiveKey } from './keys.js';
import type { ArchiveTask } from './plan.js';
import { toS3Position } from './position.js';
import type { SourceRuntime } from './runtime.js';
import type { ResolvedStream } from './stream-options.js';

/**
 * Archives (copy, confirm, record, delete) running behind the apply of the next files. Each
 * starts only once its file committed; more than this many at once and committed() waits.
 */
const MAX_ARCHIVES_IN_FLIGHT = 4;

function archivePrefix(stream: ResolvedStream, to: ArchiveTask['to']): string {
  if (to === 'late') return stream.latePrefix;
  return to === 'rejected' ? stream.rejectedPrefix : stream.processedPrefix;
}

/**
 * The source's post-commit archives. Archives started by committed() and not finished: the sink
 * goes on with the next file meanwhile. Planning and close() wait for them (a plan must never
 * race a file's archive).
 */
export class ArchiveScheduler {
  readonly #runtime: SourceRuntime;
  readonly #streamsById: ReadonlyMap<string, ResolvedStream>;
  readonly #archiving = new Set<Promise<void>>();
  /** The originals' deletes, batched across files (see `OriginalDeletes`). */
  readonly #deletes: OriginalDeletes;

  constructor(runtime: SourceRuntime, streamsById: ReadonlyMap<string, ResolvedStream>) {
    this.#runtime = runtime;
    this.#streamsById = streamsById;
    this.#deletes = new OriginalDeletes(runtime);
  }

  /** Archive after commit; a failure is a warning, the next run finishes it (invariant 3). */
  async archiveQuietly(
    stream: ResolvedStream,
    file: { key: string; etag: string; size: number },
    to: ArchiveTask['to'],
  ): Promise<boolean> {
    const target = archiveKey(file.key, stream.archiveBase, archivePrefix(stream, to));
    const send = this.#runtime.sender(undefined, stream.id);
    try {
      // Recorded before the original is deleted (both batched in `OriginalDeletes`): a crash in
      // between leaves the file listed, and the next run finishes the move. Recorded after the
      // delete, a crash there left a file in processed/ whose load row said `loaded` for good
      // (it is never listed again).
      const loads = this.#runtime.loads();
      await archiveFile(
        this.#runtime.config.client,
        { bucket: stream.bucket, ...file, target },
        {
          send,
          deleteOriginal: () =>
            this.#deletes.add({
              stream: stream.id,
              bucket: stream.bucket,
              key: file.key,
              ...(to === 'processed' && loads
                ? { record: () => loads.markArchived(stream.id, file.key) }
                : {}),
            }),
        },
      );
      return true;
    } catch (error) {
      this.#runtime.emit({
        type: 'warning',
        stream: stream.id,
        message: `archiving ${file.key} to ${target} failed; it stays in place and the next run finishes it: ${(error as Error).message}`,
        detail: { key: file.key, target },
      });
      return false;
    }
  }

  /**
   * Waits for every archive in flight and the deletes of their originals (they are never
   * aborted: each is a few S3 calls).
   */
  async done(): Promise<void> {
    while (this.#archiving.size) await Promise.all(this.#archiving);
    await this.#deletes.done();
  }

  /**
   * The archive runs while the sink applies the next file: it only ever starts here, after
   * this file's commit (invariant 3), and a crash while it runs leaves a committed file
   * that the next run only archives. Settled once archived, so a failing run, a watch
   * poll and close() let earlier files finish it.
   */
  async afterCommit(batch: Batch<Row>, result: WriteResult | undefined, settled: () => void): Promise<void> {
    const task: Promise<void> = this.#archiveCommitted(batch, result)
      .catch((error: unknown) => {
        this.#runtime.emit({
          type: 'warning',
          stream: batch.stream,
          message: `post-commit step failed (data is committed; it will be retried next run): ${(error as Error).message}`,
        });
      })
      .finally(() => {
        this.#archiving.delete(task);
        settled();
      });
    this.#archiving.add(task);
    // Bounded: more archives than this in flight and the sink waits for one (invariant 7).
    while (this.#archiving.size >= MAX_ARCHIVES_IN_FLIGHT) await Promise.race(this.#archiving);
  }

  async #archiveCommitted(batch: Batch<Row>, result: WriteResult | undefined): Promise<void> {
    const { config } = this.#runtime;
    if (!batch.meta.lastOfUnit || !config.archive) return;
    const stream = this.#streamsById.get(batch.stream);
    const position = toS3Position(batch.position);
    if (!stream || stream.replayFrom || !position) return;
    let size = batch.meta.size;
    if (size === undefined) {
      const head = await config.client.send(
        new HeadObjectCommand({ Bucket: stream.bucket, Key: position.key }),
      );
      size = head.ContentLength ?? 0;
    }
    await this.archiveQuietly(
      stream,
      { key: position.key, etag: position.etag, size },
      result?.unitRejected ? 'rejected' : batch.meta.late === 'skipped' ? 'late' : 'processed',
    );
  }
}
