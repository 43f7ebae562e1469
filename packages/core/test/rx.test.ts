import { firstValueFrom, filter as rxFilter, map as rxMap, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { pipeline } from '../src/index.js';
import { rxRows, rxTransform, sourceToObservable } from '../src/rx.js';
import { memorySink, memorySource } from '../src/testing/index.js';

const units = [[[{ id: 1 }], [{ id: 2 }]], [[{ id: 3 }]], [[{ id: 4 }, { id: 5 }]]];

describe('rxjs interop', () => {
  it('a source as an Observable delivers the same batches in order', async () => {
    const viaRx = await firstValueFrom(sourceToObservable(memorySource({ units })).pipe(toArray()));
    const direct = memorySource({ units });
    const sink = memorySink();
    await pipeline(direct, sink);
    expect(viaRx.map((b) => b.position)).toEqual(direct.produced.map((b) => b.position));
    expect(viaRx.flatMap((b) => b.rows)).toEqual(sink.rows);
  });

  it('rxjs operators work as transforms, with drops counted', async () => {
    const sink = memorySink();
    const result = await pipeline(
      memorySource({ units }),
      rxRows(
        rxFilter((row) => Number(row['id']) !== 3),
        'not-three',
      ),
      rxTransform(rxMap((b) => ({ ...b, rows: b.rows.map((r) => ({ ...r, tag: 'rx' })) }))),
      sink,
    );
    expect(sink.rows).toEqual([1, 2, 4, 5].map((id) => ({ id, tag: 'rx' })));
    expect(result.rowsFiltered).toBe(1);
  });
});
