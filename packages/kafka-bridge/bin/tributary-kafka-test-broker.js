#!/usr/bin/env node
// `tributary-kafka-test-broker [--port N] [--host H] [--partitions N] [--verbose]`: the Kafka
// test broker as a command (src/testing/cli.ts, compiled). `pnpm install` builds it in the
// workspace (`pnpm kafka:broker` runs the sources); an installed package ships dist/.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/testing/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write(
    'tributary-kafka-test-broker: dist/testing/cli.js is missing: run `pnpm build` first\n',
  );
  process.exit(1);
}
await import(cli.href);
