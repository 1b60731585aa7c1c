import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('drift_baseline');

const ROWS = 1000;
/** An advisory lock outside mvrefresh's namespace: keeps the loading session busy while it is held. */
const HOLD = [1, 1];

let daemon: TestDaemon | undefined;
const clients: pg.Client[] = [];

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  clients.push(c);
  return c;
}

/**
 * Ends a loading session, which reports its counters as it exits: PostgreSQL 14 reports an idle session's
 * only with its next transaction when it reported less than half a second before (15+ within 10 s).
 */
async function disconnect(c: pg.Client): Promise<void> {
  clients.splice(clients.indexOf(c), 1);
  await c.end();
}

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE loaded_here (n int NOT NULL);
    CREATE MATERIALIZED VIEW loaded_here_total AS SELECT count(*) AS n FROM loaded_here;
    CREATE UNIQUE INDEX ON loaded_here_total (n);
    CREATE TABLE loaded_elsewhere (n int NOT NULL);
    CREATE MATERIALIZED VIEW loaded_elsewhere_total AS SELECT count(*) AS n FROM loaded_elsewhere;
    CREATE UNIQUE INDEX ON loaded_elsewhere_total (n);`);
});

afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
  for (const c of clients.splice(0)) await c.end();
});

/** The table's inserts as the cumulative statistics report them, and when they were read. */
async function reported(table: string): Promise<{ inserted: number; at: Date }> {
  const { rows } = await db.sql.query<{ inserted: string; at: Date }>(
    'SELECT n_tup_ins AS inserted, now() AS at FROM pg_stat_user_tables WHERE relid = $1::regclass',
    [table],
  );
  return { inserted: Number(rows[0]!.inserted), at: rows[0]!.at };
}

async function baseline(table: string): Promise<{ writes: number; checkedAt: Date }> {
  const { rows } = await db.sql.query<{ writes: string; checked_at: Date }>(
    'SELECT writes, checked_at FROM mvrefresh.table_writes WHERE relid = $1::regclass',
    [table],
  );
  return { writes: Number(rows[0]!.writes), checkedAt: rows[0]!.checked_at };
}

/** Waits until the statistics report the load and a drift check of the daemon has read them since. */
async function loadReportedAndChecked(table: string): Promise<void> {
  const { at } = await waitFor('the load reported by the statistics', async () => {
    const r = await reported(table);
    return r.inserted >= ROWS && r;
  });
  await waitFor(
    'a drift check that read the reported load',
    async () => (await baseline(table)).checkedAt > at,
  );
}

function bypassWarnings(d: TestDaemon): string[] {
  return d.logs
    .filter((l) => l['event'] === 'source_drift')
    .flatMap((l) => l['changes'] as string[])
    .filter((c) => c.includes('fired no trigger'));
}

async function total(view: string): Promise<number> {
  const { rows } = await db.sql.query<{ n: string }>(`SELECT n FROM ${pg.escapeIdentifier(view)}`);
  return Number(rows[0]?.n ?? -1);
}

describe('a table loaded just before it is watched, whose load the statistics report only after the watch', () => {
  it('loaded and watched by one session in one round trip: the baseline counts the load, and no drift check warns', async () => {
    const session = await connect();
    // one simple-query message: the backend reports its counters only when it goes idle after it, so the
    // watch runs with the committed load not reported yet
    const results = (await session.query(`
      BEGIN;
      INSERT INTO loaded_here SELECT g FROM generate_series(1, ${ROWS}) g;
      COMMIT;
      SELECT mvrefresh.watch('loaded_here_total');
      SELECT n_tup_ins AS inserted FROM pg_stat_user_tables WHERE relid = 'loaded_here'::regclass`)) as unknown as pg.QueryResult[];
    expect(Number(results.at(-1)!.rows[0].inserted)).toBe(0);
    expect((await baseline('loaded_here')).writes).toBe(ROWS);
    await disconnect(session);

    daemon = await startDaemon(db.url, { driftCheckIntervalMs: 1000 });
    await loadReportedAndChecked('loaded_here');
    await waitFor('the view to reflect the load', async () => (await total('loaded_here_total')) === ROWS);
    expect(bypassWarnings(daemon)).toEqual([]);
  });

  it('loaded by a session still busy when another session watches: no drift check warns once the load is reported', async () => {
    const holder = await connect();
    const loader = await connect();
    await holder.query('SELECT pg_advisory_lock($1, $2)', HOLD);
    // the loader commits, then waits for the lock within the same message: busy, its counters unreported
    const loading = loader.query(`
      BEGIN;
      INSERT INTO loaded_elsewhere SELECT g FROM generate_series(1, ${ROWS}) g;
      COMMIT;
      SELECT pg_advisory_lock(${HOLD[0]}, ${HOLD[1]});
      SELECT pg_advisory_unlock(${HOLD[0]}, ${HOLD[1]})`);
    await waitFor('the load committed', async () => {
      const { rows } = await db.sql.query<{ n: string }>('SELECT count(*) AS n FROM loaded_elsewhere');
      return Number(rows[0]!.n) === ROWS;
    });
    await db.sql.query("SELECT mvrefresh.watch('loaded_elsewhere_total')");
    expect((await reported('loaded_elsewhere')).inserted).toBe(0);
    expect((await baseline('loaded_elsewhere')).writes).toBe(0);

    // the loader reports its counters as it ends, before or after the daemon's start-up check
    await holder.query('SELECT pg_advisory_unlock($1, $2)', HOLD);
    await loading;
    await disconnect(loader);
    daemon = await startDaemon(db.url, { driftCheckIntervalMs: 1000 });
    await loadReportedAndChecked('loaded_elsewhere');
    await waitFor(
      'the view to reflect the load',
      async () => (await total('loaded_elsewhere_total')) === ROWS,
    );
    expect(bypassWarnings(daemon)).toEqual([]);
  });
});
