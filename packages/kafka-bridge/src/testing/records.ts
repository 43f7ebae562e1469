import { crc32c, MalformedRequestError, Writer, writeVarint } from './codec.js';

/**
 * RecordBatch v2 (magic 2) header layout. Batches are stored as the producer's bytes; the broker
 * only reads the header and overwrites the base offset (bytes 0-7), which the CRC does not cover
 * (it starts at the attributes, byte 21), so a stored batch stays valid.
 */
const BASE_OFFSET = 0;
const LENGTH = 8;
const MAGIC = 16;
const CRC = 17;
const ATTRIBUTES = 21;
const LAST_OFFSET_DELTA = 23;
const MAX_TIMESTAMP = 35;
const PRODUCER_ID = 43;
const PRODUCER_EPOCH = 51;
const BASE_SEQUENCE = 53;
const RECORD_COUNT = 57;
export const RECORD_BATCH_HEADER_SIZE = 61;

const TRANSACTIONAL_FLAG = 0x10;
const CONTROL_FLAG = 0x20;

export interface BatchHeader {
  /** The whole batch, a private copy the broker may rewrite. */
  bytes: Buffer;
  attributes: number;
  lastOffsetDelta: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
  transactional: boolean;
}

/** Splits a produced record set into batches. Legacy message sets (magic 0/1) are refused. */
export function parseRecordSet(recordSet: Buffer): BatchHeader[] {
  const batches: BatchHeader[] = [];
  let offset = 0;
  while (offset < recordSet.length) {
    if (recordSet.length - offset < RECORD_BATCH_HEADER_SIZE) {
      throw new MalformedRequestError('truncated record batch header');
    }
    const total = recordSet.readInt32BE(offset + LENGTH) + 12;
    if (offset + total > recordSet.length) throw new MalformedRequestError('truncated record batch');
    const magic = recordSet.readInt8(offset + MAGIC);
    if (magic !== 2) throw new MalformedRequestError(`unsupported record batch magic ${magic}`);
    const bytes = Buffer.from(recordSet.subarray(offset, offset + total));
    const attributes = bytes.readInt16BE(ATTRIBUTES);
    batches.push({
      bytes,
      attributes,
      lastOffsetDelta: bytes.readInt32BE(LAST_OFFSET_DELTA),
      maxTimestamp: Number(bytes.readBigInt64BE(MAX_TIMESTAMP)),
      producerId: Number(bytes.readBigInt64BE(PRODUCER_ID)),
      producerEpoch: bytes.readInt16BE(PRODUCER_EPOCH),
      baseSequence: bytes.readInt32BE(BASE_SEQUENCE),
      recordCount: bytes.readInt32BE(RECORD_COUNT),
      transactional: (attributes & TRANSACTIONAL_FLAG) !== 0,
    });
    offset += total;
  }
  return batches;
}

export function setBaseOffset(batch: Buffer, baseOffset: number): void {
  batch.writeBigInt64BE(BigInt(baseOffset), BASE_OFFSET);
}

export type ControlType = 'abort' | 'commit';

/**
 * The end-of-transaction marker written into every partition a transaction touched: a control
 * batch (attributes transactional + control) holding one record whose key is
 * `int16 version 0, int16 type` (0 abort, 1 commit) and value `int16 version 0, int32 coordinator epoch`.
 */
export function controlBatch(options: {
  baseOffset: number;
  producerId: number;
  producerEpoch: number;
  type: ControlType;
  timestamp: number;
}): Buffer {
  const key = new Writer()
    .int16(0)
    .int16(options.type === 'commit' ? 1 : 0)
    .toBuffer();
  const value = new Writer().int16(0).int32(0).toBuffer();

  const body = new Writer();
  body.int8(0); // record attributes
  writeVarint(body, 0); // timestamp delta
  writeVarint(body, 0); // offset delta
  writeVarint(body, key.length).raw(key);
  writeVarint(body, value.length).raw(value);
  writeVarint(body, 0); // header count
  const recordBody = body.toBuffer();
  const record = writeVarint(new Writer(), recordBody.length).raw(recordBody).toBuffer();

  const batch = new Writer()
    .int64(options.baseOffset)
    .int32(RECORD_BATCH_HEADER_SIZE - 12 + record.length)
    .int32(0) // partition leader epoch
    .int8(2) // magic
    .int32(0) // crc, filled below
    .int16(TRANSACTIONAL_FLAG | CONTROL_FLAG)
    .int32(0) // last offset delta
    .int64(options.timestamp)
    .int64(options.timestamp)
    .int64(options.producerId)
    .int16(options.producerEpoch)
    .int32(-1) // base sequence
    .int32(1) // record count
    .raw(record)
    .toBuffer();
  const bytes = Buffer.from(batch);
  bytes.writeUInt32BE(crc32c(bytes.subarray(ATTRIBUTES)), CRC);
  return bytes;
}
