/**
 * `pnpm docs:options`: rewrites the generated option tables of the stage READMEs from the zod
 * schemas that validate the options (issue 16). A unit test per package fails when one is stale.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { optionsTable, withOptionsTable } from '@tributary/core/options';
import { archiveOptionsSchema, publishOptionsSchema, subscribeOptionsSchema } from '@tributary/kafka-bridge';
import { pgSinkOptionsSchema, targetTableSchema } from '@tributary/pg-sink';
import { s3FileTargetOptionsSchema, s3SourceOptionsSchema } from '@tributary/s3-source';

const root = join(import.meta.dirname, '..');
const readmes = [
  {
    path: join(root, 'packages', 'kafka-bridge', 'README.md'),
    tables: {
      publish: publishOptionsSchema,
      subscribe: subscribeOptionsSchema,
      archive: archiveOptionsSchema,
    },
  },
  {
    path: join(root, 'packages', 'pg-sink', 'README.md'),
    tables: { pgSink: pgSinkOptionsSchema, target: targetTableSchema },
  },
  {
    path: join(root, 'packages', 's3-source', 'README.md'),
    tables: { s3Source: s3SourceOptionsSchema, s3FileTarget: s3FileTargetOptionsSchema },
  },
];

for (const { path, tables } of readmes) {
  let text = await readFile(path, 'utf8');
  for (const [name, schema] of Object.entries(tables))
    text = withOptionsTable(text, name, optionsTable(schema));
  await writeFile(path, text);
}
