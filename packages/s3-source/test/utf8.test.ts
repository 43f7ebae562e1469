import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { Utf8Validator } from '../src/stages.js';

async function validate(chunks: Buffer[]): Promise<{ ok: boolean; line?: number; offset?: number }> {
  let failure: { line: number; offset: number } | undefined;
  const validator = new Utf8Validator((line, offset) => {
    failure = { line, offset };
    return new Error(`invalid at ${line}`);
  });
  try {
    await pipeline(Readable.from(chunks), validator, new Writable({ write: (_c, _e, cb) => cb() }));
    return { ok: true };
  } catch {
    return { ok: false, ...failure };
  }
}

describe('Utf8Validator', () => {
  it('accepts multi-byte characters split across chunks', async () => {
    const text = Buffer.from('id,name\n1,Nyahururu – Ol Kalou 🚀\n');
    const cut = text.indexOf(0xf0) + 2; // inside the 4-byte emoji
    expect(await validate([text.subarray(0, cut), text.subarray(cut)])).toEqual({ ok: true });
  });

  it('names the line of the first invalid byte', async () => {
    const text = Buffer.from('id,name\n1,ok\n2,bad XX here\n');
    const at = text.indexOf('XX');
    text[at] = 0xff;
    text[at + 1] = 0xfe;
    expect(await validate([text.subarray(0, 10), text.subarray(10)])).toEqual({
      ok: false,
      line: 3,
      offset: at,
    });
  });

  it('rejects a truncated sequence at the end of the file', async () => {
    expect((await validate([Buffer.from([0x61, 0x0a, 0xe2, 0x82])])).ok).toBe(false);
  });
});
