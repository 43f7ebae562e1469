import { S3Client } from '@aws-sdk/client-s3';
import { semaphore } from '@tributary/core';
import { describe, expect, it } from 'vitest';
import { s3Source } from '../src/index.js';

describe('s3Source watch turns (ReadContext.slot)', () => {
  // Regression: a watcher waiting for its turn ignored SIGTERM until another stream let go.
  it('a stop while waiting for a turn ends read() without listing anything', async () => {
    const client = new S3Client({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9' });
    let sent = 0;
    client.middlewareStack.add(
      (next) => (args) => {
        sent++;
        return next(args);
      },
      { step: 'initialize' },
    );
    const source = s3Source({
      client,
      streams: [{ id: 's/a', bucket: 'b', prefix: 'a/', keyPattern: 'YYYYMMDD' }],
      watch: { intervalMs: 60_000 },
    });
    const acquire = semaphore(1);
    const held = await acquire(); // another stream's turn, never given back in this test
    const stop = new AbortController();
    const batches = source.read({
      checkpoint: async () => null,
      signal: new AbortController().signal,
      stop: stop.signal,
      emit: () => {},
      slot: acquire,
    });
    const done = (async () => {
      for await (const _ of batches) throw new Error('no batch expected');
    })();
    stop.abort();
    await done;
    expect(sent).toBe(0);
    held();
    // The turn taken after the stop was handed back, so the next one is free.
    const next = await acquire();
    next();
    client.destroy();
  });
});
