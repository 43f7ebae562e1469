/**
 * One error base class for every Tributary stage (STYLE.md "Options and errors"): a code from a
 * const list, the driver's error kept as `cause`, and a `retriable` flag that retry loops trust
 * only when every error in the cause chain agrees.
 */
export const ErrorCodes = [
  'INVALID_OPTIONS',
  'ABORTED',
  'SOURCE_FAILED',
  'TRANSFORM_FAILED',
  'SINK_FAILED',
  'SCHEMA_DRIFT',
  'MALFORMED_ROW',
  'BAD_KEY',
  'LATE_FILE',
  'ETAG_CHANGED',
  'MISSING_CONSTRAINT',
  'CAST_FAILED',
  'STREAM_LOCKED',
  'FENCED',
  'TRANSIENT',
  'POISON_MESSAGE',
  'STREAMS_FAILED',
  'INTERNAL',
  'REJECT_LIMIT',
] as const;

export type ErrorCode = (typeof ErrorCodes)[number];

/** Where in the input an error was found; rendered as `file:line:column`. */
export interface InputLocation {
  file?: string;
  line?: number;
  column?: number | string;
  record?: number;
}

export interface TributaryErrorOptions {
  cause?: unknown;
  retriable?: boolean;
  stream?: string;
  location?: InputLocation;
}

export class TributaryError extends Error {
  override readonly name: string = 'TributaryError';
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly stream: string | undefined;
  readonly location: InputLocation | undefined;

  constructor(code: ErrorCode, message: string, options: TributaryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.stream = options.stream;
    this.location = options.location;
  }
}

/** The error with its stream set (errors from deeper layers may not know it). */
export function withStream(error: TributaryError, stream: string): TributaryError {
  if (error.stream === stream) return error;
  return new TributaryError(error.code, error.message, {
    cause: error.cause ?? error,
    retriable: error.retriable,
    stream,
    ...(error.location ? { location: error.location } : {}),
  });
}

/** Formats a location the way editors understand it: `file:line:column`. */
export function formatLocation(location: InputLocation | undefined): string {
  if (!location) return '';
  const parts: string[] = [];
  if (location.file) parts.push(location.file);
  if (location.line !== undefined) parts.push(String(location.line));
  if (location.column !== undefined) parts.push(String(location.column));
  return parts.join(':');
}

/** Every error in the `cause` chain, outermost first (bounded against cycles). */
export function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  let current: unknown = error;
  while (current !== undefined && current !== null && chain.length < 16 && !chain.includes(current)) {
    chain.push(current);
    current = (current as { cause?: unknown }).cause;
  }
  return chain;
}

// Node's socket-level errors that mean "the peer went away, try again". ENOTFOUND is not one:
// a host name that does not resolve is a configuration error (EAI_AGAIN is the DNS hiccup).
const TRANSIENT_NODE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
]);

// PostgreSQL SQLSTATEs after which re-running the whole transaction is correct:
// serialization_failure, deadlock_detected, too_many_connections, admin/crash shutdown,
// cannot_connect_now, and class 08 (connection exceptions) except 08P01 (protocol violation).
const TRANSIENT_SQLSTATES = new Set(['40001', '40P01', '53300', '57P01', '57P02', '57P03']);

// HTTP statuses worth another try (smithy's service-error classification): throttling and
// the server-side transient ones. 501 Not Implemented and other 5xx are permanent.
const TRANSIENT_HTTP_STATUSES = new Set([429, 500, 502, 503, 504]);

// Error names (AWS and S3-compatible services) for throttling and server-side timeouts.
const TRANSIENT_ERROR_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'InternalError',
]);

/** Whether an error carries a classification of its own (a code, a status, a specific name). */
function speaks(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return true;
  const { code, name, $metadata } = error as { code?: unknown; name?: unknown; $metadata?: unknown };
  return code !== undefined || $metadata !== undefined || (typeof name === 'string' && name !== 'Error');
}

function isTransientOne(error: unknown): boolean {
  if (error instanceof TributaryError) return error.retriable;
  if (typeof error !== 'object' || error === null) return false;
  const { code, name, $retryable, $metadata } = error as {
    code?: unknown;
    name?: unknown;
    $retryable?: unknown;
    $metadata?: { httpStatusCode?: number };
  };
  if (typeof code === 'string') {
    if (TRANSIENT_NODE_CODES.has(code)) return true;
    if (TRANSIENT_SQLSTATES.has(code) || (/^08[0-9A-Z]{3}$/.test(code) && code !== '08P01')) return true;
  }
  if ($retryable) return true; // AWS SDK v3 marks throttling and transient errors this way
  const status = $metadata?.httpStatusCode;
  if (typeof status === 'number' && TRANSIENT_HTTP_STATUSES.has(status)) return true;
  if (typeof name === 'string' && TRANSIENT_ERROR_NAMES.has(name)) return true;
  const message = (error as { message?: unknown }).message;
  return (
    typeof message === 'string' &&
    /Connection terminated|terminating connection|socket hang up|Client has encountered a connection error/i.test(
      message,
    )
  );
}

/**
 * True when retrying the failed operation may succeed: the outermost error that says anything
 * decides. A TributaryError speaks for itself; otherwise the first driver error in the chain
 * (pg SQLSTATE, Node socket code, AWS SDK retryable flag or status) is classified.
 */
export function isTransient(error: unknown): boolean {
  if (isExhausted(error)) return false;
  for (const e of causeChain(error)) {
    if (e instanceof TributaryError) {
      if (!e.retriable) return false;
      continue;
    }
    if (isTransientOne(e)) return true;
    if (speaks(e)) return false;
    // A plain Error with no code, status or name of its own only wraps: its cause decides.
  }
  return causeChain(error).some((e) => e instanceof TributaryError && e.retriable);
}

export function isAbortError(error: unknown): boolean {
  return causeChain(error).some(
    (e) =>
      (e instanceof TributaryError && e.code === 'ABORTED') ||
      (typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'AbortError'),
  );
}

/** Wraps anything thrown into a TributaryError, keeping the original as `cause`. */
export function toTributaryError(error: unknown, code: ErrorCode, message?: string): TributaryError {
  if (error instanceof TributaryError) return error;
  const text = message ?? (error instanceof Error ? error.message : String(error));
  return new TributaryError(code, text, { cause: error, retriable: isTransient(error) });
}

// Errors a retry layer already retried to the end of its budget (see retry.ts).
const exhaustedErrors = new WeakSet<object>();

/**
 * Marks an error as having used up its retry budget: `isTransient` is false for it from now on,
 * so an outer layer (the pipeline's re-run, a sink's replay) does not multiply the attempts.
 */
export function markExhausted<E>(error: E): E {
  if (typeof error === 'object' && error !== null) exhaustedErrors.add(error);
  return error;
}

/** True when a retry layer gave up on this error (or on one in its cause chain). */
export function isExhausted(error: unknown): boolean {
  return causeChain(error).some((e) => typeof e === 'object' && e !== null && exhaustedErrors.has(e));
}
