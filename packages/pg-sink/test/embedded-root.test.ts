import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { closedAncestor } from '../src/testing/index.js';

// As root, embedded PostgreSQL runs as the `postgres` user: a checkout in a directory others
// cannot enter (mktemp -d makes 0700) must give a clear error, not initdb's bare EACCES.
const base = await mkdtemp(join(tmpdir(), 'tributary-closed-'));
afterAll(() => rm(base, { recursive: true, force: true }));

describe('closedAncestor', () => {
  it('names the first directory others cannot enter, and nothing when all can be entered', async () => {
    const closed = join(base, 'private');
    const file = join(closed, 'node_modules', 'pkg', 'index.js');
    await mkdir(join(closed, 'node_modules', 'pkg'), { recursive: true });
    await chmod(base, 0o755);
    await chmod(closed, 0o700);
    expect(closedAncestor(file)).toBe(closed);
    await chmod(closed, 0o755);
    expect(closedAncestor(file)).toBeUndefined();
  });
});
