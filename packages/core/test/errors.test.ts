import { describe, expect, it } from 'vitest';
import { isAbortError, isTransient, markExhausted, TributaryError } from '../src/index.js';

// A table pins the classification (smithy's service-error classification is the model): each
// row is a failure as a driver reports it, and whether trying again may succeed.
const node = (code: string) => Object.assign(new Error(code), { code });
const pg = (code: string, message = 'pg error') =>
  Object.assign(new Error(message), { code, severity: 'ERROR' });
const aws = (name: string, status: number, retryable?: object) =>
  Object.assign(new Error(name), {
    name,
    $metadata: { httpStatusCode: status },
    ...(retryable ? { $retryable: retryable } : {}),
  });

const table: [string, unknown, boolean][] = [
  // Node sockets and DNS
  ['ECONNRESET', node('ECONNRESET'), true],
  ['ECONNREFUSED', node('ECONNREFUSED'), true],
  ['EPIPE', node('EPIPE'), true],
  ['ETIMEDOUT', node('ETIMEDOUT'), true],
  ['EAI_AGAIN (DNS hiccup)', node('EAI_AGAIN'), true],
  ['undici socket', node('UND_ERR_SOCKET'), true],
  ['ENOTFOUND (host does not resolve: configuration)', node('ENOTFOUND'), false],
  ['EACCES', node('EACCES'), false],
  ['ENOENT', node('ENOENT'), false],
  // PostgreSQL SQLSTATEs
  ['40001 serialization_failure', pg('40001'), true],
  ['40P01 deadlock_detected', pg('40P01'), true],
  ['53300 too_many_connections', pg('53300'), true],
  ['57P01 admin_shutdown', pg('57P01'), true],
  ['57P02 crash_shutdown', pg('57P02'), true],
  ['57P03 cannot_connect_now', pg('57P03'), true],
  ['08006 connection_failure', pg('08006'), true],
  ['08003 connection_does_not_exist', pg('08003'), true],
  ['08P01 protocol_violation', pg('08P01'), false],
  ['23505 unique_violation', pg('23505'), false],
  ['22P02 invalid_text_representation', pg('22P02'), false],
  ['42P01 undefined_table', pg('42P01'), false],
  ['42501 insufficient_privilege', pg('42501'), false],
  ['57014 query_canceled', pg('57014'), false],
  ['pg: connection terminated unexpectedly', new Error('Connection terminated unexpectedly'), true],
  // AWS SDK / S3
  ['S3 500 InternalError', aws('InternalError', 500), true],
  ['S3 502', aws('BadGateway', 502), true],
  ['S3 503 ServiceUnavailable', aws('ServiceUnavailable', 503), true],
  ['S3 503 SlowDown', aws('SlowDown', 503), true],
  ['S3 504', aws('GatewayTimeout', 504), true],
  ['429 TooManyRequests', aws('TooManyRequestsException', 429), true],
  ['ThrottlingException (400)', aws('ThrottlingException', 400), true],
  ['RequestTimeout (400)', aws('RequestTimeout', 400), true],
  ['SDK $retryable flag', aws('Whatever', 400, { throttling: false }), true],
  ['501 NotImplemented', aws('NotImplemented', 501), false],
  ['505 HTTP version', aws('HttpVersionNotSupported', 505), false],
  ['403 AccessDenied', aws('AccessDenied', 403), false],
  ['404 NoSuchKey', aws('NoSuchKey', 404), false],
  ['404 NoSuchBucket', aws('NoSuchBucket', 404), false],
  ['400 InvalidAccessKeyId', aws('InvalidAccessKeyId', 400), false],
  ['412 PreconditionFailed (etag changed)', aws('PreconditionFailed', 412), false],
  // Ours
  ['TributaryError retriable', new TributaryError('TRANSIENT', 'x', { retriable: true }), true],
  ['TributaryError permanent', new TributaryError('MALFORMED_ROW', 'x'), false],
  [
    'permanent wrapper over a transient cause',
    new TributaryError('SINK_FAILED', 'x', { cause: node('ECONNRESET') }),
    false,
  ],
  ['plain wrapper over a transient cause', new Error('outer', { cause: node('ECONNRESET') }), true],
  ['exhausted transient error', markExhausted(node('ECONNRESET')), false],
  ['a string', 'ECONNRESET', false],
  ['undefined', undefined, false],
];

describe('isTransient', () => {
  it.each(table)('%s → %s', (_name, error, expected) => {
    expect(isTransient(error)).toBe(expected);
  });
});

describe('isAbortError', () => {
  it.each([
    ['AbortError', Object.assign(new Error('aborted'), { name: 'AbortError' }), true],
    ['ABORTED', new TributaryError('ABORTED', 'stopped'), true],
    [
      'wrapped AbortError',
      new Error('x', { cause: Object.assign(new Error('a'), { name: 'AbortError' }) }),
      true,
    ],
    ['ECONNRESET', node('ECONNRESET'), false],
  ] as [string, unknown, boolean][])('%s → %s', (_name, error, expected) => {
    expect(isAbortError(error)).toBe(expected);
  });
});
