import pg from 'pg';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { INSERT_ORDER, SHOP_SQL } from './support/shop.js';
import { waitFor } from './support/wait.js';
import { roleUrl } from './support/roles.js';

/** The daemon's role: the mvrefresh schema's privileges of `mvrefresh grants`, no superuser. */
const db = useTestDatabase('monitoring_blind');
const DAEMON = `mvr_blind_daemon_${process.pid}`;
const PASSWORD = 'blind-pw';
let d: TestDaemon;

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (b: Buffer) => (body += b.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

const metric = (body: string, name: string) =>
  body
    .split('\n')
    .filter((l) => l.startsWith(name))
    .map((l) => Number(l.split(' ').at(-1)));

beforeAll(async () => {
  await db.sql.query(SHOP_SQL);
  await db.sql.query("SELECT mvrefresh.watch('monthly_product_sales')");
  await db.sql.query(`CREATE ROLE ${DAEMON} LOGIN PASSWORD '${PASSWORD}'`);
  await db.sql.query(`GRANT USAGE ON SCHEMA mvrefresh TO ${DAEMON};
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA mvrefresh TO ${DAEMON};
    GRANT USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA mvrefresh TO ${DAEMON};
    GRANT EXECUTE ON ALL ROUTINES IN SCHEMA mvrefresh TO ${DAEMON};`);
  d = await startDaemon(roleUrl(db.url, DAEMON, PASSWORD));
});

afterAll(async () => {
  await d?.stop();
  await db.sql.query(`DROP OWNED BY ${DAEMON}; DROP ROLE IF EXISTS ${DAEMON}`);
});

/** /metrics and /readyz say they cannot read the state, then recover once `undo` ran. */
async function expectBlindThenRecovered(reason: RegExp, undo: () => Promise<void>) {
  const { port, probePort } = d.running;
  const blind = await waitFor('the metrics to say the state cannot be read', async () => {
    const body = (await get(port, '/metrics')).body;
    return metric(body, 'mvrefresh_state_read_ok')[0] === 0 ? body : undefined;
  });
  // no per-view gauge from the database stays behind, frozen at its last value
  expect(metric(blind, 'mvrefresh_view_staleness_seconds{')).toEqual([]);
  expect(metric(blind, 'mvrefresh_view_consecutive_failures{')).toEqual([]);
  expect(metric(blind, 'mvrefresh_state_last_read_timestamp_seconds')[0]).toBeGreaterThan(0);
  for (const p of [port, probePort]) {
    const ready = await get(p, '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready', mode: 'degraded' });
    expect(JSON.parse(ready.body).reason).toMatch(reason);
  }
  await undo();
  await waitFor('the metrics to recover', async () => {
    const body = (await get(port, '/metrics')).body;
    return (
      metric(body, 'mvrefresh_state_read_ok')[0] === 1 &&
      metric(body, 'mvrefresh_view_staleness_seconds{').length === 1
    );
  });
  expect(JSON.parse((await get(probePort, '/readyz')).body)).toEqual({ status: 'ready' });
}

describe('monitoring that says when it cannot see', () => {
  it('reads the state to begin with: staleness gauges and state_read_ok 1', async () => {
    await waitFor('the first state read', async () => {
      const body = (await get(d.running.port, '/metrics')).body;
      return (
        metric(body, 'mvrefresh_state_read_ok')[0] === 1 &&
        metric(body, 'mvrefresh_view_staleness_seconds{').length === 1
      );
    });
  });

  it("with USAGE on schema mvrefresh revoked from the daemon's role: gauges dropped, state_read_ok 0, /readyz degraded", async () => {
    await db.sql.query(`REVOKE USAGE ON SCHEMA mvrefresh FROM ${DAEMON}`);
    await expectBlindThenRecovered(/permission denied/, async () => {
      await db.sql.query(`GRANT USAGE ON SCHEMA mvrefresh TO ${DAEMON}`);
    });
  });

  it('with view_state locked ACCESS EXCLUSIVE by another session: the same, within the lock timeout', async () => {
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    try {
      await locker.query('BEGIN; LOCK TABLE mvrefresh.view_state IN ACCESS EXCLUSIVE MODE');
      await expectBlindThenRecovered(/lock timeout/, async () => {
        await locker.query('ROLLBACK');
      });
    } finally {
      await locker.end();
    }
  });
});

describe('a dropped trigger on a table the daemon does not own', () => {
  it('names once, at error level, which role must run what to repair it, not at every check', async () => {
    await db.sql.query('DROP TRIGGER mvrefresh_mark ON orders');
    const named = () => d.logs.filter((l) => l['event'] === 'trigger_repair_forbidden');
    for (let i = 0; i < 3; i += 1) {
      const checks = d.logs.filter((l) => l['event'] === 'source_drift').length;
      d.running.driftChecker.check('interval');
      await waitFor('a drift check to report the missing trigger', () =>
        d.logs.filter((l) => l['event'] === 'source_drift').length > checks ? true : undefined,
      );
    }
    expect(named()).toHaveLength(1);
    expect(named()[0]).toMatchObject({
      level: 'error',
      view: 'public.monthly_product_sales',
      err: expect.stringMatching(/permission denied/),
      action: expect.stringMatching(/mvrefresh watch public\.monthly_product_sales` again as the DDL role/),
    });
    await db.sql.query("SELECT mvrefresh.watch('monthly_product_sales')");
  });
});

describe('failures that cannot be recorded', () => {
  it('are counted (mvrefresh_failure_records_failed_total) when new connections are read-only', async () => {
    // the other daemon, whose sessions are older than the setting, would record its own failures
    await d.stop();
    await db.sql.query(`ALTER DATABASE ${db.name} SET default_transaction_read_only = on`);
    // a daemon whose connections are all new: refreshes and their failure records run read-only
    const ro = await startDaemon(db.url).catch((err: unknown) => err as Error);
    try {
      expect(ro).not.toBeInstanceOf(Error);
      const daemon = ro as TestDaemon;
      // the superuser session of the test is older than the setting: its write marks the view
      await db.sql.query(INSERT_ORDER);
      await waitFor('an unrecorded failure to be counted', async () => {
        const body = (await get(daemon.running.port, '/metrics')).body;
        return (metric(body, 'mvrefresh_failure_records_failed_total{')[0] ?? 0) >= 1;
      });
    } finally {
      if (!(ro instanceof Error)) await ro.stop();
      await db.sql.query(`ALTER DATABASE ${db.name} RESET default_transaction_read_only`);
    }
  });
});
