import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { STATS_REPORT_DELAY_MS } from '../src/db/protocol.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { viewMatches } from './support/shop.js';
import { delay, waitFor } from './support/wait.js';
import { lemmyPost } from './support/lemmy.js';

const db = useTestDatabase('drift');

const QUERY = 'SELECT region, sum(amount) AS total, count(*) AS n FROM sales_v GROUP BY region';
const fresh = () => viewMatches(db.sql, 'sales_by_region', QUERY);

/** Inserts through the partitioned table, one row per transaction, until stopped: writes while the catalog changes. */
function startWriter(): { stop(): Promise<number> } {
  let stopping = false;
  const done = (async () => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    let n = 0;
    try {
      while (!stopping) {
        await c.query("INSERT INTO sales VALUES ('eu', 1)");
        n += 1;
        await delay(5);
      }
    } finally {
      await c.end();
    }
    return n;
  })();
  return {
    async stop() {
      stopping = true;
      return done;
    },
  };
}

async function quiet(d: TestDaemon) {
  await waitFor('the view to be clean and the daemon idle', async () => {
    const { rows } = await db.sql.query<{ dirty: boolean }>(
      "SELECT dirty FROM mvrefresh.status WHERE view = 'public.sales_by_region'",
    );
    return rows[0] && !rows[0].dirty && d.running.refresher.active === 0 && d.running.refresher.queued === 0;
  });
}

/**
 * Attaches a partition for `region` holding `amounts` while a writer writes through the parent, waits for
 * those rows in the view, then, with the writer stopped and the daemon quiet, inserts `direct` into the
 * partition itself: no write through the parent from there on, so only the repaired trigger can make that
 * row show.
 */
async function attachThenWriteDirectly(d: TestDaemon, region: string, amounts: number[], direct: number) {
  const writer = startWriter();
  const table = pg.escapeIdentifier(`sales_${region}`);
  const literal = pg.escapeLiteral(region);
  await db.sql.query(`CREATE TABLE ${table} (region text NOT NULL, amount int NOT NULL);
    INSERT INTO ${table} VALUES ${amounts.map((a) => `(${literal}, ${a})`).join(', ')};
    ALTER TABLE sales ATTACH PARTITION ${table} FOR VALUES IN (${literal})`);
  await waitFor('the attached rows in the view', async () => {
    const { rows } = await db.sql.query('SELECT 1 FROM sales_by_region WHERE region = $1 AND n = $2', [
      region,
      amounts.length,
    ]);
    return rows.length === 1;
  });
  await writer.stop();
  await quiet(d);
  await db.exec(`INSERT INTO ${table} VALUES ($1, $2)`, [region, direct]);
  await waitFor('the view to equal its query', fresh);
}

function driftLogs(d: TestDaemon): { view: string; changes: string[] }[] {
  return d.logs.filter((l) => l['event'] === 'source_drift') as unknown as {
    view: string;
    changes: string[];
  }[];
}

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE sales (region text NOT NULL, amount int NOT NULL) PARTITION BY LIST (region);
    CREATE TABLE sales_eu PARTITION OF sales FOR VALUES IN ('eu');
    CREATE TABLE sales_us PARTITION OF sales FOR VALUES IN ('us');
    CREATE TABLE refunds (region text NOT NULL, amount int NOT NULL);
    CREATE TABLE imports (region text NOT NULL, amount int NOT NULL);
    INSERT INTO sales VALUES ('eu', 10), ('us', 20);
    CREATE VIEW sales_v AS SELECT region, amount FROM sales;
    CREATE MATERIALIZED VIEW sales_by_region AS ${QUERY};
    CREATE UNIQUE INDEX ON sales_by_region (region);
    SELECT mvrefresh.watch('sales_by_region');`);
});

describe('without the event trigger, the periodic drift check', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    await db.sql.query(
      'ALTER EVENT TRIGGER mvrefresh_ddl DISABLE; ALTER EVENT TRIGGER mvrefresh_drop DISABLE',
    );
    d = await startDaemon(db.url, { driftCheckIntervalMs: 1000 });
  });
  afterAll(async () => {
    await d?.stop();
    await db.sql.query('ALTER EVENT TRIGGER mvrefresh_ddl ENABLE; ALTER EVENT TRIGGER mvrefresh_drop ENABLE');
  });
  afterEach(async () => {
    await quiet(d);
    expect(await fresh()).toBe(true);
  });

  it('says in status that the periodic check is in force', async () => {
    const { rows } = await db.sql.query<{ drift_detection: string }>(
      'SELECT drift_detection FROM mvrefresh.status',
    );
    expect(rows.map((r) => r.drift_detection)).toEqual(['periodic_check']);
  });

  it('reflects a partition attached with rows in it, and rows then inserted into that partition directly, with writers running', async () => {
    await attachThenWriteDirectly(d, 'asia', [5, 7], 100);
    await waitFor('the drift logged', () =>
      driftLogs(d).some((l) => l.changes.includes('source added: public.sales_asia')),
    );
  });

  it('follows a plain view redefined with CREATE OR REPLACE VIEW to read a second table, which is then written', async () => {
    const writer = startWriter();
    await db.sql.query(`CREATE OR REPLACE VIEW sales_v AS
      SELECT region, amount FROM sales UNION ALL SELECT region, -amount FROM refunds`);
    await writer.stop();
    await waitFor('the new definition in the view', fresh);
    await quiet(d);
    await db.exec("INSERT INTO refunds VALUES ('eu', 3)");
    await waitFor('the refund in the view', fresh);
    const { rows } = await db.sql.query<{ sources: string[] }>('SELECT sources FROM mvrefresh.status');
    expect(rows[0]!.sources).toContain('public.refunds');
  });

  it('refreshes for a write made with session_replication_role = replica (how logical replication applies changes)', async () => {
    const { rows } = await db.sql.query<{ tgenabled: string }>(
      "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'sales_eu'::regclass AND tgname = 'mvrefresh_mark'",
    );
    expect(rows[0]!.tgenabled).toBe('A');
    await db.exec("SET session_replication_role = replica; INSERT INTO sales_eu VALUES ('eu', 1000)");
    await waitFor('the replicated row in the view', fresh);
  });

  it('reflects rows imported while DISABLE TRIGGER ALL was in effect and makes the trigger ENABLE ALWAYS again', async () => {
    await db.sql.query(`ALTER TABLE sales_us DISABLE TRIGGER ALL;
      INSERT INTO sales_us SELECT 'us', g FROM generate_series(1, 50) g;
      ALTER TABLE sales_us ENABLE TRIGGER ALL`);
    await waitFor('the imported rows in the view', fresh, { timeoutMs: 45_000 });
    await waitFor('the trigger enabled ALWAYS again', async () => {
      const { rows } = await db.sql.query<{ tgenabled: string }>(
        "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'sales_us'::regclass AND tgname = 'mvrefresh_mark'",
      );
      return rows[0]?.tgenabled === 'A';
    });
  });

  it('reflects writes made while the trigger was disabled and is enabled again, from the write counters alone', async () => {
    // a mark of the parent within the statistics' reporting delay counts as the partition's (writes routed
    // through the parent fire only its trigger): the earlier writers' marks must be older than that
    await waitFor(
      "the parent's last mark to be older than the statistics' reporting delay",
      async () =>
        (
          await db.sql.query(
            `SELECT FROM mvrefresh.table_writes WHERE relid = 'sales'::regclass
                AND last_mark_at > now() - $1 * interval '1 ms' - interval '1 s'`,
            [STATS_REPORT_DELAY_MS],
          )
        ).rowCount === 0,
      { timeoutMs: STATS_REPORT_DELAY_MS + 30_000, intervalMs: 500 },
    );
    await db.sql.query(`ALTER TABLE sales_us DISABLE TRIGGER mvrefresh_mark;
      INSERT INTO sales_us SELECT 'us', g FROM generate_series(1, 10) g;
      ALTER TABLE sales_us ENABLE ALWAYS TRIGGER mvrefresh_mark`);
    await waitFor('the rows in the view', fresh, { timeoutMs: 45_000 });
    await waitFor('a warning naming the table', () =>
      driftLogs(d).some((l) =>
        l.changes.some((c) => c.startsWith('writes to public.sales_us fired no trigger')),
      ),
    );
  });

  it('keeps the view fresh through the partition lifecycle: create and write directly, detach, drop', async () => {
    const writer = startWriter();
    await db.sql.query("CREATE TABLE sales_africa PARTITION OF sales FOR VALUES IN ('africa')");
    await db.sql.query('ALTER TABLE sales DETACH PARTITION sales_asia');
    await writer.stop();
    await waitFor('the detached rows gone from the view', fresh);
    await quiet(d);
    await db.exec("INSERT INTO sales_africa VALUES ('africa', 8)");
    await waitFor('the row written directly into the new partition in the view', fresh);
    await quiet(d);
    await db.sql.query('DROP TABLE sales_africa');
    await waitFor('the dropped rows gone from the view', fresh);
    await waitFor('the dropped partition gone from the sources', async () => {
      const { rows } = await db.sql.query<{ sources: string[] }>('SELECT sources FROM mvrefresh.status');
      return !rows[0]!.sources.includes('public.sales_africa');
    });
    const { rows } = await db.sql.query<{ sources: string[] }>('SELECT sources FROM mvrefresh.status');
    expect(rows[0]!.sources).not.toContain('public.sales_asia');
    expect(rows[0]!.sources).not.toContain('public.sales_africa');
    // no trigger left on a table no watched view reads
    const triggers = await db.sql.query(
      "SELECT 1 FROM pg_trigger WHERE tgrelid = 'sales_asia'::regclass AND tgname = 'mvrefresh_mark'",
    );
    expect(triggers.rowCount).toBe(0);
  });

  it('gives up creating a trigger behind a long writer within its lock timeout, retries, and still reflects that writer', async () => {
    await db.sql.query("CREATE TABLE sales_pacific PARTITION OF sales FOR VALUES IN ('pacific')");
    const long = new pg.Client({ connectionString: db.url });
    await long.connect();
    try {
      await long.query('BEGIN');
      await long.query("INSERT INTO sales_pacific VALUES ('pacific', 9)");
      await waitFor('a check that could not repair the trigger', () =>
        d.logs.some(
          (l) =>
            l['event'] === 'source_drift' &&
            l['triggersSynced'] === false &&
            (l['changes'] as string[]).includes('trigger missing on public.sales_pacific'),
        ),
      );
      await long.query('COMMIT');
    } finally {
      await long.end();
    }
    await waitFor('the trigger created once the long writer ended', async () => {
      const { rowCount } = await db.sql.query(
        "SELECT 1 FROM pg_trigger WHERE tgrelid = 'sales_pacific'::regclass AND tgname = 'mvrefresh_mark'",
      );
      return rowCount === 1;
    });
    await waitFor("the long writer's row in the view", fresh);
  });

  it("replays Lemmy's migrations with the daemon running: drop the view, alter a column's type, drop a column, re-create the view, in one transaction", async () => {
    const lemmy = lemmyPost('post_aggregates_mview');
    await db.sql.query(`${lemmy.create} SELECT mvrefresh.watch('post_aggregates_mview');`);
    await waitFor('post_aggregates_mview refreshed', () =>
      d.reports.some((r) => r.view === 'public.post_aggregates_mview' && r.outcome === 'refreshed'),
    );
    await db.sql.query(lemmy.migrate);
    await db.exec("UPDATE post SET name = 'b'; INSERT INTO post VALUES (2, 'c')");
    await waitFor('the re-created view to reflect the write', () =>
      viewMatches(db.sql, 'post_aggregates_mview', lemmy.query),
    );
    const { rows } = await db.sql.query<{ consecutive_failures: number }>(
      "SELECT consecutive_failures FROM mvrefresh.status WHERE view = 'public.post_aggregates_mview'",
    );
    expect(rows[0]!.consecutive_failures).toBe(0);
  });
});

describe('with the event trigger', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    // no periodic check during these tests: only the event trigger can find the change
    d = await startDaemon(db.url, { driftCheckIntervalMs: 3_600_000 });
    await quiet(d);
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('says in status and /views that the event trigger is in force', async () => {
    const { rows } = await db.sql.query<{ drift_detection: string }>(
      'SELECT DISTINCT drift_detection FROM mvrefresh.status',
    );
    expect(rows).toEqual([{ drift_detection: 'event_trigger' }]);
    const res = await fetch(`http://127.0.0.1:${d.running.port}/views`);
    const views = (await res.json()) as { driftDetection: string }[];
    expect(views.every((v) => v.driftDetection === 'event_trigger')).toBe(true);
  });

  it('reflects a partition attached with rows without waiting for a periodic check', async () => {
    await attachThenWriteDirectly(d, 'oceania', [4], 6);
    expect(driftLogs(d).some((l) => l.changes.includes('source added: public.sales_oceania'))).toBe(true);
  });

  it('reflects a row written directly into a partition created a moment before', async () => {
    await db.sql.query("CREATE TABLE sales_arctic PARTITION OF sales FOR VALUES IN ('arctic')");
    await db.exec("INSERT INTO sales_arctic VALUES ('arctic', 2)");
    await waitFor('the view to equal its query', fresh);
  });
});
