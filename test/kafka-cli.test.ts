process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { collect, publishCli, runCli, startCli } from './support/cli.js';
import { world as baseWorld, SMALL } from './support/reliability.js';

const KAFKA_CLIENTS = ['kafkajs', 'platformatic'] as const;

import { diffAgainstOracle, listAll } from './support/tickets.js';

const brokers = () => inject('kafkaBrokers').join(',');
const topicName = () => `tickets.${randomBytes(4).toString('hex')}`;

type World = Awaited<ReturnType<typeof baseWorld>>;

/** `publish --apply` of one dataset to a topic, through the real binary. */
const publish = (w: World, topic: string, extra: string[] = [], dataset = 'inc') =>
  publishCli(w.env, topic, extra, dataset);

/** The rows `archive` wrote for partition 0 of a topic under `folder`, read back by the S3 source. */
async function readArchived(w: World, folder: string, topic: string): Promise<Record<string, unknown>[]> {
  const { s3Source } = await import('@tributary/s3-source');
  const { pipeline } = await import('@tributary/core');
  const { memorySink } = await import('@tributary/core/testing');
  const sink = memorySink();
  const source = s3Source({
    client: w.client,
    archive: false,
    streams: [
      {
        id: folder.replace(/\/$/, ''),
        bucket: w.bucket,
        prefix: `${folder}${topic}/partition=0/`,
        keyPattern: (key) => new Date(Number(key.split('/').pop()!.split('-')[0])),
        format: 'jsonl',
      },
    ],
  });
  await pipeline(source, sink);
  return sink.rows;
}

/** `subscribe --exit-when-idle` of a topic into tickets.inc, through the real binary. */
function subscribe(w: World, topic: string, group: string, extraEnv: Record<string, string> = {}) {
  return collect(
    startCli(['subscribe', '--brokers', brokers(), '--topic', topic, '--group', group, '--exit-when-idle'], {
      ...w.env,
      ...extraEnv,
    }),
  );
}

/** Waits (bounded polling of the broker) until a consumer group has a member with an assignment. */
async function groupHasMember(groupId: string): Promise<void> {
  const { Kafka } = await import('kafkajs');
  const admin = new Kafka({ brokers: inject('kafkaBrokers'), logLevel: 0 }).admin();
  await admin.connect();
  try {
    for (let i = 0; i < 600; i++) {
      const { groups } = await admin.describeGroups([groupId]);
      if (groups[0]?.state === 'Stable' && groups[0].members.length > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`group ${groupId} never became stable`);
  } finally {
    await admin.disconnect();
  }
}

// Each test runs several processes against a broker: on a loaded 2-core machine one can pass the
// default 60 s without anything being wrong (CI, 2026-12-02), so the bound is wider here.
describe.each(KAFKA_CLIENTS)(
  'tickets-pipeline over Kafka (real binary, KAFKA_CLIENT=%s, test broker)',
  (client) => {
    // Every case on both clients (issue 18): the binary picks its client from KAFKA_CLIENT.
    const world = (options: Parameters<typeof baseWorld>[0] = {}) =>
      baseWorld({ ...options, extraEnv: { ...options.extraEnv, KAFKA_CLIENT: client } });
    describe.sequential('cases', { timeout: 240_000 }, () => {
      it('S3 → publish → subscribe → PostgreSQL gives exactly the table run --apply gives', async () => {
        const w = await world();
        const topic = topicName();
        const dry = await runCli(
          ['publish', '--dataset', 'inc', '--brokers', brokers(), '--topic', topic, '--json'],
          w.env,
        );
        expect(dry.code, dry.stderr).toBe(0);
        expect((dry.json as { dryRun: boolean }).dryRun).toBe(true);
        expect(await listAll(w.client, w.bucket, 'automations/inc/processed/')).toEqual([]);

        const published = await runCli(
          ['publish', '--dataset', 'inc', '--brokers', brokers(), '--topic', topic, '--apply', '--json'],
          w.env,
        );
        expect(published.code, published.stderr).toBe(0);
        // Archived only after every message was acknowledged and the checkpoint committed.
        expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toEqual([]);
        expect(await listAll(w.client, w.bucket, 'automations/inc/processed/')).toHaveLength(4);

        const subscribed = await runCli(
          [
            'subscribe',
            '--brokers',
            brokers(),
            '--topic',
            topic,
            '--group',
            'loader',
            '--dataset',
            'inc',
            '--exit-when-idle',
            '--json',
          ],
          w.env,
        );
        expect(subscribed.code, subscribed.stderr).toBe(0);
        expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
        // No Node warnings from the default client (kafkajs 2.2.4 prints TimeoutNegativeWarning
        // on Node 24, kafkajs#1751; issue 18).
        if (client === 'platformatic')
          for (const run of [published, subscribed])
            expect(run.stderr).not.toMatch(/\(node:\d+\) \w*Warning/);

        // A second subscribe of the same group finds nothing new and changes nothing.
        const again = await runCli(
          [
            'subscribe',
            '--brokers',
            brokers(),
            '--topic',
            topic,
            '--group',
            'loader',
            '--exit-when-idle',
            '--json',
          ],
          w.env,
        );
        expect(again.code).toBe(0);
        expect((again.json as { rowsApplied: number }).rowsApplied).toBe(0);
      });

      it('re-publishing after a crash between send and checkpoint leaves the table exact', async () => {
        const w = await world();
        const topic = topicName();
        const crashed = await collect(
          startCli(['publish', '--dataset', 'inc', '--brokers', brokers(), '--topic', topic, '--apply'], {
            ...w.env,
            TRIBUTARY_FAULT: 'kafka:publisher-after-send',
          }),
        );
        expect(crashed.signal).toBe('SIGKILL');
        // The file was sent but its checkpoint never moved: it is still pending and gets re-sent.
        expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toHaveLength(4);
        const published = await publish(w, topic);
        expect(published.code, published.stderr).toBe(0);
        const subscribed = await subscribe(w, topic, 'g');
        expect(subscribed.code, subscribed.stderr).toBe(0);
        expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
        // No Node warnings from the default client (kafkajs 2.2.4 prints TimeoutNegativeWarning
        // on Node 24, kafkajs#1751; issue 18).
        if (client === 'platformatic')
          for (const run of [published, subscribed])
            expect(run.stderr).not.toMatch(/\(node:\d+\) \w*Warning/);
      });

      it('kill -9 of a subscriber after its Postgres commit, then a restart: exact table, no gap', async () => {
        const w = await world();
        const topic = topicName();
        expect((await publish(w, topic)).code).toBe(0);
        const killed = await subscribe(w, topic, 'g', { TRIBUTARY_FAULT: 'kafka:subscriber-after-commit' });
        expect(killed.signal).toBe('SIGKILL');
        const partial = await w.db.pool.query(
          `SELECT count(*)::int AS n FROM tributary.checkpoints WHERE stream LIKE 'kafka/g/%'`,
        );
        expect(partial.rows[0].n).toBeGreaterThan(0); // it did commit something before dying
        const resumed = await subscribe(w, topic, 'g');
        expect(resumed.code, resumed.stderr).toBe(0);
        expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
      });

      it('history mode: kill -9 of a subscriber mid-stream, then a restart: exact table, no duplicate history rows', async () => {
        const w = await world();
        const topic = topicName();
        expect((await publish(w, topic)).code).toBe(0);
        const script = join(import.meta.dirname, 'support', 'history-subscriber.ts');
        const env = { ...w.env, KAFKA_BROKERS: brokers(), TOPIC: topic, GROUP: 'hist', TABLE: 'inc' };
        const start = (extra: Record<string, string> = {}) =>
          collect(
            spawn(process.execPath, ['--conditions=@tributary/source', '--import', 'tsx', script], {
              env: { ...env, ...extra },
              stdio: ['ignore', 'pipe', 'pipe'],
            }),
          );
        const crashed = await start({ TRIBUTARY_FAULT: 'kafka:subscriber-after-commit' });
        expect(crashed.signal).toBe('SIGKILL');
        const finished = await start();
        expect(finished.code, finished.stderr).toBe(0);
        expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
        // A re-applied message is an unchanged row: it must not add a history version.
        const duplicates = await w.db.pool.query(
          `SELECT ticket_id, updated_at, count(*) FROM tickets.inc_history
        GROUP BY ticket_id, updated_at HAVING count(*) > 1`,
        );
        expect(duplicates.rows).toEqual([]);
        const equalToCurrent = await w.db.pool.query(
          `SELECT h.ticket_id FROM tickets.inc_history h JOIN tickets.inc t USING (ticket_id)
        WHERE h.updated_at = t.updated_at AND h.raw_status IS NOT DISTINCT FROM t.raw_status`,
        );
        expect(equalToCurrent.rows).toEqual([]);
        const history = await w.db.pool.query('SELECT count(*)::int AS n FROM tickets.inc_history');
        expect(history.rows[0].n).toBeGreaterThan(0); // deltas replaced baseline versions
      });

      it('two subscribers in one group over 3 partitions, one killed mid-way: exact table', async () => {
        const w = await world();
        const topic = topicName();
        expect(
          (
            await runCli(
              [
                'publish',
                '--dataset',
                'inc',
                '--brokers',
                brokers(),
                '--topic',
                topic,
                '--partitions',
                '3',
                '--apply',
              ],
              w.env,
            )
          ).code,
        ).toBe(0);
        const args = [
          'subscribe',
          '--brokers',
          brokers(),
          '--topic',
          topic,
          '--group',
          'pair',
          '--exit-when-idle',
        ];
        // The victim starts first, so it is assigned partitions; it dies (SIGKILL) right after its
        // first Postgres commit, before committing the Kafka offset. The survivor must take over
        // its partitions after the rebalance and finish from the offsets stored in Postgres.
        const victim = collect(
          startCli(args, { ...w.env, TRIBUTARY_FAULT: 'kafka:subscriber-after-commit' }),
        );
        await groupHasMember('pair');
        const survivor = collect(startCli(args, w.env));
        expect((await victim).signal).toBe('SIGKILL');
        const result = await survivor;
        expect(result.code, result.stderr).toBe(0);
        expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
      });

      it("a published topic carries the export's rows, alarms included, without the export's sentinel", async () => {
        const w = await world();
        const topic = topicName();
        const published = await publish(w, topic, ['--partitions', '1']);
        expect(published.code, published.stderr).toBe(0);
        const archived = await runCli(
          ['archive', '--brokers', brokers(), '--topic', topic, '--to', 'kafka/inc/', '--exit-when-idle'],
          w.env,
        );
        expect(archived.code, archived.stderr).toBe(0);

        const rows = await readArchived(w, 'kafka/inc/', topic);
        const exported = w.files.filter((f) => f.dataset === 'inc').flatMap((f) => [...f.rows()]);
        const isSentinel = (row: Record<string, unknown>) =>
          String(row['ticket_id']).startsWith('EXPORT STOPPED');
        expect(exported.filter(isSentinel)).toHaveLength(1);
        expect(rows.filter(isSentinel)).toEqual([]);
        expect(rows).toHaveLength(exported.length - 1);
        // Consumer rules are the subscriber's: alarms and the provenance fields are on the topic.
        expect(
          rows.some((row) =>
            ['true', 't', '1', 'yes'].includes(String(row['is_alarm']).trim().toLowerCase()),
          ),
        ).toBe(true);
        expect(rows[0]).toHaveProperty('source_s3_key');
      });

      it('archive rolls the topic into S3 files by count; a re-run overwrites; the S3 source reads them back', async () => {
        const w = await world();
        const topic = topicName();
        expect((await publish(w, topic, ['--partitions', '1'], 'crq')).code).toBe(0);
        const archive = (group: string) =>
          runCli(
            [
              'archive',
              '--brokers',
              brokers(),
              '--topic',
              topic,
              '--to',
              'kafka/crq/',
              '--max-records',
              '1000',
              '--group',
              group,
              '--exit-when-idle',
              '--json',
            ],
            w.env,
          );
        const first = await archive('a1');
        expect(first.code, first.stderr).toBe(0);
        const objects = (first.json as { objects: string[] }).objects;
        // Every row of the crq files but the baseline's sentinel (an export artifact, not published).
        const total = 6020 * SMALL + 4 + 17 + 45 + 9 - 1;
        expect(objects).toHaveLength(Math.ceil(Math.round(total) / 1000));
        const second = await archive('a2');
        expect((second.json as { objects: string[] }).objects).toEqual(objects);
        expect(await listAll(w.client, w.bucket, 'kafka/crq/')).toEqual([...objects].sort());

        // Readable by the S3 source as JSON lines.
        const rows = await readArchived(w, 'kafka/crq/', topic);
        expect(rows).toHaveLength(Math.round(total));
        expect(rows[0]).toHaveProperty('ticket_id');
      });
    });
  },
);
