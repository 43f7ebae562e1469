import { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, type TestBucket } from '../../../test/support/services.js';
import { parseKeyTime, s3FileTarget } from '../src/index.js';

/** s3FileTarget against s3rver: the key is complete or absent, and a retry overwrites it. */

let t: TestBucket;
beforeAll(async () => {
  t = await createTestBucket();
});

const MiB = 1024 * 1024;

/** `total` bytes of CSV-ish text in 64 KiB chunks; fails after `failAfter` bytes when given. */
function body(total: number, failAfter?: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (failAfter !== undefined && sent >= failAfter) {
        this.destroy(new Error('source query failed mid-COPY'));
        return;
      }
      if (sent >= total) {
        this.push(null);
        return;
      }
      const size = Math.min(64 * 1024, total - sent);
      sent += size;
      this.push(Buffer.alloc(size, 'a,b\n'));
    },
  });
}

async function keys(prefix: string): Promise<string[]> {
  const page = await t.client.send(new ListObjectsV2Command({ Bucket: t.bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key!);
}

describe('s3FileTarget', () => {
  const target = (prefix: string) =>
    s3FileTarget({
      client: t.client,
      bucket: t.bucket,
      prefix,
      partSize: 5 * MiB,
      timeZone: 'Africa/Nairobi',
    });

  it('names a unit by its time in the pattern and reads it back as the truncated instant', () => {
    const unit = target('x/').unitFor(new Date('2026-04-24T11:00:42.500Z'));
    expect(unit).toEqual({ key: 'x/20260424_1400_EAT.csv', time: new Date('2026-04-24T11:00:00.000Z') });
    expect(parseKeyTime(unit.key, 'YYYYMMDD_HHMM_<TZ>')?.time).toEqual(unit.time);
  });

  it('a multipart upload (12 MiB in 5 MiB parts) is complete; a retry overwrites the same key', async () => {
    const files = target('multi/');
    const { key } = files.unitFor(new Date());
    const first = await files.write(key, body(12 * MiB));
    expect(first.bytes).toBe(12 * MiB);
    const head = await t.client.send(new HeadObjectCommand({ Bucket: t.bucket, Key: key }));
    expect(head.ContentLength).toBe(12 * MiB);
    await files.write(key, body(1000));
    expect(await keys('multi/')).toEqual([key]);
    const object = await t.client.send(new GetObjectCommand({ Bucket: t.bucket, Key: key }));
    expect((await object.Body!.transformToByteArray()).length).toBe(1000);
  });

  it('a body that fails mid-way (single part or multipart) leaves the key absent', async () => {
    for (const [prefix, total, failAfter] of [
      ['fail-small/', MiB, 512 * 1024],
      ['fail-multi/', 20 * MiB, 11 * MiB],
    ] as const) {
      const files = target(prefix);
      const { key } = files.unitFor(new Date());
      await expect(files.write(key, body(total, failAfter))).rejects.toThrow(/mid-COPY/);
      expect(await keys(prefix)).toEqual([]);
    }
  });

  it('refuses bad options before any I/O', () => {
    expect(() => s3FileTarget({ client: t.client, bucket: t.bucket, prefix: '/abs/' })).toThrow(/prefix/);
    expect(() =>
      s3FileTarget({ client: t.client, bucket: t.bucket, prefix: 'p/', timeZone: 'Mars/Base' }),
    ).toThrow(/timeZone/);
    expect(() => s3FileTarget({ client: t.client, bucket: t.bucket, prefix: 'p/', partSize: 1024 })).toThrow(
      /partSize/,
    );
  });
});
