#!/usr/bin/env node
// The built CLI: compiled JavaScript, no TypeScript compiler at start (issue 12). `pnpm install`
// builds it (the workspace's prepare step); an installed package ships dist/.
import { existsSync } from 'node:fs';
import module from 'node:module';

// The bundle (scripts/bundle-bin.mjs, built with dist/) loads in far fewer modules; dist/cli.js
// is the same code unbundled.
const bundle = new URL('../dist/bundle/cli.js', import.meta.url);
const cli = existsSync(bundle) ? bundle : new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('tickets-pipeline: dist/cli.js is missing: run `pnpm build` first\n');
  process.exit(1);
}
// Node caches the compiled code of our modules and dependencies across runs (Node >= 22.1).
module.enableCompileCache?.();
await import(cli.href);
