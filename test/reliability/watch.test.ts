import { csvChunks, type GeneratedFile } from '@tributary/example-tickets';
import { describe, expect, it } from 'vitest';
import { collect, startCli } from '../support/cli.js';
import {
  exactProblems,
  loadStatuses,
  pollUntil,
  putObject,
  type World,
  world,
} from '../support/reliability.js';

/** A later inc delta made from an existing one (different raw_status). */
function laterDelta(files: GeneratedFile[], key: string, status: string): GeneratedFile {
  const from = files.find((f) => f.key === 'automations/inc/changes/2026-06-22T17-10-41.csv')!;
  const rows = [...from.rows()].map((r) => ({ ...r, raw_status: status }));
  return { key, dataset: 'inc', kind: 'delta', rowCount: rows.length, rows: () => rows };
}

async function upload(w: World, file: GeneratedFile): Promise<void> {
  w.files.push(file);
  await putObject(w, file.key, [...csvChunks(file)].join(''));
}

describe('watch mode', () => {
  // Regression: after reading the last pending file, watch mode planned again before that file
  // committed and was archived, so it read the in-flight file a second time (a second load row)
  // or found it gone ("disappeared before it could be read") and stopped the stream.
  it('new files arriving during watch are applied once each; SIGTERM exits 0 with no warning', async () => {
    const w = await world();
    const child = startCli(['run', '--dataset', 'inc', '--apply', '--watch', '--interval', '1'], w.env);
    const done = collect(child);
    const archived = (n: number) => async () => (await loadStatuses(w))['archived'] === n;
    await pollUntil('the four inc files archived', archived(4));
    for (const [i, minute] of ['18-00-00', '18-00-01', '18-00-02'].entries()) {
      await upload(w, laterDelta(w.files, `automations/inc/changes/2026-06-22T${minute}.csv`, `wave_${i}`));
    }
    await pollUntil('the three new files archived', archived(7));
    child.kill('SIGTERM');
    const result = await done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    expect(await exactProblems(w, ['inc'])).toEqual([]);
  });
});
