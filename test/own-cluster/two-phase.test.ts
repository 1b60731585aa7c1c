import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type TestDaemon } from '../support/daemon.js';
import { notificationsDuring } from '../support/notify.js';
import { INSERT_ORDER, SHOP_QUERY } from '../support/shop.js';
import { viewMatches } from '../support/shop.js';
import { PgCluster } from '../../dev/cluster.js';
import { connect, createShop, expectQuietAndFresh, VIEW } from './harness.js';

/**
 * Two-phase commit (XA) writers: PREPARE TRANSACTION refuses a transaction that executed NOTIFY (0A000),
 * so such writers set mvrefresh.notify = off (docs/operations.md, "Two-phase commit"): the trigger marks
 * the table without notifying and the daemon's sweep finds the mark. Needs max_prepared_transactions > 0,
 * a server setting that only a restart changes: an own cluster, never the shared server.
 */
const DATABASE = 'xa';
const SWEEP_MS = 500;
const FEATURE_NOT_SUPPORTED = '0A000';

let cluster: PgCluster;
let url: string;
let admin: pg.Client;
let d: TestDaemon | undefined;
const clients: pg.Client[] = [];

/** A writer session; with `notifyOff`, set up as the docs say (connection options, as PGOPTIONS would). */
async function writer(notifyOff: boolean): Promise<pg.Client> {
  const u = new URL(url);
  if (notifyOff) u.searchParams.set('options', '-c mvrefresh.notify=off');
  const c = await connect(u.toString(), 'mvrefresh:xa-writer');
  clients.push(c);
  return c;
}

beforeAll(async () => {
  cluster = await PgCluster.create({ max_prepared_transactions: '4' });
  await cluster.start();
  url = await createShop(cluster, DATABASE);
  admin = await connect(url);
  d = await startDaemon(url, { sweepIntervalMs: SWEEP_MS, maxStalenessMs: 100 });
});

afterAll(async () => {
  await d?.stop();
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
  await admin?.query('SELECT gid FROM pg_prepared_xacts').then(async ({ rows }) => {
    for (const r of rows as { gid: string }[]) await admin.query(`ROLLBACK PREPARED '${r.gid}'`);
  });
  await admin?.end().catch(() => undefined);
  await cluster?.cleanup();
});

describe('two-phase commit on a watched table', () => {
  it('PREPARE TRANSACTION fails after a write whose trigger notified (the reason for the setting)', async () => {
    await expectQuietAndFresh(admin, d);
    const w = await writer(false);
    await w.query('BEGIN');
    await w.query(INSERT_ORDER);
    await expect(w.query("PREPARE TRANSACTION 'xa_notified'")).rejects.toMatchObject({
      code: FEATURE_NOT_SUPPORTED,
    });
    await w.query('ROLLBACK').catch(() => undefined);
  });

  it('with mvrefresh.notify = off the writer prepares; its write is reflected after COMMIT PREPARED, found by the sweep without a notification', async () => {
    await expectQuietAndFresh(admin, d);
    const w = await writer(true);
    const sent = await notificationsDuring(url, async () => {
      await w.query('BEGIN');
      await w.query(INSERT_ORDER);
      await w.query("PREPARE TRANSACTION 'xa_quiet_1'");
      // while prepared, another session's cycle may run: the prepared writer is waited for or kept
      expect(await viewMatches(admin, VIEW, SHOP_QUERY)).toBe(true);
      await admin.query("COMMIT PREPARED 'xa_quiet_1'");
    });
    expect(sent).toEqual([]);
    await expectQuietAndFresh(admin, d);
  });

  it('a prepared writer that found the table marked and skipped is waited for by the cycle that takes the mark, and reflected once it commits', async () => {
    await expectQuietAndFresh(admin, d);
    const marks = async () =>
      (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM mvrefresh.table_marks')).rows[0]!.n;
    const [first, second] = [await writer(true), await writer(true)];
    // paused, the view keeps its marks: the second writer deterministically finds the first one's
    await admin.query('SELECT mvrefresh.set_paused($1, true)', [VIEW]);
    await first.query(INSERT_ORDER);
    expect(await marks()).toBe(2); // orders and order_items
    await second.query('BEGIN');
    await second.query(INSERT_ORDER);
    await second.query("PREPARE TRANSACTION 'xa_second'");
    await admin.query('SELECT mvrefresh.set_paused($1, false)', [VIEW]);
    // the daemon's cycle takes the mark; the prepared writer still holds its lock on the table
    await expect.poll(marks, { timeout: 30_000, interval: 100 }).toBe(0);
    await admin.query("COMMIT PREPARED 'xa_second'");
    // it had skipped: no mark of its own, only the cycle's wait (or its kept xid) covers it
    expect(await marks()).toBe(0);
    await expectQuietAndFresh(admin, d);
  });
});
