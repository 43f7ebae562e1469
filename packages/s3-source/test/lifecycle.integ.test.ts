import { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { type Batch, type Position, pipeline, type Row, type TributaryError } from '@tributary/core';
import { type MemorySink, memorySink } from '@tributary/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, type TestBucket, testS3Client } from '../../../test/support/services.js';
import { type S3SourceOptions, type StreamDefinition, s3Source } from '../src/index.js';
import { csv, eventLog, FakeLoadLog, loggingSink, objectExists, put } from './helpers.js';

let t: TestBucket;
beforeAll(async () => {
  t = await createTestBucket();
});

const header = ['id', 'v'];
const file = (prefix: string, day: string) => `${prefix}/changes/2026010${day}.csv`;
const def = (prefix: string, patch: Partial<StreamDefinition> = {}): StreamDefinition => ({
  id: `life/${prefix}`,
  bucket: t.bucket,
  prefix: `${prefix}/changes/`,
  keyPattern: 'YYYYMMDD',
  ...patch,
});

const exists = (key: string) => objectExists(t.client, t.bucket, key);

async function run(
  streams: StreamDefinition[],
  options: Partial<S3SourceOptions> & { sink?: MemorySink; loads?: FakeLoadLog | undefined } = {},
) {
  const { sink: given, loads, ...rest } = options;
  const source = s3Source({ client: t.client, streams, ...rest });
  const sink = given ?? (loads ? loggingSink(loads) : memorySink());
  const produced: Batch<Row>[] = [];
  const log = eventLog();
  let error: TributaryError | undefined;
  try {
    await pipeline(
      source,
      (b) => {
        produced.push(b);
        return b;
      },
      sink,
      { onEvent: log.onEvent },
    );
  } catch (e) {
    error = e as TributaryError;
  }
  return { sink, produced, error, log, sources: produced.map((b) => b.meta.source) };
}

/** A client whose commands can be observed and made to fail. */
function instrumentedClient(hooks: {
  before?: (command: string, input: Record<string, unknown>) => void;
  after?: (command: string, output: Record<string, unknown>) => void;
}): S3Client {
  const client = testS3Client();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      hooks.before?.(context.commandName ?? '', args.input as Record<string, unknown>);
      const result = await next(args);
      hooks.after?.(context.commandName ?? '', result.output as unknown as Record<string, unknown>);
      return result;
    },
    { step: 'initialize', name: 'testHooks' },
  );
  return client;
}

/** The keys a DeleteObject or DeleteObjects request names. */
function deletedKeys(input: Record<string, unknown>): string[] {
  const objects = (input['Delete'] as { Objects?: { Key?: string }[] } | undefined)?.Objects;
  return objects ? objects.map((o) => String(o.Key)) : [String(input['Key'])];
}

/** Uploads day 1 and 3, applies them, then uploads day 2 (late) and day 4. */
async function lateScenario(prefix: string, loads: FakeLoadLog | undefined) {
  await put(t.client, t.bucket, file(prefix, '1'), csv(header, [['1', 'a']]));
  await put(t.client, t.bucket, file(prefix, '3'), csv(header, [['3', 'c']]));
  const first = await run([def(prefix)], { loads });
  expect(first.error).toBeUndefined();
  await put(t.client, t.bucket, file(prefix, '2'), csv(header, [['2', 'b']]));
  await put(t.client, t.bucket, file(prefix, '4'), csv(header, [['4', 'd']]));
  return first.sink;
}

describe('late files', () => {
  for (const withLog of [true, false]) {
    const label = withLog ? 'with a load log' : 'with the checkpoint only';

    it(`error (default) stops the stream naming the late file, ${label}`, async () => {
      const prefix = `late-error-${withLog}`;
      const loads = withLog ? new FakeLoadLog() : undefined;
      const sink = await lateScenario(prefix, loads);
      const { error, sources } = await run([def(prefix)], { sink, loads });
      expect(error).toMatchObject({
        code: 'LATE_FILE',
        stream: `life/${prefix}`,
        location: { file: file(prefix, '2') },
      });
      expect(error!.message).toMatch(
        /late file .*20260102\.csv .* at or before the watermark .*20260103\.csv/,
      );
      expect(sources).toEqual([]);
      expect(await exists(file(prefix, '2'))).toBe(true);
    });

    it(`apply applies it in order without moving the watermark back, ${label}`, async () => {
      const prefix = `late-apply-${withLog}`;
      const loads = withLog ? new FakeLoadLog() : undefined;
      const sink = await lateScenario(prefix, loads);
      const { error, produced } = await run([def(prefix, { lateFiles: 'apply' })], { sink, loads });
      expect(error).toBeUndefined();
      expect(produced.map((b) => [b.meta.source, (b.meta['watermark'] as { key: string }).key])).toEqual([
        [file(prefix, '2'), file(prefix, '3')],
        [file(prefix, '4'), file(prefix, '4')],
      ]);
      expect(produced[0]!.position['watermark']).toEqual({
        key: file(prefix, '3'),
        time: '2026-01-03T00:00:00.000Z',
      });
      expect(sink.rows.map((r) => r['id'])).toEqual(['1', '3', '2', '4']);
      expect(await exists(`${prefix}/processed/20260102.csv`)).toBe(true);
    });

    it(`skip records it with one empty commit batch and moves it to late/, ${label}`, async () => {
      const prefix = `late-skip-${withLog}`;
      const loads = withLog ? new FakeLoadLog() : undefined;
      const sink = await lateScenario(prefix, loads);
      const { error, produced } = await run([def(prefix, { lateFiles: 'skip' })], { sink, loads });
      expect(error).toBeUndefined();
      expect(produced[0]).toMatchObject({
        rows: [],
        position: { key: file(prefix, '2'), done: true, late: 'skipped' },
        meta: { source: file(prefix, '2'), commit: true, lastOfUnit: true, late: 'skipped', rowsRead: 0 },
      });
      expect(produced.slice(1).map((b) => b.meta.source)).toEqual([file(prefix, '4')]);
      expect(sink.rows.map((r) => r['id'])).toEqual(['1', '3', '4']);
      expect(await exists(file(prefix, '2'))).toBe(false);
      expect(await exists(`${prefix}/late/20260102.csv`)).toBe(true);
      if (loads)
        expect(loads.records.get(`life/${prefix}\0${file(prefix, '2')}`)?.status).toBe('late_skipped');
      // Nothing left to do.
      const again = await run([def(prefix, { lateFiles: 'skip' })], { sink, loads });
      expect(again.produced).toEqual([]);
      expect(again.error).toBeUndefined();
    });
  }
});

describe('batch granularity', () => {
  it('resumes after the committed row of a partially applied file', async () => {
    const rows = Array.from({ length: 10 }, (_, i) => [String(i + 1), 'x']);
    await put(t.client, t.bucket, file('resume', '1'), csv(header, rows));
    await put(t.client, t.bucket, file('resume', '2'), csv(header, [['11', 'y']]));
    let failAt = 2;
    const sink = memorySink({
      beforeWrite: (_batch, index) => {
        if (index === failAt) throw new Error('sink went away');
      },
    });
    const stream = def('resume', { granularity: 'batch' });
    const first = await run([stream], { sink, batchRows: 3 });
    expect(first.error?.message).toMatch(/sink went away/);
    expect(first.produced.every((b) => b.meta.commit)).toBe(true);
    expect(sink.rows.map((r) => r['id'])).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(await sink.checkpoint('life/resume')).toMatchObject({
      key: file('resume', '1'),
      row: 6,
      done: false,
    });
    expect(await exists(file('resume', '1'))).toBe(true); // not archived mid-file

    failAt = -1;
    const second = await run([stream], { sink, batchRows: 3 });
    expect(second.error).toBeUndefined();
    expect(second.produced[0]!.meta.locations![0]).toMatchObject({ record: 7, line: 8 });
    expect(second.produced[0]!.meta.kind).toBe('baseline');
    expect(sink.rows.map((r) => r['id'])).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11']);
    expect(await exists('resume/processed/20260101.csv')).toBe(true);
  });
});

describe('archive', () => {
  it('copies, confirms, then deletes, keeping the relative path, and marks the load archived', async () => {
    await put(t.client, t.bucket, 'arch/changes/2026/01/20260101.csv', csv(header, [['1', 'a']]));
    const calls: string[] = [];
    const client = instrumentedClient({
      before: (command, input) => {
        if (/Copy|Head/.test(command)) calls.push(`${command} ${String(input['Key'])}`);
        if (/Delete/.test(command)) calls.push(`${command} ${deletedKeys(input).join(', ')}`);
      },
    });
    const loads = new FakeLoadLog();
    const source = s3Source({ client, streams: [def('arch', { recursive: true })] });
    await pipeline(source, loggingSink(loads));
    // CopyObject's own ETag confirms the copy: no HeadObject of it. The original goes in a
    // DeleteObjects request (batched with other files' originals when there are any).
    expect(calls).toEqual([
      'CopyObjectCommand arch/processed/2026/01/20260101.csv',
      'DeleteObjectsCommand arch/changes/2026/01/20260101.csv',
    ]);
    expect(loads.archived).toEqual(['arch/changes/2026/01/20260101.csv']);
    const copy = await t.client.send(
      new GetObjectCommand({ Bucket: t.bucket, Key: 'arch/processed/2026/01/20260101.csv' }),
    );
    expect(await copy.Body!.transformToString()).toBe(csv(header, [['1', 'a']]));
    expect(await exists('arch/changes/2026/01/20260101.csv')).toBe(false);
  });

  it('reads the copy back with HeadObject when the ETag CopyObject returns does not settle it', async () => {
    await put(t.client, t.bucket, file('arch-head', '1'), csv(header, [['1', 'a']]));
    const calls: string[] = [];
    const client = instrumentedClient({
      before: (command) => {
        if (/Copy|Head|Delete/.test(command)) calls.push(command);
      },
      after: (command, output) => {
        // A server that answers a copy without an ETag.
        if (command === 'CopyObjectCommand') delete output['CopyObjectResult'];
      },
    });
    await pipeline(s3Source({ client, streams: [def('arch-head')] }), memorySink());
    expect(calls).toEqual(['CopyObjectCommand', 'HeadObjectCommand', 'DeleteObjectsCommand']);
    expect(await exists(file('arch-head', '1'))).toBe(false);
    expect(await exists('arch-head/processed/20260101.csv')).toBe(true);
  });

  it('archives behind the next files, each only after its own commit, all done when pipeline() returns', async () => {
    const days = ['1', '2', '3', '4', '5', '6', '7'];
    for (const day of days) await put(t.client, t.bucket, file('overlap', day), csv(header, [[day, 'x']]));
    const timeline: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const client = testS3Client();
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const key = String((args.input as { Key?: unknown }).Key);
        const copy = context.commandName === 'CopyObjectCommand';
        if (copy) {
          timeline.push(`copy ${key.replace('processed', 'changes')}`);
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await new Promise((resolve) => setTimeout(resolve, 40)); // a slow archive
        }
        try {
          return await next(args);
        } finally {
          if (copy) {
            inFlight--;
            timeline.push(`copied ${key.replace('processed', 'changes')}`);
          }
        }
      },
      { step: 'initialize', name: 'slowCopies' },
    );
    const loads = new FakeLoadLog();
    const sink = loggingSink(loads);
    const write = sink.write.bind(sink);
    sink.write = async (batch) => {
      const result = await write(batch);
      if (result.committed) timeline.push(`commit ${batch.meta.source}`);
      return result;
    };
    await pipeline(s3Source({ client, streams: [def('overlap')] }), sink);
    for (const day of days) {
      const key = file('overlap', day);
      const committedAt = timeline.indexOf(`commit ${key}`);
      expect(committedAt).toBeGreaterThanOrEqual(0);
      expect(timeline.indexOf(`copy ${key}`)).toBeGreaterThan(committedAt); // never before its commit
      expect(await exists(key)).toBe(false); // every archive finished before pipeline() returned
      expect(await exists(`overlap/processed/2026010${day}.csv`)).toBe(true);
    }
    // The sink did not wait for each archive: file 2 committed while file 1 was being copied.
    expect(timeline.indexOf(`commit ${file('overlap', '2')}`)).toBeLessThan(
      timeline.indexOf(`copied ${file('overlap', '1')}`),
    );
    expect(maxInFlight).toBeGreaterThan(1);
    expect(maxInFlight).toBeLessThanOrEqual(4);
    expect(loads.archived.sort()).toEqual(days.map((day) => file('overlap', day)));
  });

  for (const withLog of [true, false]) {
    it(`a failed delete is finished on the next run without re-emitting rows (${withLog ? 'load log' : 'checkpoint only'})`, async () => {
      const prefix = `del-${withLog}`;
      await put(t.client, t.bucket, file(prefix, '1'), csv(header, [['1', 'a']]));
      await put(t.client, t.bucket, file(prefix, '2'), csv(header, [['2', 'b']]));
      let failDeletes = true;
      let refused: string[] = [];
      const client = instrumentedClient({
        // The server refuses day 1's delete and deletes the others of the same request.
        before: (command, input) => {
          if (!failDeletes || command !== 'DeleteObjectsCommand') return;
          const request = input['Delete'] as { Objects: { Key: string }[] };
          refused = request.Objects.filter((o) => o.Key.endsWith('0101.csv')).map((o) => o.Key);
          request.Objects = request.Objects.filter((o) => !refused.includes(o.Key));
        },
        after: (command, output) => {
          if (command !== 'DeleteObjectsCommand' || refused.length === 0) return;
          output['Errors'] = refused.map((Key) => ({ Key, Code: 'AccessDenied', Message: 'delete refused' }));
          refused = [];
        },
      });
      const loads = withLog ? new FakeLoadLog() : undefined;
      const sink = loads ? loggingSink(loads) : memorySink();
      const log = eventLog();
      await pipeline(s3Source({ client, streams: [def(prefix)] }), sink, {
        onEvent: log.onEvent,
      });
      expect(log.warnings().some((w) => w.includes(`archiving ${file(prefix, '1')}`))).toBe(true);
      expect(await exists(file(prefix, '1'))).toBe(true); // left in place
      expect(await exists(`${prefix}/processed/20260101.csv`)).toBe(true); // copy landed
      expect(await exists(file(prefix, '2'))).toBe(false);
      expect(sink.rows.map((r) => r['id'])).toEqual(['1', '2']);

      // Next run: day 1 is older than the watermark (day 2) and still there — it is neither
      // late nor pending: only its archive is finished.
      failDeletes = false;
      const next = await run([def(prefix)], { sink, loads });
      expect(next.error).toBeUndefined();
      expect(next.produced).toEqual([]);
      expect(await exists(file(prefix, '1'))).toBe(false);
      expect(sink.rows.map((r) => r['id'])).toEqual(['1', '2']);
      if (loads) expect(loads.archived).toContain(file(prefix, '1'));
    });
  }

  it('deletes the originals of many archived files in few DeleteObjects requests', async () => {
    const days = ['1', '2', '3', '4', '5', '6', '7', '8', '9'];
    for (const day of days) await put(t.client, t.bucket, file('batched', day), csv(header, [[day, 'x']]));
    const deletes: string[][] = [];
    const client = instrumentedClient({
      before: (command, input) => {
        if (/Delete/.test(command)) deletes.push(deletedKeys(input));
      },
    });
    await pipeline(s3Source({ client, streams: [def('batched')] }), memorySink());
    // Every original deleted once, and never more requests than files (usually one or two).
    expect(deletes.flat().sort()).toEqual(days.map((day) => file('batched', day)));
    expect(deletes.length).toBeLessThan(days.length);
    for (const day of days) {
      expect(await exists(file('batched', day))).toBe(false);
      expect(await exists(`batched/processed/2026010${day}.csv`)).toBe(true);
    }
  });

  it('a server without DeleteObjects (501) gets one DeleteObject per original', async () => {
    for (const day of ['1', '2'])
      await put(t.client, t.bucket, file('no-multi', day), csv(header, [[day, 'x']]));
    const calls: string[] = [];
    const client = instrumentedClient({
      before: (command, input) => {
        if (!/Delete/.test(command)) return;
        calls.push(command);
        if (command === 'DeleteObjectsCommand') {
          throw Object.assign(new Error('NotImplemented: multi-object delete'), {
            name: 'NotImplemented',
            $metadata: { httpStatusCode: 501 },
          });
        }
        expect(deletedKeys(input)).toHaveLength(1);
      },
    });
    const log = eventLog();
    await pipeline(s3Source({ client, streams: [def('no-multi')] }), memorySink(), { onEvent: log.onEvent });
    expect(calls.filter((c) => c === 'DeleteObjectCommand')).toHaveLength(2);
    expect(log.warnings()).toEqual([]);
    for (const day of ['1', '2']) expect(await exists(file('no-multi', day))).toBe(false);
  });

  it('archive: false leaves files in place and the checkpoint prevents re-reading', async () => {
    await put(t.client, t.bucket, file('keep', '1'), csv(header, [['1', 'a']]));
    const first = await run([def('keep')], { archive: false });
    const second = await run([def('keep')], { archive: false, sink: first.sink });
    expect(await exists(file('keep', '1'))).toBe(true);
    expect(second.produced).toEqual([]);
  });
});

describe('layouts and replay', () => {
  it('Qlik: LOAD files first in number order, then change tables by time; archived per table folder', async () => {
    const T = 'ods/EDW.SAMPLE/';
    const CT = 'ods/EDW.SAMPLE__ct/';
    await put(t.client, t.bucket, `${CT}20220304-134556444.csv.gz`, csv(header, [['1', 'ct2']]), {
      gzip: true,
    });
    await put(t.client, t.bucket, `${T}LOAD002.csv.gz`, csv(header, [['2', 'load2']]), { gzip: true });
    await put(t.client, t.bucket, `${CT}20220304-120000000.csv.gz`, csv(header, [['1', 'ct1']]), {
      gzip: true,
    });
    await put(t.client, t.bucket, `${T}LOAD001.csv.gz`, csv(header, [['1', 'load1']]), { gzip: true });
    const { sink, produced, error } = await run([
      { id: 'qlik/sample', bucket: t.bucket, prefix: T, layout: 'qlik' },
    ]);
    expect(error).toBeUndefined();
    expect(sink.rows.map((r) => r['v'])).toEqual(['load1', 'load2', 'ct1', 'ct2']);
    expect(produced.map((b) => b.meta.kind)).toEqual(['baseline', 'baseline', 'delta', 'delta']);
    expect(await exists('ods/processed/EDW.SAMPLE/LOAD001.csv.gz')).toBe(true);
    expect(await exists('ods/processed/EDW.SAMPLE__ct/20220304-120000000.csv.gz')).toBe(true);
  });

  it('replays archived files from a key onwards, in order, without archiving or moving the watermark back', async () => {
    for (const day of ['1', '2', '3'])
      await put(t.client, t.bucket, file('replay', day), csv(header, [[day, 'r']]));
    const first = await run([def('replay')]);
    const watermark = (await first.sink.checkpoint('life/replay'))?.['watermark'];
    const replay = await run([def('replay', { replayFrom: '20260102.csv' })], { sink: first.sink });
    expect(replay.error).toBeUndefined();
    expect(replay.sources).toEqual(['replay/processed/20260102.csv', 'replay/processed/20260103.csv']);
    expect(replay.produced.every((b) => b.meta.kind === 'delta')).toBe(true);
    expect(await exists('replay/processed/20260102.csv')).toBe(true);
    expect((await first.sink.checkpoint('life/replay'))?.['watermark']).toEqual(watermark);
    // The normal stream carries on with nothing to do.
    const after = await run([def('replay')], { sink: first.sink });
    expect(after.produced).toEqual([]);
    expect(after.error).toBeUndefined();
  });
});

describe('watch mode and retries', () => {
  it('polls for new files until the graceful stop signal fires', async () => {
    await put(t.client, t.bucket, file('watch', '1'), csv(header, [['1', 'a']]));
    const source = s3Source({
      client: t.client,
      archive: false,
      watch: { intervalMs: 5, jitter: 0 },
      streams: [def('watch')],
    });
    let checkpoint: Position | null = null;
    const stop = new AbortController();
    const batches = source
      .read({
        checkpoint: async () => checkpoint,
        signal: new AbortController().signal,
        stop: stop.signal,
        emit: () => {},
      })
      [Symbol.asyncIterator]();
    const one = await batches.next();
    expect(one.value?.meta.source).toBe(file('watch', '1'));
    checkpoint = one.value!.position;
    await source.committed!(one.value!); // as pipeline() does: watch mode re-plans only after it
    await put(t.client, t.bucket, file('watch', '2'), csv(header, [['2', 'b']]));
    const two = await batches.next(); // arrives on a later poll
    expect(two.value?.meta.source).toBe(file('watch', '2'));
    checkpoint = two.value!.position;
    await source.committed!(two.value!);
    stop.abort();
    expect((await batches.next()).done).toBe(true);
  });

  it('under pipeline(), the graceful stop ends a watching source that is waiting for files', async () => {
    await put(t.client, t.bucket, file('watch-pipe', '1'), csv(header, [['1', 'a']]));
    const stop = new AbortController();
    const sink = memorySink();
    const result = await pipeline(
      s3Source({
        client: t.client,
        archive: false,
        watch: { intervalMs: 60_000 },
        streams: [def('watch-pipe')],
      }),
      sink,
      {
        stopSignal: stop.signal,
        // Stop once the first file was committed: the source is then asleep until the next poll.
        onEvent: (e) => {
          if (e.type === 'committed') stop.abort();
        },
      },
    );
    expect(sink.rows).toEqual([{ id: '1', v: 'a' }]);
    expect(result.commits).toBe(1);
  });

  it('re-reads a file whose download was reset mid-way, skipping rows already handed out', async () => {
    const rows = Array.from({ length: 30_000 }, (_, i) => [String(i + 1), 'some value to make it longer']);
    await put(t.client, t.bucket, file('reset', '1'), csv(header, rows));
    let resets = 0;
    const client = instrumentedClient({
      after: (command, output) => {
        if (command !== 'GetObjectCommand' || resets > 0) return;
        resets++;
        const body = output['Body'] as Readable;
        output['Body'] = Readable.from(
          (async function* () {
            let bytes = 0;
            for await (const chunk of body) {
              yield chunk;
              bytes += (chunk as Buffer).length;
              if (bytes > 200_000) throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
            }
          })(),
        );
      },
    });
    const sink = memorySink();
    const log = eventLog();
    const produced: Batch<Row>[] = [];
    await pipeline(
      s3Source({
        client,
        batchRows: 1000,
        archive: false,
        retry: { minDelayMs: 1, maxDelayMs: 5 },
        streams: [def('reset')],
      }),
      (b) => {
        produced.push(b);
        return b;
      },
      sink,
      { onEvent: log.onEvent },
    );
    expect(resets).toBe(1);
    expect(
      log.warnings().some((w) => /reading reset\/changes\/20260101\.csv failed \(attempt 1\)/.test(w)),
    ).toBe(true);
    expect(sink.rows.map((r) => Number(r['id']))).toEqual(rows.map((_, i) => i + 1));
    const records = produced.flatMap((b) => b.meta.locations!.map((l) => l.record));
    expect(records).toEqual(rows.map((_, i) => i + 1));
  });
});
