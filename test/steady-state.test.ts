import { changeFiles, csvChunks, type GeneratedFile } from '@tributary/example-tickets';
import { describe, expect, it } from 'vitest';
import { collect, freePort, health, metric, runCli, startCli } from './support/cli.js';
import {
  exactProblems,
  loadStatuses,
  pollUntil,
  putObject,
  type World,
  world,
} from './support/reliability.js';

/**
 * Issue 12, the steady state as users run it: the built binary watching both datasets, each in
 * its own failure domain, with `/healthz` telling the truth.
 */

/** A later delta of `dataset` made from its first delta, with a distinct raw_status. */
function laterDelta(w: World, dataset: 'inc' | 'crq', at: string, status: string): GeneratedFile {
  const from = changeFiles(w.files, dataset).find((f) => f.kind === 'delta')!;
  const rows = [...from.rows()].map((r) => ({ ...r, raw_status: status }));
  return {
    key: `automations/${dataset}/changes/2026-06-22T${at}.csv`,
    dataset,
    kind: 'delta',
    rowCount: rows.length,
    rows: () => rows,
  };
}

const body = (file: GeneratedFile) => [...csvChunks(file)].join('');

async function upload(w: World, file: GeneratedFile): Promise<void> {
  w.files.push(file);
  await putObject(w, file.key, body(file));
}

const archived = (w: World, stream: string, n: number) => async () =>
  ((await loadStatuses(w, stream))['archived'] ?? 0) === n;

describe('steady state: run --watch over inc and crq (built binary)', () => {
  it('applies both datasets, isolates a malformed crq file, reports it on /healthz, recovers, exits 0 on SIGTERM', async () => {
    const w = await world();
    const port = await freePort();
    const child = startCli(
      [
        'run',
        '--dataset',
        'inc,crq',
        '--apply',
        '--watch',
        '--interval',
        '1',
        '--metrics-port',
        String(port),
      ],
      w.env,
    );
    const done = collect(child);
    try {
      const incFiles = changeFiles(w.files, 'inc').length;
      const crqFiles = changeFiles(w.files, 'crq').length;
      // Both datasets from the start (the first one used to watch forever and starve the second).
      await pollUntil('both datasets applied', async () => {
        const [inc, crq] = [await loadStatuses(w, 'tickets/inc'), await loadStatuses(w, 'tickets/crq')];
        return inc['archived'] === incFiles && crq['archived'] === crqFiles;
      });
      await pollUntil('the metrics server answers', () =>
        health(port).then(
          () => true,
          () => false,
        ),
      );
      expect(await health(port)).toEqual({ status: 200, body: { ok: true, failing: [] } });

      // Files arriving later to either dataset.
      await upload(w, laterDelta(w, 'inc', '18-10-00', 'wave_a'));
      await upload(w, laterDelta(w, 'crq', '18-10-00', 'wave_a'));
      await pollUntil('the later inc file', archived(w, 'tickets/inc', incFiles + 1));
      await pollUntil('the later crq file', archived(w, 'tickets/crq', crqFiles + 1));

      // A malformed crq file stops crq at that file...
      const bad = laterDelta(w, 'crq', '18-20-00', 'fixed');
      // Its last record has 2 fields instead of 32: the rows before it must roll back.
      const badBody = `${body(bad)}broken,record\n`;
      const badLine = badBody.split('\n').length - 1;
      await putObject(w, bad.key, badBody);
      const afterBad = laterDelta(w, 'crq', '18-30-00', 'after_bad');
      await upload(w, afterBad);
      await pollUntil('/healthz reports crq failing', async () => (await health(port)).status === 503);
      const failing = (await health(port)).body.failing;
      expect(failing).toEqual([
        expect.objectContaining({ stream: 'tickets/crq', file: bad.key, code: 'MALFORMED_ROW' }),
      ]);
      expect(Date.parse(failing[0]!.since)).not.toBeNaN();
      // Counted when it happens, not at exit.
      expect(await metric(port, 'tributary_failures_total', 'tickets/crq')).toBeGreaterThanOrEqual(1);
      const status = await runCli(['status', '--dataset', 'inc,crq', '--json'], w.env);
      const crqStatus = (status.json as { streams: Record<string, unknown>[] }).streams.find(
        (s) => s['stream'] === 'tickets/crq',
      );
      expect(crqStatus).toMatchObject({ failingFile: bad.key, lateFilesSkipped: 0 });
      expect(String(crqStatus?.['lastError'])).toMatch(
        new RegExp(`18-20-00\\.csv:${badLine}:\\d+: malformed CSV row`),
      );

      // ...while inc keeps applying new files.
      await upload(w, laterDelta(w, 'inc', '18-40-00', 'wave_b'));
      await pollUntil('inc applies while crq fails', archived(w, 'tickets/inc', incFiles + 2));
      // crq did not skip past its failing file.
      expect((await loadStatuses(w, 'tickets/crq'))['archived']).toBe(crqFiles + 1);
      expect((await health(port)).status).toBe(503);

      // The operator fixes the file: crq applies it and the one behind it; health is green again.
      await upload(w, bad);
      await pollUntil('crq applied the fixed file and the next', archived(w, 'tickets/crq', crqFiles + 3));
      await pollUntil('/healthz is ok again', async () => (await health(port)).status === 200);
    } catch (error) {
      child.kill('SIGKILL');
      const { stderr } = await done;
      throw new Error(`${(error as Error).message}\n--- binary stderr ---\n${stderr.slice(-4000)}`);
    }
    child.kill('SIGTERM');
    const result = await done;
    expect(result.code, result.stderr).toBe(0);
    expect(await exactProblems(w, ['inc', 'crq'])).toEqual([]);
  });
});
