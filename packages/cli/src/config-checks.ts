import {
  type ExtractStreamConfig,
  KEY_PATTERNS,
  type StreamConfig,
  type TributaryConfig,
} from './config-schema.js';

/**
 * The config checks a schema cannot express: what each stream owns in S3 (invariant 11), unique
 * ids, and extract streams whose files a load stream must be able to read.
 */

/** Where a stream reads, archives and parks late files: each must belong to it alone. */
export interface StreamSpaces {
  id: string;
  bucket: string;
  listing: string[];
  processed: string;
  late: string;
  rejected: string;
}

export function streamSpaces(stream: StreamConfig, env: NodeJS.ProcessEnv = process.env): StreamSpaces {
  // A discover template claims its whole folder until it is expanded.
  const prefix = stream.source.prefix ?? stream.discover?.under ?? '';
  const listing = stream.source.layout === 'qlik' ? [prefix, `${prefix.slice(0, -1)}__ct/`] : [prefix];
  return {
    id: stream.id,
    bucket: stream.source.bucket ?? env.S3_BUCKET ?? '',
    listing,
    processed: stream.source.processedPrefix ?? `${prefix}processed/`,
    late: stream.source.latePrefix ?? `${prefix}late/`,
    rejected: stream.source.rejectedPrefix ?? `${prefix}rejected/`,
  };
}

const overlaps = (a: string, b: string) => a.startsWith(b) || b.startsWith(a);

/**
 * Checks the schema cannot express: unique ids, a bucket for every stream, and no two streams
 * sharing a listing, archive or late prefix (invariant 11: an archive copy is never overwritten
 * by another stream's file and a replay reads only its own files).
 */
export function semanticProblems(
  config: TributaryConfig,
  env: NodeJS.ProcessEnv,
): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  const seen = new Map<string, number>();
  const spaces = config.streams.map((stream) => streamSpaces(stream, env));
  for (const [i, stream] of config.streams.entries()) {
    const first = seen.get(stream.id);
    if (first !== undefined) {
      problems.push({ path: `streams[${i}].id`, message: `"${stream.id}" is also streams[${first}].id` });
    }
    seen.set(stream.id, i);
    if (!spaces[i]!.bucket) {
      problems.push({
        path: `streams[${i}].source.bucket`,
        message: 'is required when S3_BUCKET is not set',
      });
    }
    if (stream.discover) {
      if (stream.source.prefix) {
        problems.push({
          path: `streams[${i}].source.prefix`,
          message: 'is <discover.under><table>/ for a template: leave it out',
        });
      }
      for (const [path, value] of [
        ['id', stream.id],
        ['target.table', stream.target.table],
      ] as const) {
        if (!value.includes('{table}')) {
          problems.push({
            path: `streams[${i}].${path}`,
            message: 'must contain {table} in a discover template',
          });
        }
      }
    } else {
      if (!stream.source.prefix)
        problems.push({ path: `streams[${i}].source.prefix`, message: 'is required' });
      if (stream.id.includes('{') || stream.target.table.includes('{')) {
        problems.push({ path: `streams[${i}].id`, message: '{table} is only for streams with discover' });
      }
    }
    if (stream.source.layout === 'changes' && !stream.source.keyPattern) {
      problems.push({
        path: `streams[${i}].source.keyPattern`,
        message: `is required for layout 'changes' (one of ${KEY_PATTERNS.join(', ')})`,
      });
    }
    if (stream.target.versionColumn && stream.source.layout === 'qlik') {
      problems.push({
        path: `streams[${i}].target.versionColumn`,
        message: 'is target.qlik.versionColumn for layout qlik',
      });
    }
    if (stream.target.mode === 'snapshot' && stream.source.layout === 'qlik') {
      problems.push({
        path: `streams[${i}].target.mode`,
        message: 'snapshot is for files that each hold the whole table; a Qlik layout has its own reloads',
      });
    }
    if (stream.target.qlik && stream.source.layout !== 'qlik') {
      problems.push({
        path: `streams[${i}].target.qlik`,
        message: "is only for source.layout 'qlik'",
      });
    }
    if (stream.source.maxRejected !== undefined && stream.source.onError !== 'skip-row') {
      problems.push({
        path: `streams[${i}].source.maxRejected`,
        message: "applies to onError: 'skip-row' only",
      });
    }
  }
  for (let i = 0; i < spaces.length; i++) {
    for (let j = i + 1; j < spaces.length; j++) {
      const a = spaces[i]!;
      const b = spaces[j]!;
      if (a.bucket !== b.bucket) continue;
      // A template leaves out the table folders explicit streams already claim.
      if (config.streams[i]!.discover || config.streams[j]!.discover) continue;
      const aAll = [
        ...a.listing.map((p) => ['listing', p]),
        ['archive', a.processed],
        ['late', a.late],
        ['rejected', a.rejected],
      ];
      const bAll = [
        ...b.listing.map((p) => ['listing', p]),
        ['archive', b.processed],
        ['late', b.late],
        ['rejected', b.rejected],
      ];
      const clash = aAll.flatMap(([ka, pa]) =>
        bAll.filter(([, pb]) => overlaps(pa!, pb!)).map(([kb, pb]) => `${ka} ${pa} overlaps ${kb} ${pb}`),
      );
      if (clash.length) {
        problems.push({
          path: `streams[${j}].source`,
          message: `streams "${a.id}" and "${b.id}" share s3://${a.bucket} prefixes: ${clash[0]}`,
        });
      }
    }
  }
  return problems;
}

/** The bucket of an extract stream's files. */
export function extractBucket(stream: ExtractStreamConfig, env: NodeJS.ProcessEnv = process.env): string {
  return stream.target.s3.bucket ?? env.S3_BUCKET ?? '';
}

/**
 * Extract streams: ids unique across all streams, a bucket, a watermark when incremental, and no
 * two extracts writing into overlapping folders (their files would interleave in one listing).
 */
export function extractProblems(
  config: TributaryConfig,
  env: NodeJS.ProcessEnv,
  entries: readonly { index: number }[],
): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  const loadIds = new Set(config.streams.map((s) => s.id));
  const seen = new Map<string, number>();
  config.extracts.forEach((stream, i) => {
    const at = `streams[${entries[i]!.index}]`;
    if (loadIds.has(stream.id) || seen.has(stream.id)) {
      problems.push({ path: `${at}.id`, message: `"${stream.id}" is the id of another stream` });
    }
    seen.set(stream.id, i);
    if (!extractBucket(stream, env)) {
      problems.push({ path: `${at}.target.s3.bucket`, message: 'is required when S3_BUCKET is not set' });
    }
    if (stream.source.postgres.mode === 'incremental' && !stream.source.postgres.watermark) {
      problems.push({
        path: `${at}.source.postgres.watermark`,
        message: "is required for mode 'incremental'",
      });
    }
    problems.push(...readerProblems(config, env, stream, at));
    for (let j = 0; j < i; j++) {
      const other = config.extracts[j]!;
      const [a, b] = [stream.target.s3.prefix, other.target.s3.prefix];
      if (extractBucket(stream, env) === extractBucket(other, env) && (a.startsWith(b) || b.startsWith(a))) {
        problems.push({
          path: `${at}.target.s3.prefix`,
          message: `streams "${other.id}" and "${stream.id}" write into overlapping folders ${b} and ${a}`,
        });
      }
    }
  });
  return problems;
}

/**
 * A load stream over an extract's folder must read the names as they are written: the same key
 * pattern and (unless the name carries its zone) the same time zone, else files would be
 * refused as bad keys or, worse, ordered on shifted times.
 */
function readerProblems(
  config: TributaryConfig,
  env: NodeJS.ProcessEnv,
  stream: ExtractStreamConfig,
  at: string,
): { path: string; message: string }[] {
  const { prefix, keyPattern, timeZone } = stream.target.s3;
  return config.streams
    .filter(
      (load) =>
        load.source.prefix === prefix && streamSpaces(load, env).bucket === extractBucket(stream, env),
    )
    .flatMap((load) => {
      const patternDiffers = load.source.keyPattern !== undefined && load.source.keyPattern !== keyPattern;
      const zoneDiffers = keyPattern !== 'YYYYMMDD_HHMM_<TZ>' && load.source.timeZone !== timeZone;
      if (!patternDiffers && !zoneDiffers) return [];
      return [
        {
          path: `${at}.target.s3`,
          message: `stream "${load.id}" reads ${prefix} with keyPattern ${load.source.keyPattern} in ${load.source.timeZone}, but "${stream.id}" writes ${keyPattern} in ${timeZone}`,
        },
      ];
    });
}
