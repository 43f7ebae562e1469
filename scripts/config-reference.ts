/**
 * `pnpm docs:config`: rewrites the "Config reference" of packages/cli/README.md from the schema
 * that validates configs (packages/cli/src/config.ts). A unit test fails when it is stale.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withConfigReference } from '../packages/cli/src/reference.js';

const readme = join(import.meta.dirname, '..', 'packages', 'cli', 'README.md');
await writeFile(readme, withConfigReference(await readFile(readme, 'utf8')));
