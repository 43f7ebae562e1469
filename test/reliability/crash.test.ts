process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

import { randomBytes } from 'node:crypto';
import { generateBucket } from '@tributary/example-tickets';
import { describe, expect, inject, it } from 'vitest';
import { type CliResult, collect, runCli, startCli } from '../support/cli.js';
import {
  checkpointOf,
  exactProblems,
  loadStatuses,
  seededRandom,
  type World,
  world,
} from '../support/reliability.js';
import { diffAgainstOracle, listAll, publishedMessages } from '../support/tickets.js';

/**
 * Crashes (issue 7): the binary SIGKILLs itself at each named fault point
 * (`TRIBUTARY_FAULT`, packages/core/src/faults.ts), or the test SIGKILLs it at random times;
 * then a normal run must leave the exact end state: table = oracle, one archived load row per
 * file, nothing left in changes/.
 */

const crashRun = (args: string[], w: World, fault: string): Promise<CliResult> =>
  collect(startCli(args, { ...w.env, TRIBUTARY_FAULT: fault }));

async function recover(w: World, args = ['run', '--dataset', 'inc,crq', '--apply', '--json']): Promise<void> {
  const result = await runCli(args, w.env);
  expect(result.code, result.stderr).toBe(0);
  expect(await exactProblems(w)).toEqual([]);
}

/** Processed copies whose file has no committed (loaded or archived) load row: must be none. */
async function copiesWithoutCommit(w: World): Promise<string[]> {
  const copies = await listAll(w.client, w.bucket, 'automations/inc/processed/');
  const { rows } = await w.db.pool.query<{ source: string }>(
    `SELECT source FROM tributary.loads WHERE stream = 'tickets/inc' AND status IN ('loaded', 'archived')`,
  );
  const committed = new Set(rows.map((r) => r.source.split('/').pop()));
  return copies.filter((key) => !committed.has(key.split('/').pop()));
}

describe.concurrent('crashes', () => {
  describe('crash at each fault point, then a normal run: exact', () => {
    it('s3-source:after-listing — nothing applied, nothing moved', async () => {
      const w = await world();
      const killed = await crashRun(['run', '--dataset', 'inc,crq', '--apply'], w, 's3-source:after-listing');
      expect(killed.signal).toBe('SIGKILL');
      expect(await loadStatuses(w)).toEqual({});
      expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toHaveLength(4);
      await recover(w);
    });

    it('s3-source:mid-download — the partly read file is not applied', async () => {
      const w = await world();
      const killed = await crashRun(['run', '--apply'], w, 's3-source:mid-download');
      expect(killed.signal).toBe('SIGKILL');
      expect(await checkpointOf(w)).toBeNull();
      await recover(w);
    });

    it('pg-sink:mid-copy — a half-sent COPY leaves no row', async () => {
      const w = await world();
      const killed = await crashRun(['run', '--apply'], w, 'pg-sink:mid-copy');
      expect(killed.signal).toBe('SIGKILL');
      const rows = await w.db.pool.query(`SELECT count(*)::int AS n FROM tickets.inc`);
      expect(rows.rows[0].n).toBe(0);
      await recover(w);
    });

    it('pg-sink:after-upsert — rows without checkpoint roll back together', async () => {
      const w = await world();
      const killed = await crashRun(['run', '--apply'], w, 'pg-sink:after-upsert');
      expect(killed.signal).toBe('SIGKILL');
      expect((await w.db.pool.query(`SELECT count(*)::int AS n FROM tickets.inc`)).rows[0].n).toBe(0);
      expect(await checkpointOf(w)).toBeNull();
      await recover(w);
    });

    it('pg-sink:after-commit — committed, not archived: the next run only archives it', async () => {
      const w = await world();
      const killed = await crashRun(['run', '--apply'], w, 'pg-sink:after-commit');
      expect(killed.signal).toBe('SIGKILL');
      expect(await loadStatuses(w)).toEqual({ loaded: 1 });
      const baseline = 'automations/inc/changes/2026-06-22T15-50-39.csv';
      expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toContain(baseline);
      expect((await checkpointOf(w))?.['key']).toBe(baseline);
      await recover(w);
    });

    // Archives run behind the next files' apply (issue 12): at the kill, later files may have
    // committed and been copied too. What must hold: the first file's copy exists, no copy
    // exists without a committed load row, and the next run leaves everything exact.
    it('s3-source:after-archive-copy — copied, not deleted: the next run finishes the move', async () => {
      const w = await world();
      const killed = await crashRun(['run', '--apply'], w, 's3-source:after-archive-copy');
      expect(killed.signal).toBe('SIGKILL');
      expect(await listAll(w.client, w.bucket, 'automations/inc/processed/')).toContain(
        'automations/inc/processed/2026-06-22T15-50-39.csv',
      );
      expect(await copiesWithoutCommit(w)).toEqual([]);
      await recover(w);
    });

    it('s3-source:after-archive-record — recorded as archived, not deleted: the next run deletes it', async () => {
      const w = await world();
      const killed = await crashRun(['run', '--apply'], w, 's3-source:after-archive-record');
      expect(killed.signal).toBe('SIGKILL');
      // The load row says archived only while the original is still listed, so the next run
      // sees it and finishes the move (recorded after the delete, it stayed `loaded` for good).
      expect((await loadStatuses(w))['archived']).toBeGreaterThanOrEqual(1);
      expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toContain(
        'automations/inc/changes/2026-06-22T15-50-39.csv',
      );
      expect(await copiesWithoutCommit(w)).toEqual([]);
      await recover(w);
    });

    it('killed while archives of earlier files are in flight and later files apply: exact, each archived once', async () => {
      const files = generateBucket({ scale: 0.02 });
      const base = files.find((f) => f.key === 'automations/inc/changes/2026-06-22T17-10-41.csv')!;
      for (let i = 0; i < 24; i++) {
        const rows = [...base.rows()].slice(0, 3).map((r) => ({ ...r, raw_status: `wave_${i}` }));
        const key = `automations/inc/changes/2026-06-22T19-${String(i).padStart(2, '0')}-00.csv`;
        files.push({ key, dataset: 'inc', kind: 'delta', rowCount: rows.length, rows: () => rows });
      }
      const w = await world({ files });
      // The 6th archive copy: earlier archives and later files' transactions are in flight.
      const killed = await crashRun(['run', '--apply'], w, 's3-source:after-archive-copy@6');
      expect(killed.signal).toBe('SIGKILL');
      expect(await copiesWithoutCommit(w)).toEqual([]);
      await recover(w);
    });

    it('s3-source:watch-sleep — killed while waiting for new files', async () => {
      const w = await world();
      const killed = await crashRun(
        ['run', '--dataset', 'inc,crq', '--apply', '--watch', '--interval', '1'],
        w,
        's3-source:watch-sleep~tickets/inc',
      );
      expect(killed.signal).toBe('SIGKILL');
      // inc reached its first sleep (crq runs concurrently and may sleep first, hence the
      // scope): everything of inc was applied before.
      expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
      await recover(w);
    });

    it('kafka:subscriber-after-commit — rows committed, Kafka offset not: nothing applied twice', async () => {
      const w = await world();
      const brokers = inject('kafkaBrokers').join(',');
      const topic = `tickets.${randomBytes(4).toString('hex')}`;
      const kafka = ['--brokers', brokers, '--topic', topic];
      const published = await runCli(['publish', '--dataset', 'inc', ...kafka, '--apply'], w.env);
      expect(published.code, published.stderr).toBe(0);
      const subscribe = [
        'subscribe',
        ...kafka,
        '--group',
        `loader-${topic}`,
        '--dataset',
        'inc',
        '--exit-when-idle',
      ];
      const killed = await crashRun(subscribe, w, 'kafka:subscriber-after-commit');
      expect(killed.signal).toBe('SIGKILL');
      const again = await runCli([...subscribe, '--json'], w.env);
      expect(again.code, again.stderr).toBe(0);
      expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
      // Every offset of every partition applied exactly once: the ranges in the load log tile
      // the topic without overlap.
      const loads = await w.db.pool.query<{ stream: string; rows_read: string; source: string }>(
        `SELECT stream, source, rows_read FROM tributary.loads WHERE stream LIKE 'kafka/%' AND status IN ('loaded', 'archived')`,
      );
      const read = loads.rows.reduce((n, r) => n + Number(r.rows_read), 0);
      expect(read).toBe(publishedMessages(w.files, 'inc'));
    });

    it('kafka:publisher-after-send — sent, checkpoint not moved: re-sent, table still exact', async () => {
      const w = await world();
      const brokers = inject('kafkaBrokers').join(',');
      const topic = `tickets.${randomBytes(4).toString('hex')}`;
      const kafka = ['--brokers', brokers, '--topic', topic];
      const killed = await crashRun(
        ['publish', '--dataset', 'inc', ...kafka, '--apply'],
        w,
        'kafka:publisher-after-send',
      );
      expect(killed.signal).toBe('SIGKILL');
      expect(await checkpointOf(w)).toBeNull();
      expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toHaveLength(4);
      const published = await runCli(['publish', '--dataset', 'inc', ...kafka, '--apply'], w.env);
      expect(published.code, published.stderr).toBe(0);
      const subscribed = await runCli(
        ['subscribe', ...kafka, '--group', `loader-${topic}`, '--dataset', 'inc', '--exit-when-idle'],
        w.env,
      );
      expect(subscribed.code, subscribed.stderr).toBe(0);
      expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
      expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toEqual([]);
    });
  });

  describe('random-time kills', () => {
    it('SIGKILL at seeded random moments on a larger file, five times, then a normal run: exact', async () => {
      const w = await world({ files: generateBucket({ scale: 0.4 }) });
      const random = seededRandom(7);
      const outcomes: string[] = [];
      for (let i = 0; i < 5; i++) {
        const child = startCli(['run', '--dataset', 'inc,crq', '--apply'], w.env);
        const done = collect(child);
        // The kill itself is the fault being injected, at a random moment of the run.
        const timer = setTimeout(() => child.kill('SIGKILL'), 400 + Math.floor(random() * 2500));
        const result = await done;
        clearTimeout(timer);
        outcomes.push(result.signal ?? `exit ${result.code}`);
        if (result.signal === null) expect(result.code, result.stderr).toBe(0);
      }
      expect(outcomes.filter((o) => o === 'SIGKILL').length).toBeGreaterThan(0);
      await recover(w);
    });
  });
});
