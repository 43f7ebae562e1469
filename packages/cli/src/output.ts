import { formatLocation, type PipelineEvent, TributaryError } from '@tributary/core';
import cliProgress from 'cli-progress';
import { pino } from 'pino';

/** Logs go to stderr as JSON lines (stdout carries human output or the `--json` document). */
export type Logger = pino.Logger;

const SECRET_PATTERNS: [RegExp, string][] = [
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^:/\s@]+:)([^@/\s]+)@/gi, '$1***@'], // user:password@ in URLs
  [/\b(AKIA|ASIA)[A-Z0-9]{16}\b/g, '$1****************'], // AWS access key ids
];

/** Removes passwords in connection strings and AWS keys from any text we print. */
export function redact(text: string, extraSecrets: readonly string[] = secretsFromEnv()): string {
  let out = text;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement);
  for (const secret of extraSecrets) if (secret.length >= 4) out = out.split(secret).join('***');
  return out;
}

function secretsFromEnv(): string[] {
  const secrets: string[] = [];
  for (const name of ['AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'PGPASSWORD']) {
    const value = process.env[name];
    if (value) secrets.push(value);
  }
  const url = process.env.DATABASE_URL;
  if (url) {
    try {
      const password = decodeURIComponent(new URL(url).password);
      if (password) secrets.push(password);
    } catch {
      // not a URL: nothing to extract
    }
  }
  return secrets;
}

export function createLogger(app: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      level,
      base: { app },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        // Every log line passes through redaction (invariant 9: secrets never reach logs).
        logMethod(args, method) {
          method.apply(
            this,
            args.map((a) => (typeof a === 'string' ? redact(a) : a)) as Parameters<typeof method>,
          );
        },
      },
      redact: { paths: ['password', '*.password', 'databaseUrl', 'secretAccessKey'], censor: '***' },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** One line for stderr that names the stream (`context`), file, line and column when known. */
export function describeError(error: unknown, context?: string): string {
  const prefix = context ? `${context}: ` : '';
  if (error instanceof TributaryError) {
    const where = formatLocation(error.location);
    const message = where && !error.message.includes(where) ? `${where}: ${error.message}` : error.message;
    return redact(`${prefix}${message} [${error.code}]`);
  }
  return redact(`${prefix}${error instanceof Error ? error.message : String(error)}`);
}

export interface ProgressRenderer {
  onEvent(event: PipelineEvent): void;
  stop(): void;
}

function formatBytes(n: number): string {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} kB`;
  return `${n} B`;
}

/**
 * Progress per file: bars (bytes, rows, rate) on a TTY, JSON log lines otherwise.
 */
export function progressRenderer(logger: Logger, tty: boolean): ProgressRenderer {
  if (!tty) {
    return {
      onEvent(event) {
        // One line per file at info (its commit); the start only at debug: a trickle of small
        // files should not double the log volume, nor the time spent writing it.
        if (event.type === 'unit-start')
          logger.debug(
            { stream: event.stream, file: event.source, kind: event.kind, bytes: event.bytesTotal },
            'file started',
          );
        else if (event.type === 'committed')
          logger.info({ stream: event.stream, file: event.source, rows: event.rows }, 'file committed');
        else if (event.type === 'warning')
          logger.warn({ stream: event.stream, ...event.detail }, event.message);
      },
      stop() {},
    };
  }
  const multibar = new cliProgress.MultiBar(
    {
      format: ' {bar} {percentage}% | {file} | {done} / {total_h} | {rows} rows | {rate}',
      barsize: 24,
      hideCursor: true,
      clearOnComplete: false,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, { bar: cliProgress.SingleBar; started: number; total: number }>();
  return {
    onEvent(event) {
      if (event.type === 'unit-start') {
        const total = Math.max(1, event.bytesTotal ?? 1);
        const bar = multibar.create(total, 0, {
          file: event.source.split('/').slice(-3).join('/'),
          done: formatBytes(0),
          total_h: formatBytes(total),
          rows: 0,
          rate: '',
        });
        bars.set(event.source, { bar, started: Date.now(), total });
      } else if (event.type === 'progress') {
        const entry = bars.get(event.source);
        if (!entry) return;
        const seconds = Math.max(0.001, (Date.now() - entry.started) / 1000);
        entry.bar.update(Math.min(event.bytes, entry.total), {
          done: formatBytes(event.bytes),
          rows: event.rows,
          rate: `${formatBytes(event.bytes / seconds)}/s`,
        });
      } else if (event.type === 'committed' && event.source) {
        const entry = bars.get(event.source);
        entry?.bar.update(entry.total, { done: formatBytes(entry.total) });
      } else if (event.type === 'warning') {
        multibar.log(`warning: ${redact(event.message)}\n`);
      }
    },
    stop() {
      multibar.stop();
    },
  };
}

/** A plain fixed-width table for summaries. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join(
    '\n',
  );
}

/**
 * SIGINT/SIGTERM: the first stops gracefully (the in-flight file or batch commits first), a
 * second one exits at once with 130 (the open transaction is rolled back by the server).
 */
export function stopOnSignals(logger: Logger): AbortController {
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) process.exit(130);
    logger.info({ signal }, 'stopping after the in-flight unit commits (signal again to abort)');
    stop.abort();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  return stop;
}

/**
 * Ends the process once a command has finished, even when a client library still holds a
 * connection open. kafkajs can: when a fetch fails it drops the broker from its pool but keeps it
 * as the group coordinator, so a LeaveGroup that reconnects it leaves a socket `disconnect()`
 * never closes, and the finished binary would wait on it forever. The timer is unref'd: a
 * process with nothing left open exits at once, as before. Output is not lost: the logger and
 * stdout write synchronously to pipes and files.
 */
export function exitWhenDone(graceMs = 1000): void {
  setTimeout(() => process.exit(), graceMs).unref();
}
