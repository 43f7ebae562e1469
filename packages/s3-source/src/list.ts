import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { dataSuffix } from './keys.js';

/** One object as listed. ETags are kept without their surrounding quotes. */
export interface ListedObject {
  key: string;
  etag: string;
  size: number;
  lastModified: Date | undefined;
}

export interface ListResult {
  /** Data files (known suffix, not a folder placeholder), in listing order. */
  objects: ListedObject[];
  /** Keys and sub-folders that are not data files of this prefix (placeholders, legacy folders…). */
  ignored: number;
}

export interface ListKeysOptions {
  /** Include keys in sub-folders. Default false: sub-folders (legacy `full/`, `latest.csv/`) are ignored. */
  recursive?: boolean;
  /** Folders never to include even when recursive (the archive and late folders). */
  exclude?: readonly string[];
  signal?: AbortSignal;
  /** Count `.json[.gz]` keys as data files (JSON streams). */
  json?: boolean;
  /** Wraps each page request (retries). */
  send?: <T>(request: () => Promise<T>) => Promise<T>;
}

/** Strips the quotes S3 puts around ETags. */
export function normalizeEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/^"|"$/g, '');
}

/**
 * Every data file under `prefix`, following continuation tokens to the end (S3 returns at most
 * 1,000 keys per page; stopping at the first page silently drops files).
 */
export async function listKeys(
  client: S3Client,
  bucket: string,
  prefix: string,
  options: ListKeysOptions = {},
): Promise<ListResult> {
  const objects: ListedObject[] = [];
  let ignored = 0;
  let token: string | undefined;
  const send = options.send ?? ((request) => request());
  do {
    const page = await send(() =>
      client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: prefix,
          ContinuationToken: token,
          ...(options.recursive ? {} : { Delimiter: '/' }),
        }),
        { abortSignal: options.signal },
      ),
    );
    ignored += page.CommonPrefixes?.length ?? 0;
    for (const entry of page.Contents ?? []) {
      const key = entry.Key;
      if (!key) continue;
      // Zero-byte "folder" placeholders end in '/'; only known data suffixes count.
      if (
        key.endsWith('/') ||
        !dataSuffix(key, options.json) ||
        options.exclude?.some((folder) => folder !== '' && key.startsWith(folder))
      ) {
        ignored++;
        continue;
      }
      objects.push({
        key,
        etag: normalizeEtag(entry.ETag),
        size: entry.Size ?? 0,
        lastModified: entry.LastModified,
      });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { objects, ignored };
}
