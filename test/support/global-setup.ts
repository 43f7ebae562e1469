import { request } from 'node:http';
import { startTestBroker } from '@tributary/kafka-bridge/testing';
import { localPostgres } from '@tributary/pg-sink/testing';
import { localS3 } from '@tributary/s3-source/testing';
import type { TestProject } from 'vitest/node';
import { ensureBuilt } from './build.js';

/**
 * Real services for every suite, chosen in the order of ARCHITECTURE.md:
 * PostgreSQL from DATABASE_URL else embedded; S3 from S3_ENDPOINT else s3rver; Kafka from
 * KAFKA_BROKERS, else testcontainers when a Docker engine answers, else our test broker.
 * Whatever is started here is stopped in teardown, also when tests fail.
 */
declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgSource: 'env' | 'embedded';
    kafkaBrokers: string[];
    kafkaSource: 'env' | 'testcontainers' | 'test-broker';
    s3: {
      endpoint: string;
      region: string;
      accessKeyId: string;
      secretAccessKey: string;
      source: 'env' | 'embedded';
    };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<void>> = [];
  ensureBuilt();
  try {
    const postgres = await localPostgres();
    stops.push(() => postgres.stop());
    project.provide('pgAdminUrl', postgres.adminUrl);
    project.provide('pgSource', postgres.source);
    const { stop: stopS3, ...s3 } = await localS3();
    stops.push(stopS3);
    project.provide('s3', {
      ...s3,
      accessKeyId: s3.accessKeyId ?? '',
      secretAccessKey: s3.secretAccessKey ?? '',
    });
    if (process.env.KAFKA_BROKERS) {
      project.provide(
        'kafkaBrokers',
        process.env.KAFKA_BROKERS.split(',').map((b) => b.trim()),
      );
      project.provide('kafkaSource', 'env');
    } else if (await dockerAnswers()) {
      const { KafkaContainer } = await import('@testcontainers/kafka');
      const container = await new KafkaContainer('confluentinc/cp-kafka:7.9.0')
        .withKraft()
        .withExposedPorts(9093)
        .start();
      stops.push(async () => {
        await container.stop();
      });
      project.provide('kafkaBrokers', [`${container.getHost()}:${container.getMappedPort(9093)}`]);
      project.provide('kafkaSource', 'testcontainers');
    } else {
      const broker = await startTestBroker({ defaultPartitions: 1 });
      stops.push(() => broker.stop());
      project.provide('kafkaBrokers', broker.brokers);
      project.provide('kafkaSource', 'test-broker');
    }
  } catch (error) {
    for (const stop of stops.reverse()) await stop();
    throw error;
  }
  return async () => {
    for (const stop of stops.reverse()) await stop();
  };
}

/** True when a Docker engine answers on its socket (DOCKER_HOST=unix://… or the default). */
function dockerAnswers(): Promise<boolean> {
  const host = process.env.DOCKER_HOST;
  const socketPath = host?.startsWith('unix://')
    ? host.slice('unix://'.length)
    : host
      ? undefined
      : '/var/run/docker.sock';
  if (!socketPath) return Promise.resolve(false);
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}
