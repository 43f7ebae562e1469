import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { Row } from '@tributary/core';

/** The JSON parsers of the row path: JSON lines, and JSON values (arrays or concatenated). */

/**
 * Splits JSON lines: one parsed object per non-empty line, with its line number. A UTF-8 BOM is
 * dropped, CRLF and LF both end a line.
 */
export class JsonLinesParser extends Transform {
  private readonly decoder = new StringDecoder('utf8');
  private rest = '';
  private line = 0;
  private first = true;

  constructor() {
    super({ readableObjectMode: true, readableHighWaterMark: 1024 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let text = this.rest + this.decoder.write(chunk);
    if (this.first && text.length) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      this.first = false;
    }
    let start = 0;
    let newline = text.indexOf('\n', start);
    try {
      while (newline >= 0) {
        this.parseLine(text.slice(start, newline));
        start = newline + 1;
        newline = text.indexOf('\n', start);
      }
    } catch (error) {
      callback(error as Error);
      return;
    }
    this.rest = text.slice(start);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    try {
      const tail = this.rest + this.decoder.end();
      if (tail.length) this.parseLine(tail);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  private parseLine(raw: string): void {
    this.line++;
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      const position = /position (\d+)/.exec((error as Error).message);
      throw Object.assign(new Error((error as Error).message), {
        jsonLine: this.line,
        jsonColumn: position ? Number(position[1]) + 1 : 1,
      });
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw Object.assign(new Error('a JSON line must hold an object'), {
        jsonLine: this.line,
        jsonColumn: 1,
      });
    }
    this.push({ record: value, line: this.line });
  }
}

export interface ParsedRecord {
  record: Row;
  line: number;
}

/**
 * `format: 'json'`: a JSON array of objects, or objects one after another (JSON lines, or
 * concatenated). Streamed element by element: only the element being read is held (invariant 7).
 */
export class JsonValuesParser extends Transform {
  private readonly decoder = new StringDecoder('utf8');
  /** Text of the element in progress, from earlier chunks. */
  private pending = '';
  private mode: 'start' | 'array' | 'sequence' | 'end' = 'start';
  private depth = 0;
  private inString = false;
  private escape = false;
  private line = 1;
  private column = 0;
  private elementLine = 1;
  private first = true;
  private afterElement = false;

  constructor() {
    super({ readableObjectMode: true, readableHighWaterMark: 1024 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.scan(this.decoder.write(chunk));
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.scan(this.decoder.end());
      if (this.depth > 0) throw this.fail('the file ends inside a JSON value', this.elementLine, 1);
      if (this.mode === 'array') throw this.fail('the JSON array is not closed', this.line, this.column);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  private fail(message: string, line: number, column: number): Error {
    return Object.assign(new Error(message), { jsonLine: line, jsonColumn: Math.max(1, column) });
  }

  private scan(input: string): void {
    let text = input;
    if (this.first && text.length) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      this.first = false;
    }
    let start = this.depth > 0 ? 0 : -1;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      this.column++;
      if (c === 10) {
        this.line++;
        this.column = 0;
      }
      if (this.depth > 0) {
        if (this.inString) {
          if (this.escape) this.escape = false;
          else if (c === 92) this.escape = true;
          else if (c === 34) this.inString = false;
        } else if (c === 34) this.inString = true;
        else if (c === 123 || c === 91) this.depth++;
        else if (c === 125 || c === 93) {
          this.depth--;
          if (this.depth === 0) {
            this.element(this.pending + text.slice(start, i + 1));
            this.pending = '';
            start = -1;
            this.afterElement = true;
          }
        }
        continue;
      }
      if (c === 10 || c === 32 || c === 9 || c === 13) continue;
      if (this.mode === 'start') {
        if (c === 91) {
          this.mode = 'array';
          continue;
        }
        this.mode = 'sequence';
      }
      if (this.mode === 'end') throw this.fail('text after the JSON array', this.line, this.column);
      if (this.mode === 'array') {
        if (c === 44 && this.afterElement) {
          this.afterElement = false;
          continue;
        }
        if (c === 93) {
          this.mode = 'end';
          continue;
        }
        if (this.afterElement)
          throw this.fail("expected ',' or ']' after an element", this.line, this.column);
      }
      if (c !== 123) throw this.fail('each element must be a JSON object', this.line, this.column);
      this.depth = 1;
      this.afterElement = false;
      start = i;
      this.elementLine = this.line;
    }
    if (start >= 0) this.pending += text.slice(start);
  }

  private element(text: string): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw this.fail((error as Error).message, this.elementLine, 1);
    }
    this.push({ record: value as Row, line: this.elementLine });
  }
}
