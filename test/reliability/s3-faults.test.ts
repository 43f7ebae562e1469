import { afterAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { exactProblems, loadStatuses, type World, world } from '../support/reliability.js';
import { type FaultRule, type S3FaultProxy, startS3FaultProxy } from '../support/s3-fault-proxy.js';
import { listAll } from '../support/tickets.js';

/**
 * S3 service faults (issue 7): the binary talks to s3rver through a fault-injecting proxy.
 * Transient faults are retried with backoff and the run ends exact; a persistent fault is a
 * clear failure after which a later run completes; a truncated body is never applied.
 */

// One proxy per case, so the cases can run concurrently.
const proxies: S3FaultProxy[] = [];
afterAll(async () => {
  for (const proxy of proxies) await proxy.stop();
});

const BASELINE = 'inc/changes/2026-06-22T15-50-39.csv';

async function proxied(): Promise<World & { proxy: S3FaultProxy }> {
  const w = await world();
  const proxy = await startS3FaultProxy(inject('s3').endpoint);
  proxies.push(proxy);
  return { ...w, env: { ...w.env, S3_ENDPOINT: proxy.endpoint }, proxy };
}

async function runWith(w: World & { proxy: S3FaultProxy }, rules: FaultRule[]) {
  const { proxy } = w;
  proxy.setRules(rules);
  const result = await runCli(['run', '--apply', '--json'], w.env);
  const injected = proxy.injected();
  proxy.setRules([]);
  return { result, injected };
}

describe.concurrent('S3 faults', () => {
  describe('transient S3 faults are retried with backoff; the result is exact', () => {
    // One run per fault kind, hitting every operation: list, get (the baseline), copy, delete.
    const cases: [string, FaultRule[]][] = [
      [
        '5xx on list, get, copy and delete',
        [
          { op: 'list', fault: '503', times: 2 },
          { op: 'get', fault: '500', times: 2, keyIncludes: BASELINE },
          { op: 'copy', fault: '503', times: 2 },
          { op: 'delete', fault: '500', times: 2 },
        ],
      ],
      [
        'SlowDown on list, get, copy and delete',
        [
          { op: 'list', fault: 'slowdown', times: 2 },
          { op: 'get', fault: 'slowdown', times: 2, keyIncludes: BASELINE },
          { op: 'copy', fault: 'slowdown', times: 1 },
          { op: 'delete', fault: 'slowdown', times: 1 },
        ],
      ],
      [
        'connection reset on list, get, copy and delete',
        [
          { op: 'list', fault: 'reset', times: 1 },
          { op: 'get', fault: 'reset', times: 1, keyIncludes: BASELINE },
          { op: 'copy', fault: 'reset', times: 1 },
          { op: 'delete', fault: 'reset', times: 1 },
        ],
      ],
      ['get body cut off mid-transfer', [{ op: 'get', fault: 'truncate', times: 1, keyIncludes: BASELINE }]],
    ];
    for (const [name, rules] of cases) {
      it(name, async () => {
        const w = await proxied();
        const { result, injected } = await runWith(w, rules);
        expect(injected).toEqual(rules.map((r) => r.times));
        expect(result.code, result.stderr).toBe(0);
        expect(await exactProblems(w, ['inc'])).toEqual([]);
      });
    }
  });

  describe('persistent S3 faults: a clear failure, then a later run completes', () => {
    it('list always 503: retried, then the dataset fails clearly; a later run is exact', async () => {
      const w = await proxied();
      const { result, injected } = await runWith(w, [
        { op: 'list', fault: '503', times: Number.POSITIVE_INFINITY },
      ]);
      expect(injected[0]).toBeGreaterThan(1); // retried before giving up
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/dataset inc: listing s3:\/\/[^/]+\/automations\/inc\/changes\/ failed/);
      expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toHaveLength(4);
      const later = await runCli(['run', '--apply'], w.env);
      expect(later.code, later.stderr).toBe(0);
      expect(await exactProblems(w, ['inc'])).toEqual([]);
    });

    it('get always 503: one retry budget (5 requests, not SDK × source × pipeline), then a clear failure', async () => {
      const w = await proxied();
      const { result, injected } = await runWith(w, [
        { op: 'get', fault: '503', times: Number.POSITIVE_INFINITY, keyIncludes: BASELINE },
      ]);
      // Core's default RetryPolicy: 4 retries after the first try. The SDK client tries once and
      // the pipeline does not re-run an error a stage already retried to the end.
      expect(injected[0]).toBe(5);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/2026-06-22T15-50-39\.csv/);
      const later = await runCli(['run', '--apply'], w.env);
      expect(later.code, later.stderr).toBe(0);
      expect(await exactProblems(w, ['inc'])).toEqual([]);
    });

    it('copy always fails: data committed, files stay (warning); a later run archives them', async () => {
      const w = await proxied();
      const { result } = await runWith(w, [
        { op: 'copy', fault: '500', times: Number.POSITIVE_INFINITY, keyIncludes: '2026-06-22T15-50-39' },
      ]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toMatch(/archiving .*2026-06-22T15-50-39\.csv .* failed; it stays in place/);
      expect(await loadStatuses(w)).toEqual({ loaded: 1, archived: 3 });
      expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toEqual([
        'automations/inc/changes/2026-06-22T15-50-39.csv',
      ]);
      const later = await runCli(['run', '--apply', '--json'], w.env);
      expect(later.code, later.stderr).toBe(0);
      expect(await exactProblems(w, ['inc'])).toEqual([]);
    });

    it('a short body with a matching Content-Length is never applied as a short file', async () => {
      const w = await proxied();
      const { result, injected } = await runWith(w, [
        { op: 'get', fault: 'short', times: Number.POSITIVE_INFINITY, keyIncludes: BASELINE },
      ]);
      expect(injected[0]).toBeGreaterThan(0);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/2026-06-22T15-50-39\.csv/);
      // No row of the half file was committed, and the checkpoint did not move.
      const rows = await w.db.pool.query(
        `SELECT count(*)::int AS n FROM tributary.loads WHERE status IN ('loaded', 'archived')`,
      );
      expect(rows.rows[0].n).toBe(0);
      const later = await runCli(['run', '--apply'], w.env);
      expect(later.code, later.stderr).toBe(0);
      expect(await exactProblems(w, ['inc'])).toEqual([]);
    });
  });
});
