import pg from 'pg';
import { beforeAll, describe, it } from 'vitest';
import { sql } from '../../src/db/sql.js';
import { useTestDatabase } from '../support/db.js';
import { startDaemon, type TestDaemon } from '../support/daemon.js';
import { INSERT_ORDER, SHOP_QUERY, SHOP_SQL, viewMatches } from '../support/shop.js';
import { delay, waitFor } from '../support/wait.js';

/**
 * A randomized model check of guarantee 1 (no lost refresh): seeded random schedules of writes, multi-
 * statement and long transactions, rollbacks, REPEATABLE READ writers, column-narrowed updates, LISTEN
 * kills, refresh backends killed mid-cycle (a crash between clearing and refreshing), daemon restarts, writes
 * with session_replication_role = replica and writes while the trigger is disabled, partitions attached
 * with rows, detached and written directly, and the plain view under a fourth view redefined (drift check),
 * against one to three daemons. Long writers are new sessions or one that wrote before (it may skip for a
 * table mark it remembers). Three views share the orders table (table marks: a writer skips when the
 * table is already marked, whichever view's cycle later consumes the mark), one of them also read by a
 * fourth through a materialized view; single views are also refreshed directly, out of the daemons' turn,
 * so views sharing a table are refreshed at different times. After each schedule: quiesce, then every view must equal its query and no
 * view may be dirty. MODEL_SCHEDULES sets how many (npm test runs a few, npm run test:faults a few
 * hundred); MODEL_SEED replays one schedule.
 */
const db = useTestDatabase('faults_model');
const SCHEDULES = Number(process.env['MODEL_SCHEDULES'] ?? 4);
const FIRST_SEED = Number(process.env['MODEL_SEED'] ?? 0x5eed);
const ACTIONS = 30;
/**
 * Longer than the slowest sweep interval and backoff, and than the slowest drift check plus the delay of
 * the table statistics (up to 10 s) for writes that fired no trigger, so that only a lost write can
 * exhaust it.
 */
const QUIESCE_TIMEOUT_MS = 25_000;
const TOTALS_QUERY = `SELECT product_id, sum(total_quantity_sold)::bigint AS quantity FROM (${SHOP_QUERY}) s GROUP BY product_id`;
const CUSTOMER_QUERY = 'SELECT customer_id, count(*) AS orders FROM orders GROUP BY customer_id';
const VISITS_QUERY =
  'SELECT day % 7 AS weekday, sum(n)::bigint AS total, count(*) AS rows FROM visits_v GROUP BY 1';
/** Two definitions of the plain view between visit_totals and its partitioned table: redefine swaps them. */
const VISITS_V = ['SELECT day, n FROM visits', 'SELECT day, n FROM visits WHERE n % 3 <> 0'] as const;
const VIEWS = ['monthly_product_sales', 'product_totals', 'customer_orders', 'visit_totals'] as const;

/** mulberry32: a small seeded generator, so that a failing schedule replays exactly. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]!,
  };
}

type Action =
  | 'write'
  | 'multi'
  | 'rollback'
  | 'openLong'
  | 'closeLong'
  | 'repeatableRead'
  | 'updatePrice'
  | 'updateUnreadColumn'
  | 'killListener'
  | 'killRefresh'
  | 'restartDaemon'
  | 'pause'
  | 'orderOnly'
  | 'refreshOne'
  | 'replicaWrite'
  | 'disabledTriggerWrite'
  | 'attachWithRows'
  | 'detach'
  | 'partitionWrite'
  | 'redefine';
const ACTION_LIST: readonly Action[] = [
  'write',
  'write',
  'write',
  'multi',
  'rollback',
  'openLong',
  'openLong',
  'closeLong',
  'repeatableRead',
  'updatePrice',
  'updateUnreadColumn',
  'killListener',
  'killRefresh',
  'restartDaemon',
  'pause',
  'pause',
  'orderOnly',
  'refreshOne',
  'replicaWrite',
  'disabledTriggerWrite',
  'attachWithRows',
  'detach',
  'partitionWrite',
  'partitionWrite',
  'redefine',
];

let writes = 0;
let partitions = 0;
let definition = 0;
const attached: string[] = [];

/** Runs DDL that must not wait for the long writers a schedule holds open: false when it gave up. */
async function withShortLock(session: pg.Client, ddl: string): Promise<boolean> {
  await session.query('BEGIN');
  try {
    await session.query("SET LOCAL lock_timeout = '500ms'");
    await session.query(ddl);
    await session.query('COMMIT');
    return true;
  } catch {
    await session.query('ROLLBACK');
    return false;
  }
}

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  return c;
}

function daemonSettings(r: ReturnType<typeof rng>) {
  return {
    maxStalenessMs: 1 + r.int(800),
    writerWaitMs: 10 + r.int(100),
    sweepIntervalMs: 1000 + r.int(2000),
    driftCheckIntervalMs: 1000 + r.int(2000),
    backoffBaseMs: 100,
    backoffMaxMs: 500,
  };
}

/**
 * Waits until both views equal their queries (every committed write reflected); with `clean`, also until
 * no view is dirty (impossible while a writer is still open: its cycle stays unfinished until it ends).
 */
async function quiesce(session: pg.Client, seed: number, log: string[], clean: boolean): Promise<void> {
  await waitFor(
    `seed ${seed}: views equal to their queries${clean ? ' and clean' : ''} (${log.join(' ')})`,
    async () =>
      (await viewMatches(session, 'monthly_product_sales', SHOP_QUERY)) &&
      (await viewMatches(session, 'product_totals', TOTALS_QUERY)) &&
      (await viewMatches(session, 'customer_orders', CUSTOMER_QUERY)) &&
      (await viewMatches(session, 'visit_totals', VISITS_QUERY)) &&
      (!clean ||
        (await session.query<{ n: string }>('SELECT count(*) AS n FROM mvrefresh.status WHERE dirty')).rows[0]
          ?.n === '0'),
    { timeoutMs: QUIESCE_TIMEOUT_MS, intervalMs: 100 },
  );
}

async function runSchedule(seed: number): Promise<string[]> {
  const r = rng(seed);
  const log: string[] = [];
  const daemons: TestDaemon[] = [];
  const open: pg.Client[] = [];
  const session = await client();
  const warm = await client();
  try {
    // half the schedules without the DDL event triggers: only the periodic drift check finds the changes
    const eventTriggers = r.next() < 0.5;
    log.push(eventTriggers ? 'eventTriggers' : 'periodicCheck');
    await session.query(
      `ALTER EVENT TRIGGER mvrefresh_ddl ${eventTriggers ? 'ENABLE' : 'DISABLE'};
       ALTER EVENT TRIGGER mvrefresh_drop ${eventTriggers ? 'ENABLE' : 'DISABLE'}`,
    );
    for (let i = 0, n = 1 + r.int(3); i < n; i += 1)
      daemons.push(await startDaemon(db.url, daemonSettings(r)));
    for (let step = 0; step < ACTIONS; step += 1) {
      const action = r.pick(ACTION_LIST);
      log.push(action);
      switch (action) {
        case 'write':
          await session.query(INSERT_ORDER);
          writes += 1;
          break;
        case 'multi':
          await session.query('BEGIN');
          for (let k = 0, m = 2 + r.int(4); k < m; k += 1) await session.query(INSERT_ORDER);
          await session.query('COMMIT');
          writes += 1;
          break;
        case 'rollback':
          await session.query('BEGIN');
          await session.query(INSERT_ORDER);
          await session.query('ROLLBACK');
          break;
        case 'openLong': {
          // a committed write first, so that the long writer usually finds the view marked and skips:
          // the read-first race of design.md, which only the daemon's wait for writers covers
          if (r.next() < 0.7) {
            await session.query(INSERT_ORDER);
            writes += 1;
          }
          // half of them on a session that writes between its long transactions: it may skip for a mark it
          // remembers from an earlier one (routines/mark_table.sql), without probing
          const reuse = !open.includes(warm) && r.next() < 0.5;
          const c = reuse ? warm : await client();
          if (reuse) {
            await c.query(INSERT_ORDER);
            writes += 1;
          }
          await c.query('BEGIN');
          await c.query(INSERT_ORDER);
          open.push(c);
          break;
        }
        case 'closeLong': {
          const c = open.shift();
          if (c) {
            const commit = r.next() < 0.8;
            await c.query(commit ? 'COMMIT' : 'ROLLBACK');
            if (c !== warm) await c.end();
            if (commit) writes += 1;
          }
          break;
        }
        case 'repeatableRead':
          await session.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
          await session.query('SELECT count(*) FROM orders');
          await delay(r.int(50));
          await session.query(INSERT_ORDER);
          await session.query('COMMIT');
          writes += 1;
          break;
        case 'updatePrice':
          await session.query('UPDATE products SET price = price + 1 WHERE product_id = $1', [1 + r.int(20)]);
          writes += 1;
          break;
        case 'updateUnreadColumn':
          await session.query("UPDATE customers SET email = email || 'x' WHERE customer_id = $1", [
            1 + r.int(20),
          ]);
          break;
        case 'killListener':
          await session.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mvrefresh:listen' AND datname = current_database()",
          );
          break;
        case 'killRefresh':
          await session.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mvrefresh:refresh' AND state = 'active' AND datname = current_database()",
          );
          break;
        case 'restartDaemon': {
          const victim = daemons.splice(r.int(daemons.length), 1)[0];
          await victim?.stop();
          daemons.push(await startDaemon(db.url, daemonSettings(r)));
          break;
        }
        case 'pause':
          await delay(r.int(150));
          break;
        case 'orderOnly':
          // read by customer_orders only: the other views reading orders turn dirty and stay equal
          await session.query(
            "INSERT INTO orders VALUES (nextval('order_ids'), 1 + (random() * 19)::int, date '2024-06-01')",
          );
          writes += 1;
          break;
        case 'replicaWrite':
          // how logical replication applies changes: only ENABLE ALWAYS triggers fire
          await session.query('BEGIN');
          await session.query('SET LOCAL session_replication_role = replica');
          await session.query(INSERT_ORDER);
          await session.query('COMMIT');
          writes += 1;
          break;
        case 'disabledTriggerWrite':
          // an import with the trigger disabled: only the drift check's write counters can find it. ALTER
          // TABLE waits for the long writers this schedule holds open: give up rather than wait for them
          await session.query('BEGIN');
          try {
            await session.query("SET LOCAL lock_timeout = '500ms'");
            await session.query('ALTER TABLE orders DISABLE TRIGGER mvrefresh_mark');
            await session.query(
              "INSERT INTO orders VALUES (nextval('order_ids'), 1 + (random() * 19)::int, date '2024-07-01')",
            );
            await session.query('ALTER TABLE orders ENABLE ALWAYS TRIGGER mvrefresh_mark');
            await session.query('COMMIT');
            writes += 1;
          } catch {
            await session.query('ROLLBACK');
          }
          break;
        case 'attachWithRows': {
          // rows that reach the view without any DML: only the drift check (or the event trigger) finds them
          const part = `visits_${(partitions += 1)}`;
          await session.query(`CREATE TABLE ${part} (day int NOT NULL, n int NOT NULL)`);
          await session.query(
            `INSERT INTO ${part} SELECT ${partitions * 10} + g % 10, g FROM generate_series(1, 5) g`,
          );
          if (
            await withShortLock(
              session,
              `ALTER TABLE visits ATTACH PARTITION ${part} FOR VALUES FROM (${partitions * 10}) TO (${partitions * 10 + 10})`,
            )
          ) {
            attached.push(part);
            writes += 1;
          }
          break;
        }
        case 'detach': {
          const part = attached.length > 0 ? attached.splice(r.int(attached.length), 1)[0]! : undefined;
          if (part && !(await withShortLock(session, `ALTER TABLE visits DETACH PARTITION ${part}`)))
            attached.push(part);
          break;
        }
        case 'partitionWrite': {
          // addressed to the partition: only its own trigger fires, which the drift check created
          const part = attached.length > 0 ? r.pick(attached) : 'visits_0';
          const base = part === 'visits_0' ? 0 : Number(part.slice('visits_'.length)) * 10;
          await session.query(`INSERT INTO ${part} VALUES (${base + r.int(10)}, ${1 + r.int(100)})`);
          writes += 1;
          break;
        }
        case 'redefine':
          definition = 1 - definition;
          if (await withShortLock(session, `CREATE OR REPLACE VIEW visits_v AS ${VISITS_V[definition]}`))
            writes += 1;
          else definition = 1 - definition;
          break;
        case 'refreshOne':
          await session.query(sql.refreshView, [
            await viewId(session, r.pick(VIEWS)),
            false,
            50 + r.int(200),
            5000,
            100,
            500,
          ]);
          break;
      }
    }
    // commit the writers still open one at a time, each followed by quiescence: a refresh prompted by one
    // writer's mark must not hide another writer whose write was never marked
    for (const c of open.splice(0)) {
      await quiesce(session, seed, log, false);
      await c.query('COMMIT');
      if (c !== warm) await c.end();
      writes += 1;
    }
    await quiesce(session, seed, log, true);
    // every daemon is still up and listening
    for (const d of daemons) await waitFor(`seed ${seed}: a listener`, () => d.running.listener.connected);
    return log;
  } catch (err) {
    const state = await session.query(
      'SELECT view, dirty, cycle_unfinished, last_outcome, last_error, consecutive_failures FROM mvrefresh.status',
    );
    const raw = await session.query('SELECT id, started_gen, done_gen, wait_xids FROM mvrefresh.view_state');
    const diff = await session.query(
      `SELECT 'view-only' AS side, * FROM ((TABLE monthly_product_sales) EXCEPT (${SHOP_QUERY})) a
       UNION ALL SELECT 'query-only', * FROM ((${SHOP_QUERY}) EXCEPT (TABLE monthly_product_sales)) b LIMIT 6`,
    );
    const marks = await session.query(
      'SELECT view_id, NULL AS relid, marked_at FROM mvrefresh.marks UNION ALL SELECT NULL, relid, marked_at FROM mvrefresh.table_marks',
    );
    const recent = daemons.flatMap((d) =>
      d.reports.slice(-8).map((x) => `${x.view}:${x.cause}:${x.outcome}`),
    );
    throw new Error(
      `${(err as Error).message}\nstatus: ${JSON.stringify(state.rows)}\nstate: ${JSON.stringify(raw.rows)}\nlast cycles: ${recent.join(', ')}\ndiff: ${JSON.stringify(diff.rows)}\nmarks: ${JSON.stringify(marks.rows)}`,
    );
  } finally {
    for (const c of open) if (c !== warm) await c.end().catch(() => undefined);
    for (const d of daemons) await d.stop();
    await warm.end().catch(() => undefined);
    await session.end();
  }
}

async function viewId(session: pg.Client, name: string): Promise<number> {
  const { rows } = await session.query<{ id: number }>(
    'SELECT id FROM mvrefresh.view_state WHERE view_name = $1',
    [name],
  );
  return rows[0]!.id;
}

beforeAll(async () => {
  await db.sql.query(SHOP_SQL);
  await db.sql.query(`CREATE MATERIALIZED VIEW customer_orders AS ${CUSTOMER_QUERY};
    CREATE UNIQUE INDEX ON customer_orders (customer_id);`);
  await db.sql.query("SELECT mvrefresh.watch('customer_orders')");
  await db.sql.query(`CREATE MATERIALIZED VIEW product_totals AS
    SELECT product_id, sum(total_quantity_sold)::bigint AS quantity FROM monthly_product_sales GROUP BY product_id;
    CREATE UNIQUE INDEX ON product_totals (product_id);`);
  await db.sql.query("SELECT mvrefresh.watch('product_totals', p_with_dependencies => true)");
  await db.sql.query(`CREATE TABLE visits (day int NOT NULL, n int NOT NULL) PARTITION BY RANGE (day);
    CREATE TABLE visits_0 PARTITION OF visits FOR VALUES FROM (0) TO (10);
    INSERT INTO visits SELECT g % 10, g FROM generate_series(1, 20) g;
    CREATE VIEW visits_v AS ${VISITS_V[0]};
    CREATE MATERIALIZED VIEW visit_totals AS ${VISITS_QUERY};
    CREATE UNIQUE INDEX ON visit_totals (weekday);`);
  await db.sql.query("SELECT mvrefresh.watch('visit_totals')");
});

describe('randomized model check', () => {
  it(
    `no committed write is lost over ${SCHEDULES} random schedules`,
    { timeout: 120_000 + SCHEDULES * 30_000 },
    async () => {
      const started = Date.now();
      for (let i = 0; i < SCHEDULES; i += 1) {
        const seed = FIRST_SEED + i;
        try {
          await runSchedule(seed);
        } catch (err) {
          throw new Error(
            `schedule failed; replay with MODEL_SEED=${seed} MODEL_SCHEDULES=1: ${(err as Error).message}`,
          );
        }
      }
      console.info(
        `model: ${SCHEDULES} schedules, ${writes} committed write transactions checked, 0 lost, ${Date.now() - started} ms`,
      );
    },
  );
});
