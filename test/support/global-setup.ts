import { startEmbeddedPostgres } from '@tributary/pg-sink/testing';
import { startEmbeddedS3 } from '@tributary/s3-source/testing';
import type { TestProject } from 'vitest/node';

/**
 * Real services for every suite, chosen in the order of ARCHITECTURE.md:
 * PostgreSQL from DATABASE_URL else embedded; S3 from S3_ENDPOINT else s3rver.
 * Whatever is started here is stopped in teardown, also when tests fail.
 */
declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgSource: 'env' | 'embedded';
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
  try {
    if (process.env.DATABASE_URL) {
      project.provide('pgAdminUrl', process.env.DATABASE_URL);
      project.provide('pgSource', 'env');
    } else {
      const pg = await startEmbeddedPostgres();
      stops.push(() => pg.stop());
      project.provide('pgAdminUrl', pg.url);
      project.provide('pgSource', 'embedded');
    }
    if (process.env.S3_ENDPOINT) {
      project.provide('s3', {
        endpoint: process.env.S3_ENDPOINT,
        region: process.env.AWS_REGION ?? 'us-east-1',
        accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? '',
        secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? '',
        source: 'env',
      });
    } else {
      const s3 = await startEmbeddedS3();
      stops.push(() => s3.stop());
      const { stop: _stop, ...info } = s3;
      project.provide('s3', { ...info, source: 'embedded' });
    }
  } catch (error) {
    for (const stop of stops.reverse()) await stop();
    throw error;
  }
  return async () => {
    for (const stop of stops.reverse()) await stop();
  };
}
