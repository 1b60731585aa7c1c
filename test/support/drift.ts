import type pg from 'pg';
import { waitFor } from './wait.js';

/** Whether mvrefresh.status says the view is dirty. */
export async function viewDirty(client: pg.ClientBase, view: string): Promise<boolean> {
  const { rows } = await client.query<{ dirty: boolean }>(
    'SELECT dirty FROM mvrefresh.status WHERE view = $1',
    [view],
  );
  return rows[0]!.dirty;
}

/** The tables mvrefresh.status says the view reads (its sources, policies' tables included). */
export async function viewSources(client: pg.ClientBase, view: string): Promise<string[]> {
  const { rows } = await client.query<{ sources: string[] }>(
    'SELECT sources FROM mvrefresh.status WHERE view = $1',
    [view],
  );
  return rows[0]!.sources;
}

/**
 * Waits until the cumulative statistics show the table's inserts: a session reports them when it goes idle
 * or ends, and the drift check counts writes from them.
 */
export async function insertsReported(client: pg.ClientBase, table: string, inserted: number): Promise<void> {
  await waitFor(`the statistics to report ${inserted} inserts into ${table}`, async () => {
    const { rows } = await client.query<{ n: string }>(
      'SELECT n_tup_ins AS n FROM pg_stat_user_tables WHERE relid = $1::regclass',
      [table],
    );
    return Number(rows[0]!.n) >= inserted;
  });
}
