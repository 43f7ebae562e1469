/**
 * SQL text helpers. Identifiers from configuration or CSV headers are always quoted here, values
 * never reach SQL text: they travel as parameters or COPY data (invariant 9).
 */

import { createHash } from 'node:crypto';
import { TributaryError } from '@tributary/core';

/** Quotes one identifier the way PostgreSQL's `quote_ident` does, unconditionally. */
export function quoteIdent(name: string): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new TypeError('quoteIdent(): an identifier must be a non-empty string');
  }
  if (name.includes('\u0000')) throw new TypeError('quoteIdent(): an identifier cannot contain NUL');
  return `"${name.replaceAll('"', '""')}"`;
}

/** `"schema"."name"`, both parts quoted. */
export function qualifiedName(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/**
 * A connection string with its password replaced by `***` (also `password=` in key/value form
 * and `?password=` parameters), safe for logs and error messages (manual §12).
 */
export function redactUrl(connectionString: string): string {
  let text = connectionString.replace(/(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)/gi, '$1***');
  try {
    const url = new URL(text);
    if (url.password) {
      url.password = '***';
      text = url.toString();
    }
  } catch {
    // Not a URL: key/value form, handled above; also catch user:pass@host fragments.
    text = text.replace(/(\/\/[^:/@\s]+:)[^@\s]+@/g, '$1***@');
  }
  return text;
}

/** Replaces every password-looking part of any connection string inside a message. */
export function redactSecrets(message: string): string {
  return message
    .replace(/(postgres(?:ql)?:\/\/[^:/@\s]+:)[^@\s]+@/gi, '$1***@')
    .replace(/(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)/gi, '$1***');
}

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * One value in COPY text format: `\N` for null, backslash escapes for the four characters
 * that would otherwise end a field or a row. Non-strings are rendered as PostgreSQL reads them.
 */
export function copyTextValue(value: unknown): string {
  if (value === null || value === undefined) return '\\N';
  let text: string;
  if (typeof value === 'string') text = value;
  else if (value instanceof Date) text = value.toISOString();
  else if (typeof value === 'object') text = JSON.stringify(value);
  else text = String(value);
  return COPY_SPECIAL.test(text) ? text.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]!) : text;
}

/**
 * An error as stored in the control schema and shown to operators: a TributaryError's code, its
 * message, secrets redacted, bounded.
 */
export function errorText(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(error);
  const code = error instanceof TributaryError ? `${error.code}: ` : '';
  return redactSecrets(`${code}${message}`).slice(0, 4000);
}

const statementNames = new Map<string, string>();

/**
 * A name for a statement the sink runs once per file (the merge, the checkpoint + load row):
 * prepared once per connection, its parse and plan are not repeated for every file. Derived
 * from the text, so one name never stands for two statements.
 */
export function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    if (statementNames.size >= 1000) statementNames.clear();
    name = `tributary_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return name;
}
