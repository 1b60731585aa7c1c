import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait.js';
import { PgCluster } from '../../dev/cluster.js';
import { INSERT_ORDER, SHOP_QUERY, viewMatches } from '../support/shop.js';
import {
  connect,
  createShop,
  exec,
  expectQuietAndFresh,
  killCli,
  QUALIFIED_VIEW,
  spawnCli,
  VIEW,
  type Proc,
} from './harness.js';

const DATABASE = 'standby';
/** Far longer than a refusal takes: a daemon that retried a standby would still be waiting at the end. */
const STARTUP_TIMEOUT_MS = 60_000;
/** A refusal is one connection and two queries: well under this. */
const REFUSAL_MS = 15_000;

let primary: PgCluster;
let standby: PgCluster | undefined;
let standbyUrl: string;
let primaryUrl: string;
const procs: Proc[] = [];

function cli(args: string[], env: Record<string, string> = {}): Proc {
  const p = spawnCli(args, { DATABASE_URL: standbyUrl, ...env });
  procs.push(p);
  return p;
}

beforeAll(async () => {
  primary = await PgCluster.create();
  await primary.start();
  primaryUrl = await createShop(primary, DATABASE);
  standby = await primary.standby();
  await standby.start();
  standbyUrl = standby.url(DATABASE);
  // a hot standby: in recovery, answering queries, with the primary's migrated schema
  await waitFor('the standby to answer with the migrated schema', async () => {
    const c = await connect(standbyUrl);
    try {
      const { rows } = await c.query<{ recovery: boolean; views: string }>(
        'SELECT pg_is_in_recovery() AS recovery, (SELECT count(*) FROM mvrefresh.view_state) AS views',
      );
      return rows[0]?.recovery === true && rows[0].views === '1';
    } finally {
      await c.end();
    }
  });
});

afterAll(async () => {
  for (const p of procs) await killCli(p);
  await standby?.cleanup();
  await primary?.cleanup();
});

describe('a hot standby', () => {
  it('`mvrefresh run` refuses it at once: exit 1, a message naming the standby, no retry loop', async () => {
    const t0 = Date.now();
    const p = cli(['run'], { MVREFRESH_STARTUP_TIMEOUT_MS: String(STARTUP_TIMEOUT_MS) });
    const { code } = await p.exit;
    const tookMs = Date.now() - t0;
    expect(code).toBe(1);
    expect(tookMs).toBeLessThan(REFUSAL_MS);
    const events = p.events();
    expect(events.filter((e) => e['event'] === 'starting')).toHaveLength(1);
    expect(events.filter((e) => e['event'] === 'database_unreachable')).toEqual([]);
    const failed = events.filter((e) => e['event'] === 'startup_failed');
    expect(failed).toHaveLength(1);
    expect(String(failed[0]!['err'])).toMatch(/standby \(in recovery\)/);
    expect(events.some((e) => e['event'] === 'fatal' || e['event'] === 'started')).toBe(false);
    expect(p.text()).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  it.each([['watch', QUALIFIED_VIEW], ['unwatch', QUALIFIED_VIEW], ['unwatch', '--all'], ['migrate']])(
    '`mvrefresh %s` fails with a message naming the standby',
    async (command, ...args) => {
      const p = cli([command, ...args]);
      expect((await p.exit).code).toBe(1);
      expect(p.text()).toContain(
        `mvrefresh ${command}: the database is a standby (in recovery): ${command} needs the primary`,
      );
      expect(p.text()).not.toMatch(/\n\s+at /);
    },
  );

  it('`mvrefresh status` still reads it', async () => {
    const p = cli(['status', '--json']);
    expect((await p.exit).code).toBe(0);
    const rows = JSON.parse(p.text()) as { view: string }[];
    expect(rows.map((r) => r.view)).toEqual([QUALIFIED_VIEW]);
  });

  it('is served by the daemon on the primary: the refreshed view replicates to it', async () => {
    const p = spawnCli(['run'], { DATABASE_URL: primaryUrl });
    procs.push(p);
    await waitFor('the daemon to listen', () => p.events().some((e) => e['event'] === 'listener_connected'));
    await exec(primaryUrl, INSERT_ORDER);
    const onPrimary = await connect(primaryUrl);
    const onStandby = await connect(standbyUrl);
    try {
      await expectQuietAndFresh(onPrimary);
      await waitFor('the standby to replay the refresh', () => viewMatches(onStandby, VIEW, SHOP_QUERY));
      await expectQuietAndFresh(onStandby);
    } finally {
      await onPrimary.end();
      await onStandby.end();
    }
    expect(p.child.exitCode).toBe(null);
    p.child.kill('SIGTERM');
    expect((await p.exit).code).toBe(0);
  });
});
