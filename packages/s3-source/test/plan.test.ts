import type { LoadRecord, Position } from '@tributary/core';
import { describe, expect, it } from 'vitest';
import { type OrderedObject, type PlanInput, planPendingFiles, planReplay } from '../src/index.js';

const P = 'automations/inc/changes/';
const obj = (name: string, etag = `e-${name}`, role: OrderedObject['role'] = 'changes'): OrderedObject => ({
  key: name.includes('/') ? name : `${P}${name}`,
  etag,
  size: 10,
  lastModified: undefined,
  role,
});
const base = (objects: OrderedObject[], patch: Partial<PlanInput> = {}): PlanInput => ({
  stream: 'tickets/inc',
  objects,
  checkpoint: null,
  keyPattern: 'YYYY-MM-DDTHH-mm-ss',
  timeZone: 'Africa/Nairobi',
  layout: 'changes',
  lateFiles: 'error',
  etagChanged: 'error',
  ...patch,
});
const done = (name: string, etag = `e-${name}`, watermark?: string): Position => ({
  key: `${P}${name}`,
  etag,
  row: 3,
  done: true,
  ...(watermark ? { watermark: { key: `${P}${watermark}`, time: '2026-06-22T14:10:41.000Z' } } : {}),
});
const loaded = (name: string, etag = `e-${name}`, status: LoadRecord['status'] = 'loaded'): LoadRecord => ({
  stream: 'tickets/inc',
  source: `${P}${name}`,
  etag,
  size: 10,
  kind: 'delta',
  status,
  finishedAt: null,
  error: null,
});
const names = (files: Array<{ key: string }>) => files.map((f) => f.key.slice(f.key.lastIndexOf('/') + 1));

describe('planPendingFiles', () => {
  it('orders by encoded time, baseline first on a fresh stream', () => {
    const plan = planPendingFiles(
      base([obj('2026-06-22T17-15-41.csv'), obj('2026-06-22T15-53-04.csv'), obj('2026-06-22T15-50-39.csv')]),
    );
    expect(names(plan.pending)).toEqual([
      '2026-06-22T15-50-39.csv',
      '2026-06-22T15-53-04.csv',
      '2026-06-22T17-15-41.csv',
    ]);
    expect(plan.pending.map((f) => f.kind)).toEqual(['baseline', 'delta', 'delta']);
    expect(plan.pending[0]!.time).toBe('2026-06-22T12:50:39.000Z');
    expect(plan.watermark).toBeNull();
    expect(plan.failure).toBeUndefined();
  });

  it('orders names whose lexical order differs from time order by the instant (zones in names)', () => {
    const plan = planPendingFiles(
      base(
        [
          obj('20260424_1300_UTC.csv'),
          obj('20260424_1400_EAT.csv'),
          obj('20261101_0130_EDT.csv'),
          obj('20261101_0115_EST.csv'),
        ],
        { keyPattern: 'YYYYMMDD_HHMM_<TZ>' },
      ),
    );
    expect(names(plan.pending)).toEqual([
      '20260424_1400_EAT.csv',
      '20260424_1300_UTC.csv',
      '20261101_0130_EDT.csv',
      '20261101_0115_EST.csv',
    ]);
  });

  it('breaks ties by key', () => {
    const pattern = () => new Date(0);
    const plan = planPendingFiles(base([obj('b.csv'), obj('a.csv'), obj('c.csv')], { keyPattern: pattern }));
    expect(names(plan.pending)).toEqual(['a.csv', 'b.csv', 'c.csv']);
  });

  it('puts Qlik LOAD files first, in number order, as baselines', () => {
    const T = 'cubic/ods_qlik/EDW.SAMPLE/';
    const CT = 'cubic/ods_qlik/EDW.SAMPLE__ct/';
    const plan = planPendingFiles(
      base(
        [
          obj(`${CT}20220304-134556444.csv.gz`),
          obj(`${T}LOAD010.csv.gz`, 'x', 'baseline'),
          obj(`${CT}20220304-120000000.csv.gz`),
          obj(`${T}LOAD002.csv.gz`, 'y', 'baseline'),
        ],
        { layout: 'qlik', keyPattern: 'YYYYMMDD-HHmmssSSS', timeZone: 'UTC' },
      ),
    );
    expect(names(plan.pending)).toEqual([
      'LOAD002.csv.gz',
      'LOAD010.csv.gz',
      '20220304-120000000.csv.gz',
      '20220304-134556444.csv.gz',
    ]);
    expect(plan.pending.map((f) => f.kind)).toEqual(['baseline', 'baseline', 'delta', 'delta']);
  });

  it('skips what the checkpoint covers and fails on a late file by default', () => {
    const objects = [
      obj('2026-06-22T15-53-04.csv'),
      obj('2026-06-22T17-10-41.csv'),
      obj('2026-06-22T17-15-41.csv'),
    ];
    const plan = planPendingFiles(base(objects, { checkpoint: done('2026-06-22T17-10-41.csv') }));
    // The checkpointed file is still here: archive only.
    expect(names(plan.archiveOnly)).toEqual(['2026-06-22T17-10-41.csv']);
    expect(names(plan.late)).toEqual(['2026-06-22T15-53-04.csv']);
    expect(plan.late[0]!.late).toBe(true);
    expect(plan.failure?.code).toBe('LATE_FILE');
    expect(plan.failure?.location?.file).toBe(`${P}2026-06-22T15-53-04.csv`);
    expect(plan.error).toMatch(/late file .*15-53-04/);
    expect(names(plan.pending)).toEqual(['2026-06-22T17-15-41.csv']);
    expect(plan.pending[0]!.kind).toBe('delta');

    const apply = planPendingFiles(
      base(objects, { checkpoint: done('2026-06-22T17-10-41.csv'), lateFiles: 'apply' }),
    );
    expect(apply.failure).toBeUndefined();
    expect(names(apply.pending)).toEqual(['2026-06-22T15-53-04.csv', '2026-06-22T17-15-41.csv']);
    expect(apply.pending.map((f) => f.late)).toEqual([true, false]);

    const skip = planPendingFiles(
      base(objects, { checkpoint: done('2026-06-22T17-10-41.csv'), lateFiles: 'skip' }),
    );
    expect(skip.failure).toBeUndefined();
    expect(names(skip.late)).toEqual(['2026-06-22T15-53-04.csv']);
    expect(names(skip.pending)).toEqual(['2026-06-22T17-15-41.csv']);
  });

  it('uses the watermark carried in the position, not the position key', () => {
    // A late file applied under 'apply' is the last position, but the watermark is newer.
    const plan = planPendingFiles(
      base([obj('2026-06-22T16-00-00.csv'), obj('2026-06-22T17-00-00.csv')], {
        checkpoint: done('2026-06-22T15-53-04.csv', 'e', '2026-06-22T17-10-41.csv'),
        lateFiles: 'apply',
      }),
    );
    expect(plan.watermark?.key).toBe(`${P}2026-06-22T17-10-41.csv`);
    expect(plan.pending.every((f) => f.late)).toBe(true);
  });

  it('uses the load log: applied files are archive-only, re-exported ones are ETag changes', () => {
    const objects = [
      obj('2026-06-22T15-50-39.csv', 'new-etag'),
      obj('2026-06-22T15-53-04.csv'),
      obj('2026-06-22T17-15-41.csv'),
    ];
    const loads = [
      loaded('2026-06-22T15-50-39.csv', 'old-etag', 'archived'),
      loaded('2026-06-22T15-53-04.csv'),
    ];
    const plan = planPendingFiles(base(objects, { checkpoint: done('2026-06-22T15-53-04.csv'), loads }));
    expect(names(plan.etagChanged)).toEqual(['2026-06-22T15-50-39.csv']);
    expect(plan.failure?.code).toBe('ETAG_CHANGED');
    expect(names(plan.archiveOnly)).toEqual(['2026-06-22T15-53-04.csv']);
    expect(names(plan.pending)).toEqual(['2026-06-22T17-15-41.csv']);

    const apply = planPendingFiles(
      base(objects, { checkpoint: done('2026-06-22T15-53-04.csv'), loads, etagChanged: 'apply' }),
    );
    expect(apply.failure).toBeUndefined();
    expect(names(apply.pending)).toEqual(['2026-06-22T15-50-39.csv', '2026-06-22T17-15-41.csv']);
  });

  it('a failed load in the log is not an applied file', () => {
    const plan = planPendingFiles(
      base([obj('2026-06-22T15-50-39.csv')], {
        loads: [loaded('2026-06-22T15-50-39.csv', 'e-2026-06-22T15-50-39.csv', 'failed')],
      }),
    );
    expect(names(plan.pending)).toEqual(['2026-06-22T15-50-39.csv']);
    // Nothing was applied yet: the retried first file is still the baseline.
    expect(plan.pending[0]!.kind).toBe('baseline');
  });

  it('resumes inside a partially committed file (batch granularity)', () => {
    const checkpoint: Position = {
      key: `${P}2026-06-22T15-50-39.csv`,
      etag: 'e-2026-06-22T15-50-39.csv',
      row: 5000,
      done: false,
      kind: 'baseline',
    };
    const plan = planPendingFiles(
      base([obj('2026-06-22T15-50-39.csv'), obj('2026-06-22T15-53-04.csv')], { checkpoint }),
    );
    expect(plan.resume).toEqual({ key: `${P}2026-06-22T15-50-39.csv`, row: 5000 });
    expect(names(plan.pending)).toEqual(['2026-06-22T15-50-39.csv', '2026-06-22T15-53-04.csv']);
    expect(plan.pending[0]!.kind).toBe('baseline');
    expect(plan.late).toEqual([]);
  });

  it('fails on a bad key, naming it', () => {
    const plan = planPendingFiles(base([obj('2026-06-22T15-50-39.csv'), obj('export-final.csv')]));
    expect(plan.failure?.code).toBe('BAD_KEY');
    expect(plan.failure?.location).toEqual({ file: `${P}export-final.csv` });
    expect(plan.error).toMatch(/export-final\.csv does not match the key pattern 'YYYY-MM-DDTHH-mm-ss'/);
  });

  it('replays archived files from a key onwards, ignoring the done checkpoint', () => {
    const A = 'automations/inc/processed/';
    const plan = planReplay({
      stream: 'tickets/inc',
      objects: ['2026-06-22T15-50-39.csv', '2026-06-22T17-15-41.csv', '2026-06-22T15-53-04.csv'].map((n) =>
        obj(`${A}${n}`),
      ),
      from: '2026-06-22T15-53-04.csv',
      checkpoint: done('2026-06-22T17-15-41.csv'),
      keyPattern: 'YYYY-MM-DDTHH-mm-ss',
      timeZone: 'Africa/Nairobi',
      layout: 'changes',
    });
    expect(names(plan.pending)).toEqual(['2026-06-22T15-53-04.csv', '2026-06-22T17-15-41.csv']);
    expect(plan.pending.every((f) => f.kind === 'delta')).toBe(true);
  });
});
