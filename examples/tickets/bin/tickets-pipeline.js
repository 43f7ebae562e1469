#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
// Launcher: the built CLI when present (`pnpm build`), else the TypeScript sources through tsx
// with the workspace's source export condition, so `pnpm tickets …` needs no build step.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'cli.js');
if (existsSync(built) && !process.env.TRIBUTARY_FROM_SOURCE) {
  await import(built);
} else {
  const result = spawnSync(
    process.execPath,
    [
      '--conditions=@tributary/source',
      '--import',
      'tsx',
      join(root, 'src', 'cli.ts'),
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit' },
  );
  process.exitCode = result.status ?? 1;
}
