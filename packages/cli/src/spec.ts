import type { Row, Transform } from '@tributary/core';
import type { ColumnSpec, TargetTable } from '@tributary/pg-sink';
import type { StreamDefinition } from '@tributary/s3-source';

/**
 * One stream as the runner applies it: where its files are, where its rows go, and the
 * transforms between. A config file stream and a tickets dataset both become one of these.
 */
export interface StreamSpec {
  /** The stream id (`<source>/<dataset>`): checkpoint key, status, logs. */
  id: string;
  /** The S3 stream (its `id` is the spec's). `lateFiles`/`replayFrom` are set by the runner. */
  source: StreamDefinition;
  target: TargetTable;
  /** Fresh transforms for each run (a transform may keep state within a run). */
  transforms: () => Transform<Row, Row>[];
  /**
   * The columns of the target table to create, from a file's header (after the transforms), when
   * `target.createTable` is set without `columns`: the first pending file's header is read.
   */
  columnsFromHeader?: (header: readonly string[]) => ColumnSpec[];
}
