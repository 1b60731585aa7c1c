/**
 * The database the incremental benches (bench:incremental, -profile, -attribution) run on: created on their
 * private cluster, loaded with workload.ts's tables and views, analyzed and migrated.
 */
import type pg from 'pg';
import type { PgCluster } from '../../dev/cluster.js';
import { withClient } from '../support/db.js';
import { cliOk } from './views.js';
import { COMMENTS, VIEWS, createViewSql, schemaSql } from './workload.js';

/**
 * Creates database `name` on `cluster` with the bench's tables and materialized views (and `extraSql`, run
 * after them and before the VACUUM ANALYZE), then `mvrefresh migrate`; its URL.
 */
export async function createBenchDatabase(
  cluster: PgCluster,
  name: string,
  extraSql: readonly string[] = [],
): Promise<string> {
  await withClient(cluster.url(), (c) => c.query(`CREATE DATABASE ${name}`));
  const url = cluster.url(name);
  await withClient(url, async (c) => {
    await c.query(schemaSql());
    for (const v of VIEWS) await c.query(createViewSql(v));
    for (const sql of extraSql) await c.query(sql);
    await c.query('VACUUM ANALYZE');
  });
  await cliOk(url, 'migrate');
  return url;
}

/** The largest comment id, where the writers' updates and deletes pick their rows below. */
export async function maxCommentId(db: pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ id: string | null }>('SELECT max(id) AS id FROM public.comments');
  return Number(rows[0]?.id ?? COMMENTS);
}
