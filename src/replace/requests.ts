import type pg from 'pg';
import { REPLACE_LOCK_NAMESPACE } from '../db/protocol.js';
import { inTransaction } from '../db/transaction.js';
import { qname } from './plan.js';
import { replaceSql } from './sql.js';

/**
 * Replace requests (mvrefresh.replace_requests, migrations/0014_replace.sql): recorded, claimed by exactly
 * one executor (a row lock with SKIP LOCKED, then a session advisory lock held until the executor ends),
 * finished. A request left 'running' without its advisory lock was abandoned by an executor that died:
 * its half-built version is dropped before anything else happens to it.
 */

export type Origin = 'sql' | 'cli';

export interface Request {
  id: string;
  view_schema: string;
  view_name: string;
  definition: string;
  status: 'pending' | 'running';
  temp_name: string | null;
  origin: Origin;
  search_path: string;
  lock_timeout_ms: number | null;
}

export interface Orphan {
  id: string;
  view_schema: string;
  view_name: string;
  temp_name: string | null;
  origin: Origin;
}

/** Records a request that this process carries out itself (daemons leave it alone). */
export async function recordCliRequest(
  client: pg.ClientBase,
  view: string,
  definition: string,
  searchPath: string,
  lockTimeoutMs: number | undefined,
): Promise<string> {
  return inTransaction(client, async () => {
    const { rows } = await client.query<{ id: string }>(replaceSql.requestReplace, [
      view,
      definition,
      lockTimeoutMs ?? null,
      searchPath,
    ]);
    const id = rows[0]!.id;
    await client.query(replaceSql.markCli, [id]);
    return id;
  });
}

/** Drops what an interrupted executor of `orphan` left: its half-built version (and with it its indexes). */
export async function dropHalfBuilt(
  client: pg.ClientBase,
  orphan: Pick<Orphan, 'view_schema' | 'temp_name'>,
) {
  if (orphan.temp_name === null) return;
  await client.query(`DROP MATERIALIZED VIEW IF EXISTS ${qname(orphan.view_schema, orphan.temp_name)}`);
}

export async function findOrphans(client: pg.ClientBase): Promise<Orphan[]> {
  return (await client.query<Orphan>(replaceSql.orphans, [REPLACE_LOCK_NAMESPACE])).rows;
}

/**
 * Claims one unfinished request (the given one, or the oldest one of these origins / this view) and holds
 * its advisory lock on this session until release(); null when none is free. A CLI request found
 * abandoned is not carried on (its operator gave up on it): its half-built version is dropped and it is
 * marked failed, and the search goes on.
 */
export async function claim(
  client: pg.ClientBase,
  filter: { id?: string; origins?: Origin[]; view?: { schema: string; name: string } },
  claimedBy: string,
): Promise<Request | null> {
  for (;;) {
    const found = await inTransaction(
      client,
      async (): Promise<{ claimed?: Request; abandoned?: Request }> => {
        const { rows } = await client.query<Request>(replaceSql.candidates, [
          filter.id ?? null,
          filter.origins ?? null,
          filter.view?.schema ?? null,
          filter.view?.name ?? null,
        ]);
        for (const r of rows) {
          const { rows: lock } = await client.query<{ locked: boolean }>(replaceSql.tryLock, [
            REPLACE_LOCK_NAMESPACE,
            r.id,
          ]);
          if (!lock[0]?.locked) continue;
          if (r.status === 'running') await dropHalfBuilt(client, r);
          if (r.status === 'running' && r.origin === 'cli' && r.id !== filter.id) {
            await client.query(replaceSql.finish, [
              r.id,
              'failed',
              'interrupted: the process carrying it out ended',
            ]);
            return { abandoned: r };
          }
          await client.query(replaceSql.start, [r.id, claimedBy]);
          return { claimed: { ...r, temp_name: null } };
        }
        return {};
      },
    );
    if (found.abandoned) {
      await release(client, found.abandoned.id);
      continue;
    }
    return found.claimed ?? null;
  }
}

export async function release(client: pg.ClientBase, id: string): Promise<void> {
  await client.query(replaceSql.unlock, [REPLACE_LOCK_NAMESPACE, id]);
}

export async function setStep(client: pg.ClientBase, id: string, step: string, temp?: string): Promise<void> {
  await client.query(replaceSql.step, [id, step, temp ?? null]);
}

export async function fail(client: pg.ClientBase, id: string, message: string): Promise<void> {
  await client.query(replaceSql.finish, [id, 'failed', message]);
}

/**
 * Cleans up after abandoned requests (their executor died): drops each half-built version, marks a CLI
 * request failed and leaves a request of request_replace() pending for a daemon. Returns what it found.
 */
export async function cleanupOrphans(client: pg.ClientBase): Promise<Orphan[]> {
  const orphans = await findOrphans(client);
  const cleaned: Orphan[] = [];
  for (const o of orphans) {
    const { rows } = await client.query<{ locked: boolean }>(replaceSql.tryLock, [
      REPLACE_LOCK_NAMESPACE,
      o.id,
    ]);
    if (!rows[0]?.locked) continue;
    try {
      await dropHalfBuilt(client, o);
      if (o.origin === 'cli') await fail(client, o.id, 'interrupted: the process carrying it out ended');
      else await client.query(replaceSql.requeue, [o.id]);
      cleaned.push(o);
    } finally {
      await release(client, o.id);
    }
  }
  return cleaned;
}
