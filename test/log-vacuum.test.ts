import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { viewMatches } from './support/shop.js';
import { waitFor } from './support/wait.js';

/**
 * The daemon vacuums the change log of an incremental view once the applies' prunes left more dead rows
 * in it than live ones (src/daemon/checks/log-vacuum.ts), instead of leaving them to autovacuum's next
 * visit, which every apply's scans of the log paid for.
 */
const db = useTestDatabase('log_vacuum');
const DEF = 'SELECT c.post_id, count(*) AS n, sum(c.score) AS total FROM comments c GROUP BY c.post_id';
/** Per round: more than LOG_VACUUM_MIN_DEAD. */
const WRITES = 1500;

const events = (d: TestDaemon, event: string) => d.logs.filter((l) => l['event'] === event);

describe("the daemon's vacuum of the change logs", () => {
  let d: TestDaemon | undefined;
  let log = '';
  beforeAll(async () => {
    await db.sql.query(`
      CREATE TABLE comments (id bigserial PRIMARY KEY, post_id int NOT NULL, score int NOT NULL);
      INSERT INTO comments (post_id, score) SELECT g % 10, g FROM generate_series(1, 100) g;
      CREATE MATERIALIZED VIEW by_post AS ${DEF};
      CREATE UNIQUE INDEX ON by_post (post_id);`);
    const p = runCli(['watch', 'by_post', '--incremental'], { DATABASE_URL: db.url });
    expect((await p.exit).code).toBe(0);
    log = (
      await db.sql.query<{ t: string }>(
        `SELECT format('mvrefresh.%I', 'log_' || 'comments'::regclass::oid) AS t`,
      )
    ).rows[0]!.t;
    // only the daemon's VACUUM counts (autovacuum is on in some test servers)
    await db.sql.query(`ALTER TABLE ${log} SET (autovacuum_enabled = false)`);
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('vacuums a log whose dead rows outnumber its live ones, and the view stays equal to its query', async () => {
    const vacuums = async () =>
      Number(
        (
          await db.sql.query<{ n: string }>(
            'SELECT vacuum_count AS n FROM pg_stat_all_tables WHERE relid = $1::regclass',
            [log],
          )
        ).rows[0]!.n,
      );
    const before = await vacuums();
    d = await startDaemon(db.url, { logVacuumIntervalMs: 200 });
    // rounds of writes, each applied and pruned: before PostgreSQL 15 a backend reports its statistics
    // (the log's dead rows) at the end of a later transaction, not while idle
    await waitFor(
      'a VACUUM of the log',
      async () => {
        await db.sql.query(
          `INSERT INTO comments (post_id, score) SELECT g % 10, 1 FROM generate_series(1, ${WRITES}) g`,
        );
        await waitFor('the apply and its prune', async () => {
          const { rows } = await db.sql.query<{ n: string }>(`SELECT count(*) AS n FROM ${log}`);
          return Number(rows[0]!.n) === 0;
        });
        return (await vacuums()) > before;
      },
      { intervalMs: 1000 },
    );
    const done = events(d, 'log_vacuum');
    expect(done.length).toBeGreaterThan(0);
    expect(done[0]).toMatchObject({ table: log });
    expect(Number(done[0]?.['deadRows'])).toBeGreaterThanOrEqual(1000);
    expect(events(d, 'log_vacuum_forbidden')).toHaveLength(0);
    expect(await viewMatches(db.sql, 'by_post', DEF)).toBe(true);
  });
});
