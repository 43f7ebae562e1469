import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const SOURCE_DIRS = [
  'packages/core',
  'packages/cli',
  'packages/s3-source',
  'packages/pg-sink',
  'packages/kafka-bridge',
  'packages/pg-source',
  'examples/tickets',
];

function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    latest = Math.max(latest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return latest;
}

function builtAt(packageDir: string): number {
  try {
    return statSync(join(ROOT, packageDir, 'dist', 'index.js')).mtimeMs;
  } catch {
    return 0;
  }
}

/** The binaries and the entry each bundles (scripts/bundle-bin.mjs). */
const BUNDLED = [
  { dir: 'packages/cli', entry: 'tributary.js' },
  { dir: 'examples/tickets', entry: 'cli.js' },
];

function bundledAt(packageDir: string, entry: string): number {
  try {
    return statSync(join(ROOT, packageDir, 'dist', 'bundle', entry)).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Tests spawn the binaries users run: the built JavaScript, not the TypeScript sources. When a
 * package's sources are newer than its dist/ (an edit since the last build), rebuild first so a
 * test never passes or fails on stale code.
 */
export function ensureBuilt(): void {
  const stale =
    SOURCE_DIRS.some((dir) => newest(join(ROOT, dir, 'src')) > builtAt(dir)) ||
    // The binaries run their bundle: one package rebuilt alone leaves it behind.
    BUNDLED.some(({ dir, entry }) => bundledAt(dir, entry) < Math.max(...SOURCE_DIRS.map(builtAt)));
  if (!stale) return;
  execFileSync('pnpm', ['--silent', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}
