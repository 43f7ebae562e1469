import { TributaryError } from '@tributary/core';
import type pg from 'pg';

/**
 * One writer per stream (invariant 8): a session advisory lock on the stream's dedicated
 * connection, taken when the connection opens and released before it goes back to the pool.
 */

/** Whether streams are locked, and how long to wait for a held lock (undefined: fail fast). */
export interface StreamLock {
  enabled: boolean;
  waitMs: number | undefined;
}

/** The advisory lock key of a stream (the control schema keeps two deployments apart). */
export function streamLockKey(schema: string, stream: string): string {
  return `tributary:${schema}:${stream}`;
}

export async function lockStream(
  client: pg.ClientBase,
  stream: string,
  lockKey: string,
  lock: StreamLock,
): Promise<void> {
  if (!lock.enabled) return;
  const waitMs = lock.waitMs;
  if (waitMs === undefined) {
    const result = await client.query<{ locked: boolean }>(
      'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked',
      [lockKey],
    );
    if (result.rows[0]?.locked) return;
    throw await lockedError(client, stream, lockKey, '');
  }
  // Server-side wait bounded by lock_timeout: no polling loop.
  await client.query(`SET lock_timeout = ${waitMs}`);
  try {
    await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [lockKey]);
  } catch (error) {
    if ((error as { code?: string }).code === '55P03') {
      await client.query('RESET lock_timeout');
      throw await lockedError(client, stream, lockKey, ` (waited ${waitMs} ms)`);
    }
    throw error;
  }
  await client.query('RESET lock_timeout');
}

export async function unlockStream(client: pg.ClientBase, lockKey: string): Promise<void> {
  await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockKey]);
}

/** STREAM_LOCKED naming the backend that holds the lock, so an operator can find the other runner. */
async function lockedError(
  client: pg.ClientBase,
  stream: string,
  lockKey: string,
  waited: string,
): Promise<TributaryError> {
  const holder = await client.query<{
    pid: number;
    application_name: string | null;
    client_addr: string | null;
    backend_start: Date | null;
  }>(
    `WITH k AS (SELECT hashtextextended($1, 0) AS k)
       SELECT l.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start
         FROM k, pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = ((k.k >> 32) & 4294967295)::oid AND l.objid = (k.k & 4294967295)::oid
        LIMIT 1`,
    [lockKey],
  );
  const h = holder.rows[0];
  const who = h
    ? `pid ${h.pid}${h.application_name ? ` (application "${h.application_name}"` : ' ('}${
        h.client_addr ? `, client ${h.client_addr}` : ''
      }${h.backend_start ? `, connected since ${h.backend_start.toISOString()}` : ''})`
    : 'another session';
  return new TributaryError(
    'STREAM_LOCKED',
    `stream "${stream}" is locked by ${who}${waited}: another runner is applying it (one writer per stream)`,
    { stream },
  );
}
