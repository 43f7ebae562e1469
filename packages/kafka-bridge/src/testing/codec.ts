/**
 * Kafka's primitive types: big-endian integers, int16-prefixed strings, int32-prefixed bytes
 * and arrays with -1 for null (the classic encoding), and the compact types of flexible
 * versions (unsigned-varint lengths plus one, 0 for null) with their tagged-field sections.
 * The broker reads tagged fields it does not know and skips them, as Kafka does (KIP-482).
 */

/** Thrown when a request is shorter than its declared layout: the connection is dropped. */
export class MalformedRequestError extends Error {
  override readonly name = 'MalformedRequestError';
}

export class Reader {
  private offset = 0;

  constructor(private readonly buffer: Buffer) {}

  private need(bytes: number): void {
    if (this.offset + bytes > this.buffer.length) {
      throw new MalformedRequestError(
        `need ${bytes} bytes at ${this.offset}, request has ${this.buffer.length}`,
      );
    }
  }

  int8(): number {
    this.need(1);
    const value = this.buffer.readInt8(this.offset);
    this.offset += 1;
    return value;
  }

  boolean(): boolean {
    return this.int8() !== 0;
  }

  int16(): number {
    this.need(2);
    const value = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  int32(): number {
    this.need(4);
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  /** Offsets, producer ids and timestamps all stay far below 2^53 in a test broker. */
  int64(): number {
    this.need(8);
    const value = this.buffer.readBigInt64BE(this.offset);
    this.offset += 8;
    return Number(value);
  }

  nullableString(): string | null {
    const length = this.int16();
    if (length < 0) return null;
    this.need(length);
    const value = this.buffer.toString('utf8', this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  string(): string {
    return this.nullableString() ?? '';
  }

  nullableBytes(): Buffer | null {
    const length = this.int32();
    if (length < 0) return null;
    this.need(length);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  bytes(): Buffer {
    return this.nullableBytes() ?? Buffer.alloc(0);
  }

  nullableArray<T>(readItem: (reader: Reader) => T): T[] | null {
    const count = this.int32();
    if (count < 0) return null;
    const items: T[] = [];
    for (let i = 0; i < count; i++) items.push(readItem(this));
    return items;
  }

  array<T>(readItem: (reader: Reader) => T): T[] {
    return this.nullableArray(readItem) ?? [];
  }

  /** Unsigned LEB128 varint, as compact lengths and tag numbers use. */
  uvarint(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      this.need(1);
      const byte = this.buffer[this.offset++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new MalformedRequestError(`unsigned varint longer than 5 bytes at ${this.offset}`);
  }

  compactNullableString(): string | null {
    const length = this.uvarint() - 1;
    if (length < 0) return null;
    this.need(length);
    const value = this.buffer.toString('utf8', this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  compactString(): string {
    return this.compactNullableString() ?? '';
  }

  compactNullableBytes(): Buffer | null {
    const length = this.uvarint() - 1;
    if (length < 0) return null;
    this.need(length);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  compactBytes(): Buffer {
    return this.compactNullableBytes() ?? Buffer.alloc(0);
  }

  compactNullableArray<T>(readItem: (reader: Reader) => T): T[] | null {
    const count = this.uvarint() - 1;
    if (count < 0) return null;
    const items: T[] = [];
    for (let i = 0; i < count; i++) items.push(readItem(this));
    return items;
  }

  compactArray<T>(readItem: (reader: Reader) => T): T[] {
    return this.compactNullableArray(readItem) ?? [];
  }

  /** Skips a tagged-field section: this broker reads none of the optional tags. */
  taggedFields(): void {
    const count = this.uvarint();
    for (let i = 0; i < count; i++) {
      this.uvarint(); // tag
      const size = this.uvarint();
      this.need(size);
      this.offset += size;
    }
  }
}

export class Writer {
  private buffer = Buffer.allocUnsafe(256);
  private length = 0;

  private ensure(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + bytes));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }

  int8(value: number): this {
    this.ensure(1);
    this.buffer.writeInt8(value, this.length);
    this.length += 1;
    return this;
  }

  boolean(value: boolean): this {
    return this.int8(value ? 1 : 0);
  }

  int16(value: number): this {
    this.ensure(2);
    this.buffer.writeInt16BE(value, this.length);
    this.length += 2;
    return this;
  }

  int32(value: number): this {
    this.ensure(4);
    this.buffer.writeInt32BE(value, this.length);
    this.length += 4;
    return this;
  }

  int64(value: number): this {
    this.ensure(8);
    this.buffer.writeBigInt64BE(BigInt(value), this.length);
    this.length += 8;
    return this;
  }

  raw(bytes: Buffer): this {
    this.ensure(bytes.length);
    bytes.copy(this.buffer, this.length);
    this.length += bytes.length;
    return this;
  }

  nullableString(value: string | null): this {
    if (value === null) return this.int16(-1);
    const bytes = Buffer.from(value, 'utf8');
    return this.int16(bytes.length).raw(bytes);
  }

  string(value: string): this {
    return this.nullableString(value);
  }

  bytes(value: Buffer | null): this {
    if (value === null) return this.int32(-1);
    return this.int32(value.length).raw(value);
  }

  array<T>(items: readonly T[], writeItem: (writer: this, item: T) => void): this {
    this.int32(items.length);
    for (const item of items) writeItem(this, item);
    return this;
  }

  uvarint(value: number): this {
    let rest = value;
    while (rest > 0x7f) {
      this.int8((((rest & 0x7f) | 0x80) << 24) >> 24);
      rest = Math.floor(rest / 128);
    }
    return this.int8((rest << 24) >> 24);
  }

  compactNullableString(value: string | null): this {
    if (value === null) return this.uvarint(0);
    const bytes = Buffer.from(value, 'utf8');
    return this.uvarint(bytes.length + 1).raw(bytes);
  }

  compactString(value: string): this {
    return this.compactNullableString(value);
  }

  compactBytes(value: Buffer | null): this {
    if (value === null) return this.uvarint(0);
    return this.uvarint(value.length + 1).raw(value);
  }

  compactArray<T>(items: readonly T[], writeItem: (writer: this, item: T) => void): this {
    this.uvarint(items.length + 1);
    for (const item of items) writeItem(this, item);
    return this;
  }

  /** An empty tagged-field section: this broker sends no optional tags. */
  taggedFields(): this {
    return this.uvarint(0);
  }

  toBuffer(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

/** Zig-zag varint, as record fields inside a RecordBatch v2 use. */
export function writeVarint(writer: Writer, value: number): Writer {
  let zigzag = (value << 1) ^ (value >> 31);
  zigzag >>>= 0;
  while (zigzag > 0x7f) {
    writer.int8((((zigzag & 0x7f) | 0x80) << 24) >> 24);
    zigzag >>>= 7;
  }
  return writer.int8((zigzag << 24) >> 24);
}

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven. Only control batches
// the broker writes itself need it: produced batches keep the CRC their producer computed.
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
