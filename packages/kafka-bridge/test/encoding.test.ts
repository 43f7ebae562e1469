import { describe, expect, it } from 'vitest';
import {
  createDecoder,
  createEncoder,
  rabinFingerprint,
  type SchemaRegistryClient,
  schemaFromColumns,
} from '../src/index.js';

describe('encoding', () => {
  it('computes CRC-64-AVRO fingerprints (Avro spec vectors)', () => {
    // Spec: fingerprint64("int") = 0x7275d51a3f395c8f, written little-endian.
    expect(rabinFingerprint('"int"').toString('hex')).toBe('8f5c393f1ad57572');
  });

  it('round-trips single-object Avro with the schema found by fingerprint', async () => {
    const type = schemaFromColumns('ticket', ['ticket_id', 'region', 'is alarm']);
    const encoder = await createEncoder({ kind: 'avro', type });
    const value = encoder.encode({
      ticket_id: 'INC1',
      region: null,
      'is alarm': undefined,
      extra: 'ignored',
    });
    expect(value.subarray(0, 2)).toEqual(Buffer.from([0xc3, 0x01]));
    expect(value.subarray(2, 10).toString('hex')).toBe(encoder.schemaId);
    const schemas = new Map([[encoder.schemaId!, encoder.schema!]]);
    const decode = createDecoder({ schemas: async (fp) => schemas.get(fp) });
    expect(await decode(value)).toEqual({ ticket_id: 'INC1', region: null, is_alarm: null });
  });

  it('uses the Confluent wire format with a registry', async () => {
    const registered: string[] = [];
    const registry: SchemaRegistryClient = {
      register: async (_subject, schema) => registered.push(schema),
      getSchema: async (id) => registered[id - 1]!,
    };
    const type = schemaFromColumns('row', ['a']);
    const encoder = await createEncoder({ kind: 'confluent', type, registry, subject: 't-value' });
    const value = encoder.encode({ a: 'x' });
    expect(value[0]).toBe(0);
    expect(value.readInt32BE(1)).toBe(1);
    expect(await createDecoder({ registry })(value)).toEqual({ a: 'x' });
  });

  it('JSON values, and poison values fail with POISON_MESSAGE', async () => {
    const encoder = await createEncoder({ kind: 'json' });
    const decode = createDecoder();
    expect(await decode(encoder.encode({ a: '1' }))).toEqual({ a: '1' });
    await expect(decode(Buffer.from('not json'))).rejects.toMatchObject({ code: 'POISON_MESSAGE' });
    await expect(decode(null)).rejects.toMatchObject({ code: 'POISON_MESSAGE' });
    const unknownSchema = Buffer.concat([Buffer.from([0xc3, 0x01]), Buffer.alloc(8), Buffer.from([2, 0x41])]);
    await expect(createDecoder({ schemas: async () => undefined })(unknownSchema)).rejects.toMatchObject({
      code: 'POISON_MESSAGE',
    });
  });
});
