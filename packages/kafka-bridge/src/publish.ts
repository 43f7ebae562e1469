import {
  type Batch,
  faultPoint,
  materialize,
  type Row,
  type Sink,
  TributaryError,
  type WriteResult,
} from '@tributary/core';
import {
  type CompressionCode,
  type KafkaProducer,
  type OutgoingMessage,
  type TopicSpec,
  toKafkaClient,
} from './client/index.js';
import { rawAvroEncoder } from './csv-avro.js';
import { createEncoder, type Encoder, type EncodingOptions, schemaFromColumns } from './encoding.js';
import { HEADER, type PublishOptions, resolvePublishOptions } from './options.js';

/** Stable key text from the key columns. */
export function messageKey(row: Row, key: readonly string[]): string {
  return key.map((k) => (row[k] === null || row[k] === undefined ? '' : String(row[k]))).join('|');
}

/**
 * Publish sink: every row becomes one keyed message (idempotent producer, acks=all); once every
 * message of a unit is acknowledged the position is committed through `checkpoints`, and only
 * then may the source archive the file. A crash in between re-publishes the unit
 * (at-least-once); messages are full row images with provenance, so a subscriber's upsert
 * absorbs the repeats.
 */
export function kafkaPublishSink(
  input: PublishOptions,
): Sink<Row> & { readonly published: number; close(): Promise<void> } {
  const options = resolvePublishOptions(input);
  const topicFor = typeof options.topic === 'function' ? options.topic : () => options.topic as string;
  const encoding: EncodingOptions | undefined =
    options.encoding ??
    (options.columns ? { kind: 'avro', type: schemaFromColumns('row', options.columns) } : undefined);
  if (!encoding)
    throw new TributaryError(
      'INVALID_OPTIONS',
      'kafkaPublishSink(): give `columns` (for the default Avro schema) or `encoding`',
    );
  const chunk = options.maxMessagesPerRequest;
  // Raw CSV batches go straight into Avro values when the schema is the default kind.
  const rawAvro = encoding.kind === 'json' ? undefined : rawAvroEncoder(encoding.type);
  const client = toKafkaClient(options.kafka);
  const compression = options.compression as CompressionCode | undefined;
  let producer: KafkaProducer | undefined;
  let encoder: Encoder | undefined;
  const readyTopics = new Set<string>();
  let published = 0;

  async function connect(): Promise<KafkaProducer> {
    if (producer) return producer;
    encoder = await createEncoder(encoding!);
    // Idempotent, one request in flight, acks=all (the seam's producer contract).
    producer = client.producer();
    return producer;
  }

  async function ensureTopic(topic: string): Promise<void> {
    if (readyTopics.has(topic)) return;
    const createTopics = options.createTopics;
    if (createTopics !== false) {
      const admin = await client.admin();
      try {
        const existing = new Set(await admin.listTopics());
        const create: TopicSpec[] = [];
        const { partitions, replicationFactor } = createTopics;
        if (!existing.has(topic)) create.push({ topic, partitions, replicationFactor });
        if (encoder?.schema && !existing.has(`${topic}.schemas`))
          create.push({ topic: `${topic}.schemas`, partitions: 1, replicationFactor, compacted: true });
        if (create.length) await admin.createTopics(create);
      } finally {
        await admin.close().catch(() => undefined);
      }
    }
    // Publish the writer schema where subscribers find it, keyed by fingerprint (compacted).
    if (encoder?.schema && encoder.schemaId && encoding?.kind === 'avro') {
      await producer!.send(`${topic}.schemas`, [{ key: encoder.schemaId, value: encoder.schema }]);
    }
    readyTopics.add(topic);
  }

  /** The headers every message of the batch carries (the row number is added per message). */
  function commonHeaders(batch: Batch<Row>): Record<string, string> {
    const headers: Record<string, string> = {
      [HEADER.stream]: batch.stream,
      [HEADER.source]: String(batch.meta.source ?? ''),
      [HEADER.row]: '',
      [HEADER.kind]: String(batch.meta.kind ?? ''),
    };
    if (encoder?.schemaId) headers[HEADER.schema] = encoder.schemaId;
    return headers;
  }

  return {
    name: 'kafka-publish',
    acceptsRaw: true,
    get published() {
      return published;
    },
    checkpoint: (stream) => options.checkpoints.checkpoint(stream),
    get loadLog() {
      return options.checkpoints.loadLog;
    },
    async write(input: Batch<Row>): Promise<WriteResult> {
      let batch = input;
      // A raw batch's outcome: the sink ran its steps, so it reports rows kept and dropped.
      let rawResult: { rows: number; filtered: Record<string, number> } | undefined;
      let encodedRaw = false;
      if (batch.raw) {
        const p = await connect();
        const raw = batch.raw;
        const encoded =
          rawAvro && encoder?.prefix && !batch.meta.onError
            ? rawAvro.encode(raw, options.key, encoder.prefix)
            : undefined;
        if (encoded) {
          const topic = topicFor(batch.stream);
          await ensureTopic(topic);
          const headers = commonHeaders(batch);
          for (let start = 0; start < encoded.values.length; start += chunk) {
            const messages: OutgoingMessage[] = [];
            for (let i = start; i < Math.min(start + chunk, encoded.values.length); i++) {
              messages.push({
                key: encoded.keys[i]!,
                value: encoded.values[i]!,
                headers: { ...headers, [HEADER.row]: String(encoded.records[i]) },
              });
            }
            await p.send(topic, messages, compression);
            published += messages.length;
          }
          rawResult = { rows: encoded.values.length, filtered: encoded.filtered };
          encodedRaw = true;
        } else {
          // Not the default schema, steps beyond skip-rows, a reject policy or irregular
          // records: the row path (which names the file and line of bad input). The sink took
          // the batch raw, so it reports the rows and what the steps dropped itself.
          batch = materialize(batch);
          const filtered: Record<string, number> = {};
          for (const [name, count] of Object.entries(batch.meta.filtered))
            if (count !== (input.meta.filtered[name] ?? 0))
              filtered[name] = count - (input.meta.filtered[name] ?? 0);
          rawResult = { rows: batch.rows.length, filtered };
        }
      }
      if (!encodedRaw && batch.rows.length) {
        const p = await connect();
        const topic = topicFor(batch.stream);
        await ensureTopic(topic);
        const headers = commonHeaders(batch);
        const firstRow = Number(batch.position['row'] ?? batch.rows.length) - batch.rows.length;
        for (let start = 0; start < batch.rows.length; start += chunk) {
          const messages = batch.rows.slice(start, start + chunk).map((row, i) => {
            const message: OutgoingMessage = {
              key: messageKey(row, options.key),
              value: encoder!.encode(row),
              headers: {
                ...headers,
                [HEADER.row]: String(batch.meta.locations?.[start + i]?.record ?? firstRow + start + i + 1),
              },
            };
            return message;
          });
          // acks=all on an idempotent producer: resolved only when the broker has the messages.
          await p.send(topic, messages, compression);
          published += messages.length;
        }
      }
      faultPoint('kafka:publisher-after-send'); // acknowledged, checkpoint not yet moved (issue 7)
      // Every message of this batch is acknowledged; the checkpoint store commits the position
      // (and load row) when the unit ends, never before (issue 6: "moves only after every
      // message of the file is acknowledged").
      const { raw: _unused, ...rest } = batch;
      const written = await options.checkpoints.write({ ...rest, rows: [] });
      return rawResult ? { ...written, ...rawResult } : written;
    },
    async abort(error, stream) {
      await options.checkpoints.abort?.(error, stream);
    },
    async close() {
      await producer?.close();
      producer = undefined;
      await options.checkpoints.close?.();
    },
  };
}
