/**
 * CPU profile of one Kafka leg of the benchmark (publish or subscribe), the broker in its own
 * process so its CPU is not in the profile:
 *
 *   node --conditions=@tributary/source --import tsx --cpu-prof --cpu-prof-dir /tmp/prof \
 *     bench/profile-kafka.ts --leg publish|subscribe [--runs 3] [--client kafkajs|platformatic]
 *
 * Uses the same services as the benchmark (DATABASE_URL / S3_ENDPOINT or embedded ones).
 */
import { parseArgs } from 'node:util';
import { platformaticClient } from '@tributary/kafka-bridge';
import { fastKafkaConfig, fastPlatformaticOptions } from '@tributary/kafka-bridge/testing';
import { Kafka } from 'kafkajs';
import pg from 'pg';
import { benchEnvironment } from './lib/apply.js';
import { stageBaseline } from './lib/data.js';
import { startKafka, startServices } from './lib/services.js';
import { publishLeg, resetPublish, resetSubscribe, subscribeLeg } from './sections/kafka.js';

const { values } = parseArgs({
  options: {
    leg: { type: 'string', default: 'publish' },
    rows: { type: 'string', default: '34849' },
    runs: { type: 'string', default: '3' },
    client: { type: 'string', default: 'kafkajs' },
  },
});
if (values.client !== 'kafkajs' && values.client !== 'platformatic')
  throw new Error(`--client must be kafkajs or platformatic (got ${values.client})`);
const rows = Number(values.rows);
const log = (line: string) => process.stderr.write(`${line}\n`);
const services = await startServices(log);
const broker = await startKafka();
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const kafka =
  values.client === 'platformatic'
    ? platformaticClient(fastPlatformaticOptions(broker.brokers, 'tributary-profile'))
    : new Kafka(fastKafkaConfig(broker.brokers, 'tributary-profile'));
const pool = new pg.Pool({ connectionString: services.databaseUrl, max: 4 });
try {
  const { prefix } = await stageBaseline(services.s3Client, rows);
  const client = services.s3Client;
  const env = benchEnvironment(services.s3, prefix);
  const topic = `profile.inc.${Date.now()}`;
  if (values.leg === 'subscribe') await publishLeg({ kafka, pool, client, env, topic, rows });
  for (let i = 0; i < Number(values.runs); i++) {
    const started = performance.now();
    if (values.leg === 'subscribe') {
      await resetSubscribe(pool);
      await subscribeLeg({ kafka, pool, topic, groupId: `profile-${i}`, rows });
    } else {
      await resetPublish(pool);
      await publishLeg({ kafka, pool, client, env, topic: `${topic}.${i}`, rows });
    }
    log(`${values.leg} run ${i + 1}: ${Math.round(performance.now() - started)} ms`);
  }
} finally {
  await pool.end();
  await broker.stop();
  await services.stop();
}
