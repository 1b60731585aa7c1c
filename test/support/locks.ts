import pg from 'pg';
import { delay } from './wait.js';

export interface LockHolder {
  pid: number;
  granted: boolean;
  state: string | null;
  query: string | null;
}

/**
 * Sessions holding or awaiting the ExclusiveLock that REFRESH ... CONCURRENTLY takes on a view. Counts only
 * relation locks of this database: REFRESH also takes relation-extension locks (ExclusiveLock too), and test
 * databases are clones of one template, so the view has the same OID in every one of them.
 */
export async function refreshLockHolders(client: pg.ClientBase, view: string): Promise<LockHolder[]> {
  const { rows } = await client.query<LockHolder>(
    `SELECT l.pid, l.granted, a.state, left(a.query, 60) AS query
       FROM pg_locks l LEFT JOIN pg_stat_activity a USING (pid)
      WHERE l.locktype = 'relation' AND l.relation = $1::regclass AND l.mode = 'ExclusiveLock'
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [view],
  );
  return rows;
}

/**
 * Samples the refresh lock holders of `view` every few milliseconds on a connection of its own, until
 * stop(), which resolves with every sample (one list of holders each).
 */
export function sampleRefreshLocks(url: string, view: string): { stop(): Promise<LockHolder[][]> } {
  let sampling = true;
  const samples: LockHolder[][] = [];
  const done = (async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      while (sampling) {
        samples.push(await refreshLockHolders(c, view));
        await delay(5);
      }
    } finally {
      await c.end();
    }
  })();
  return {
    async stop() {
      sampling = false;
      await done;
      return samples;
    },
  };
}
