import { CopyObjectCommand, DeleteObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { faultPoint, TributaryError } from '@tributary/core';
import { normalizeEtag } from './list.js';

export interface ArchiveFileInput {
  bucket: string;
  key: string;
  /** The ETag the file had when it was read: a file changed since is not moved. */
  etag: string;
  size: number;
  /** Where it goes (see `archiveKey`). */
  target: string;
}

export interface ArchiveFileOptions {
  signal?: AbortSignal | undefined;
  /** Wraps each S3 call (retries). */
  send?: <T>(request: () => Promise<T>) => Promise<T>;
  /**
   * Runs once the copy is verified, before the original is deleted: the load log records the
   * archive here, so a crash at any point leaves the file in changes/ until it is recorded.
   */
  onCopied?: () => Promise<void>;
  /**
   * Takes over once the copy is confirmed: records the archive and deletes the original (then
   * `onCopied` is not called). Default: `onCopied`, then DeleteObject now.
   */
  deleteOriginal?: () => Promise<void> | void;
}

/** `CopySource` must be URL-encoded, segment by segment so the `/`s stay. */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

/** True when a copy is the same object: same size, and the same ETag unless the source was multipart. */
export function sameObject(
  source: { etag: string; size: number },
  copy: { etag: string; size: number },
): boolean {
  if (source.size !== copy.size) return false;
  // A multipart upload's ETag (`…-N`) is not an MD5, and a copy gets a plain one.
  return source.etag.includes('-') || source.etag === copy.etag;
}

/**
 * Moves a file: CopyObject, confirm the copy (size and ETag), then DeleteObject. Copy before
 * delete and never delete an unconfirmed copy: a crash at any step leaves the file in at least
 * one place (invariant 3).
 *
 * The copy is confirmed by the ETag CopyObject returns: a single-part object's ETag is the MD5
 * of its bytes, so the same ETag is the same bytes (and size). Only when that cannot settle it
 * (a multipart source, whose copy gets a new ETag; a server that returns none; a mismatch) is the
 * copy read back with HeadObject, as before: one S3 round trip less per file in the usual case.
 */
export async function archiveFile(
  client: S3Client,
  input: ArchiveFileInput,
  options: ArchiveFileOptions = {},
): Promise<void> {
  const send = options.send ?? ((request) => request());
  const abortSignal = options.signal;
  const copied = await send(() =>
    client.send(
      new CopyObjectCommand({
        Bucket: input.bucket,
        Key: input.target,
        CopySource: copySource(input.bucket, input.key),
        CopySourceIfMatch: `"${input.etag}"`,
      }),
      { abortSignal },
    ),
  );
  const copiedEtag = copied.CopyObjectResult?.ETag;
  let copy: { etag: string; size: number };
  if (copiedEtag !== undefined && !input.etag.includes('-') && normalizeEtag(copiedEtag) === input.etag) {
    copy = { etag: input.etag, size: input.size };
  } else {
    const head = await send(() =>
      client.send(new HeadObjectCommand({ Bucket: input.bucket, Key: input.target }), { abortSignal }),
    );
    copy = { etag: normalizeEtag(head.ETag), size: head.ContentLength ?? -1 };
  }
  faultPoint('s3-source:after-archive-copy'); // copied, original not yet deleted (issue 7)
  if (!sameObject(input, copy)) {
    throw new TributaryError(
      'SOURCE_FAILED',
      `archive copy ${input.target} does not match ${input.key} (size ${copy.size} vs ${input.size}, ETag ${copy.etag} vs ${input.etag}); the original is kept`,
      { location: { file: input.key } },
    );
  }
  if (options.deleteOriginal) {
    // Recording and deleting are the caller's (the source batches both across files).
    await options.deleteOriginal();
    return;
  }
  await options.onCopied?.();
  faultPoint('s3-source:after-archive-record'); // recorded as archived, original not yet deleted
  await send(() =>
    client.send(new DeleteObjectCommand({ Bucket: input.bucket, Key: input.key }), { abortSignal }),
  );
}

/** The archive copy of a file if it exists and matches it (a delete failed after the copy). */
export async function archivedCopyMatches(
  client: S3Client,
  input: Omit<ArchiveFileInput, 'target'> & { target: string },
  options: Pick<ArchiveFileOptions, 'signal' | 'send'> = {},
): Promise<boolean> {
  const send = options.send ?? ((request) => request());
  try {
    const head = await send(() =>
      client.send(new HeadObjectCommand({ Bucket: input.bucket, Key: input.target }), {
        abortSignal: options.signal,
      }),
    );
    return sameObject(input, { etag: normalizeEtag(head.ETag), size: head.ContentLength ?? -1 });
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || (error as { name?: string }).name === 'NotFound') return false;
    throw error;
  }
}
