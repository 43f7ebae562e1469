import { type Readable, Transform, type TransformCallback } from 'node:stream';

/**
 * Byte-level stream stages of a file read: byte counting, UTF-8 validation, and draining an
 * object-mode stream in whole buffers.
 */

/** Counts bytes flowing through (stored bytes before gunzip, decoded bytes after). */
export class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/** Largest CSV record accepted (characters); a 50 MB field still fits. */
export const MAX_RECORD_CHARS = 64 * 1024 * 1024;

/**
 * Rejects bytes that are not UTF-8 instead of letting the decoder turn them into U+FFFD and
 * storing the mangled text (invariant 6: fail loud). The native streaming decoder checks every
 * chunk; only on failure is the offending offset located, to name the line.
 */
export class Utf8Validator extends Transform {
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  private newlines = 0;
  private offset = 0;

  constructor(private readonly onInvalid: (line: number, byteOffset: number) => Error) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.decoder.decode(chunk, { stream: true });
    } catch {
      const bad = firstInvalidUtf8(chunk);
      const before = chunk.subarray(0, bad);
      let lines = 0;
      for (let i = before.indexOf(0x0a); i >= 0; i = before.indexOf(0x0a, i + 1)) lines++;
      callback(this.onInvalid(this.newlines + lines + 1, this.offset + bad));
      return;
    }
    for (let i = chunk.indexOf(0x0a); i >= 0; i = chunk.indexOf(0x0a, i + 1)) this.newlines++;
    this.offset += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.decoder.decode();
      callback();
    } catch {
      callback(this.onInvalid(this.newlines + 1, this.offset));
    }
  }
}

/** Offset of the first byte that starts an invalid UTF-8 sequence (chunk length if none). */
export function firstInvalidUtf8(bytes: Buffer): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    const need =
      b < 0x80
        ? 0
        : b >= 0xc2 && b <= 0xdf
          ? 1
          : b >= 0xe0 && b <= 0xef
            ? 2
            : b >= 0xf0 && b <= 0xf4
              ? 3
              : -1;
    if (need < 0) return i;
    if (i + need >= bytes.length) return i; // cut at the chunk's end: reported where it starts
    for (let k = 1; k <= need; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i;
    i += need + 1;
  }
  return bytes.length;
}

/**
 * Drains an object-mode stream in whole buffers: Node's async iterator costs a promise per
 * object, this costs one per buffer.
 */
export async function* drain<T>(stream: Readable): AsyncGenerator<T[]> {
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const onReadable = () => wake?.();
  const onEnd = () => {
    ended = true;
    wake?.();
  };
  const onError = (error: unknown) => {
    failure ??= error;
    wake?.();
  };
  const onClose = () => {
    if (!ended) failure ??= new Error('stream closed before its end');
    wake?.();
  };
  stream.on('readable', onReadable);
  stream.on('end', onEnd);
  stream.on('error', onError);
  stream.on('close', onClose);
  try {
    while (true) {
      const items: T[] = [];
      let item: T | null = stream.read();
      while (item !== null) {
        items.push(item);
        item = stream.read();
      }
      if (items.length) {
        yield items;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  } finally {
    stream.off('readable', onReadable);
    stream.off('end', onEnd);
    stream.off('error', onError);
    stream.off('close', onClose);
    if (!ended) stream.destroy();
  }
}
