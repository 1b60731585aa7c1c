import pg from 'pg';
import type { Counter } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNEL } from '../src/db/protocol.js';
import { NOTIFY_WORK_MIN_INTERVAL_MS } from '../src/daemon/refresh/listener.js';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { SHOP_SQL } from './support/shop.js';
import { delay, waitFor } from './support/wait.js';
import { roleUrl } from './support/roles.js';

const db = useTestDatabase('notify_limits');
/** A role that may connect and nothing else: NOTIFY needs no privilege. */
const ROLE = `notifier_${process.pid}`;
const PASSWORD = 'notifier-pw';
let notifier: pg.Client;
let d: TestDaemon;

beforeAll(async () => {
  await db.sql.query(SHOP_SQL);
  await db.sql.query("SELECT mvrefresh.watch('monthly_product_sales')");
  await db.sql.query(`CREATE ROLE ${ROLE} LOGIN NOSUPERUSER PASSWORD '${PASSWORD}'`);
  notifier = new pg.Client({ connectionString: roleUrl(db.url, ROLE, PASSWORD) });
  await notifier.connect();
  // the sweep's interval is far away: only the notification can make the daemon reload
  d = await startDaemon(db.url, { sweepIntervalMs: 600_000, driftCheckIntervalMs: 600_000 });
});

afterAll(async () => {
  await d?.stop();
  await notifier?.end();
  await db.sql.query(`DROP ROLE IF EXISTS ${ROLE}`);
});

async function count<T extends string>(counter: Counter<T>, labels: Partial<Record<T, string>>) {
  const { values } = await counter.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k as T] === want))
    .reduce((sum, v) => sum + v.value, 0);
}

/** payload(i) NOTIFYed 20 times a second for `seconds`, as the unprivileged role; the number sent. */
async function notifyFlood(payload: (i: number) => string, seconds: number): Promise<number> {
  let sent = 0;
  for (let i = 0; i < seconds * 20; i += 1) {
    await notifier.query('SELECT pg_notify($1, $2)', [CHANNEL, payload(i)]);
    sent += 1;
    await delay(50);
  }
  return sent;
}

/** Runs allowed by the rate limit over `ms`, with room for a loaded machine: one per interval, plus two. */
const bound = (ms: number) => Math.ceil(ms / NOTIFY_WORK_MIN_INTERVAL_MS) + 2;

describe('notifications any role that can connect may send', () => {
  it("'ddl' 20 times a second from a role with no privileges runs a bounded number of drift checks", async () => {
    const before = await count(d.running.metrics.driftChecks, { reason: 'ddl' });
    const t0 = Date.now();
    const sent = await notifyFlood(() => 'ddl', 4);
    await delay(NOTIFY_WORK_MIN_INTERVAL_MS * 2);
    const elapsed = Date.now() - t0;
    const checks = (await count(d.running.metrics.driftChecks, { reason: 'ddl' })) - before;
    const received = await count(d.running.metrics.notifications, { kind: 'ddl' });
    console.log(JSON.stringify({ sent, checks, received, elapsed }));
    expect(checks).toBeGreaterThanOrEqual(1);
    expect(checks).toBeLessThanOrEqual(bound(elapsed));
    expect(checks).toBeLessThan(sent / 4);
  });

  it("'reload' and 'schema' floods reload the views and read the schema a bounded number of times", async () => {
    const before = await count(d.running.metrics.sweeps, { reason: 'views_changed' });
    const t0 = Date.now();
    const sent = await notifyFlood((i) => (i % 2 === 0 ? 'reload' : 'schema'), 4);
    await delay(NOTIFY_WORK_MIN_INTERVAL_MS * 2);
    const reloads = (await count(d.running.metrics.sweeps, { reason: 'views_changed' })) - before;
    expect(reloads).toBeGreaterThanOrEqual(1);
    expect(reloads).toBeLessThanOrEqual(bound(Date.now() - t0));
    expect(reloads).toBeLessThan(sent / 4);
  });

  it('unknown view ids and table oids reload the list a bounded number of times; malformed payloads nothing', async () => {
    const before = await count(d.running.metrics.sweeps, { reason: 'new_view' });
    const t0 = Date.now();
    const sent = await notifyFlood(
      (i) => [`${1_000_000 + i}`, `t${4_000_000 + i}`, `x${i}`, '0', `t0`, '99999999999'][i % 6]!,
      4,
    );
    await delay(2000);
    const reloads = (await count(d.running.metrics.sweeps, { reason: 'new_view' })) - before;
    expect(await count(d.running.metrics.notifications, { kind: 'invalid' })).toBeGreaterThan(0);
    expect(reloads).toBeLessThanOrEqual(bound(Date.now() - t0));
    expect(reloads).toBeLessThan(sent / 4);
  });
});

describe('watch run again with new settings', () => {
  it('makes a running daemon apply them at once, not at its next sweep', async () => {
    const id = (await db.sql.query<{ id: number }>('SELECT id FROM mvrefresh.view_state')).rows[0]!.id;
    expect(d.running.scheduler.describe(id)?.targetMs).toBe(200);
    const cli = runCli(['watch', 'monthly_product_sales', '--max-staleness', '7s'], { DATABASE_URL: db.url });
    expect((await cli.exit).code).toBe(0);
    await waitFor(
      'the daemon to use the new target',
      () => d.running.scheduler.describe(id)?.targetMs === 7000,
    );
  });
});
