import { describe, expect, it } from 'vitest';
import {
  type ConformanceCheck,
  ConformanceError,
  memorySink,
  memorySource,
  type SourceConformanceOptions,
  sinkConformance,
  sourceConformance,
} from '../src/testing/index.js';
import type { Batch, Row, Sink, Source } from '../src/types.js';

/** The reference stages: the in-memory source and (keyed) sink pass every check. */

type Fixture = Parameters<SourceConformanceOptions['create']>[0];

function memoryStreams(fixture: Fixture): Source<Row> {
  const sources = new Map(
    fixture.map((f) => [
      f.stream,
      memorySource({
        stream: f.stream,
        units: f.units.map((unit) => [unit.map(([id, v]) => ({ id, v }))]),
      }),
    ]),
  );
  return {
    name: 'memory-streams',
    streams: [...sources.keys()],
    async *read(context) {
      for (const source of sources.values()) yield* source.read(context);
    },
    only: (stream) => sources.get(stream)!,
  };
}

const keyedSink = () => {
  const sink = memorySink({ key: 'id' });
  return { sink, rows: async (stream: string) => sink.rowsOf(stream) };
};

describe('sinkConformance: memory sink (keyed)', () => {
  for (const check of sinkConformance({ create: async () => keyedSink() })) it(check.name, () => check.run());
});

describe('sourceConformance: memory source', () => {
  for (const check of sourceConformance({ create: async (f) => ({ source: memoryStreams(f) }) }))
    it(check.name, () => check.run());
});

/** The suites catch a broken stage: each deliberately broken one fails the check it breaks. */
async function failures(checks: ConformanceCheck[]): Promise<string[]> {
  const failed: string[] = [];
  for (const check of checks) {
    try {
      await check.run();
    } catch (error) {
      expect(error).toBeInstanceOf(ConformanceError);
      failed.push(check.name);
    }
  }
  return failed;
}

function brokenSink(breakIt: (sink: ReturnType<typeof keyedSink>['sink']) => Partial<Sink<Row>>) {
  return sinkConformance({
    create: async () => {
      const t = keyedSink();
      return { sink: { ...t.sink, ...breakIt(t.sink) } as Sink<Row>, rows: t.rows };
    },
  });
}

describe('the sink suite fails broken sinks', () => {
  it('a sink that commits every batch (checkpoint before the commit batch)', async () => {
    const failed = await failures(
      brokenSink((sink) => ({
        write: (batch: Batch<Row>) => sink.write({ ...batch, meta: { ...batch.meta, commit: true } }),
      })),
    );
    expect(failed).toContain('commits rows and position together, only at the commit batch');
  });

  it('a sink whose abort rolls back nothing', async () => {
    const failed = await failures(brokenSink(() => ({ abort: async () => undefined })));
    expect(failed).toContain('abort rolls back the open unit; the sink goes on afterwards');
  });

  it("a sink whose abort(stream) rolls back every stream's open unit", async () => {
    const failed = await failures(brokenSink((sink) => ({ abort: (error: Error) => sink.abort!(error) })));
    expect(failed).toEqual(["aborting one stream keeps the other stream's open unit"]);
  });

  it('a sink that appends instead of applying by key (replay not idempotent)', async () => {
    const failed = await failures(
      sinkConformance({
        create: async () => {
          const sink = memorySink();
          return { sink, rows: async (stream) => sink.rowsOf(stream) };
        },
      }),
    );
    expect(failed).toContain('replaying a committed unit changes nothing (idempotent)');
  });

  it('a load log that never records a failure', async () => {
    const records = new Map<string, string>();
    const failed = await failures(
      brokenSink((sink) => ({
        write: async (batch: Batch<Row>) => {
          const result = await sink.write(batch);
          if (result.committed) records.set(batch.meta.source!, 'loaded');
          return result;
        },
        loadLog: {
          list: async (stream, sources) =>
            (sources ?? [...records.keys()])
              .filter((s) => records.has(s))
              .map((source) => ({
                stream,
                source,
                etag: null,
                size: null,
                kind: null,
                status: records.get(source) as 'loaded',
                finishedAt: null,
                error: null,
              })),
          markArchived: async (_stream, source) => {
            records.set(source, 'archived');
          },
        },
      })),
    );
    expect(failed).toEqual(['a load log records committed units loaded and aborted ones failed']);
  });
});

describe('the source suite fails broken sources', () => {
  it('a source that ignores its checkpoint', async () => {
    const failed = await failures(
      sourceConformance({
        create: async (f) => {
          const source = memoryStreams(f);
          return {
            source: {
              ...source,
              read: (context) => source.read({ ...context, checkpoint: async () => null }),
            },
          };
        },
      }),
    );
    expect(failed).toContain('resumes right after a committed position');
  });

  it('a source that drops the last unit, and one whose only() reads every stream', async () => {
    const dropped = await failures(
      sourceConformance({
        create: async (f) => ({
          source: memoryStreams(f.map((s) => ({ ...s, units: s.units.slice(0, -1) }))),
        }),
      }),
    );
    expect(dropped).toContain('reads every row of every unit in order, each unit ending with a commit batch');
    const leaky = await failures(
      sourceConformance({
        create: async (f) => {
          const source = memoryStreams(f);
          return { source: { ...source, only: () => source } };
        },
      }),
    );
    expect(leaky).toEqual(['only(stream) reads that stream alone']);
  });
});
