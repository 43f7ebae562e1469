process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { publishCli } from './support/cli.js';
import { world } from './support/reliability.js';

// Debian's python3-confluent-kafka (librdkafka) and python3-avro; .ci/run installs them when it can.
const PYTHON = '/usr/bin/python3';
const missing = spawnSync(PYTHON, ['-c', 'import confluent_kafka, avro'], { encoding: 'utf8' });
const skip = missing.status !== 0;
const SUBSCRIBER = join(import.meta.dirname, 'support', 'avro_subscriber.py');

interface WireMessage {
  partition: number;
  offset: number;
  key: string;
  headers: Record<string, string>;
  row: Record<string, string | null>;
}

function pythonSubscribe(topic: string): Promise<WireMessage[]> {
  const child = spawn(PYTHON, [SUBSCRIBER, inject('kafkaBrokers').join(','), topic], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) reject(new Error(`avro_subscriber.py exited ${code}: ${stderr.slice(-2000)}`));
      else
        resolve(
          stdout
            .trim()
            .split('\n')
            .filter(Boolean)
            .map((line) => JSON.parse(line) as WireMessage),
        );
    });
  });
}

describe.skipIf(skip)(
  `a subscriber in Python reads a published topic from the wire alone${skip ? ` (skipped: ${PYTHON} lacks confluent_kafka or avro)` : ''}`,
  { timeout: 240_000 },
  () => {
    // Published by the binary on each client it offers (KAFKA_CLIENT, issue 18).
    it.each(['kafkajs', 'platformatic'])(
      'published with KAFKA_CLIENT=%s: librdkafka + python3-avro decode every row by fingerprint from <topic>.schemas, headers name the file and row',
      async (client) => {
        const w = await world({ extraEnv: { KAFKA_CLIENT: client } });
        const topic = `tickets.${randomBytes(4).toString('hex')}`;
        const published = await publishCli(w.env, topic, ['--partitions', '1']);
        expect(published.code, published.stderr).toBe(0);

        const messages = await pythonSubscribe(topic);
        // Every exported row but the export's sentinel, in file and row order (one partition); the
        // row header is the record's number in its file.
        const files = w.files.filter((f) => f.dataset === 'inc');
        const exported = files.flatMap((file) =>
          [...file.rows()]
            .map((row, i) => ({ file: file.key, record: i + 1, row }))
            .filter(({ row }) => !String(row['ticket_id']).startsWith('EXPORT STOPPED')),
        );
        expect(messages).toHaveLength(exported.length);
        messages.forEach((message, i) => {
          const expected = exported[i]!;
          expect(message.key).toBe(String(expected.row['ticket_id']));
          expect(message.row['ticket_id']).toBe(String(expected.row['ticket_id']));
          expect(message.headers['tributary-source']).toBe(expected.file);
          expect(message.headers['tributary-kind']).toMatch(/^(baseline|delta)$/);
          expect(message.headers['tributary-row'], `message ${i}`).toBe(String(expected.record));
        });
        // Field values as the export wrote them (empty fields are null on the wire).
        const first = exported[0]!.row;
        for (const [column, value] of Object.entries(first))
          expect(messages[0]!.row[column], column).toBe(
            value === '' || value === null || value === undefined ? null : String(value),
          );
      },
    );
  },
);
