import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type TestDaemon } from '../support/daemon.js';
import { INSERT_ORDER, SHOP_QUERY, viewMatches } from '../support/shop.js';
import { reportRecovery } from '../support/recovery.js';
import { delay, waitFor } from '../support/wait.js';
import { AppName } from '../../src/db/connect.js';
import { PgCluster, pgBinDir, type StopMode } from '../../dev/cluster.js';
import {
  AdminClient,
  createShop,
  daemonConnections,
  eventsOf,
  exec,
  expectQuietAndFresh,
  killCli,
  noDaemonConnectionLeft,
  readyz,
  spawnCli,
  type Proc,
  VIEW,
} from './harness.js';

/** Longer than pg-listen's retryTimeout (3 s), after which pg-listen itself would give up for good. */
const OUTAGE_MS = 6500;
/**
 * The daemon's log lines per second of outage, beside the one `pool_error` per pooled connection the stop
 * closed: one per capped reconnect or retry, never a storm.
 */
const MAX_LOG_LINES_PER_SECOND = 3;
/** The daemon's pooled connections (each logs `pool_error` once when the server closes it while idle). */
const POOLED = new Set<string>([AppName.refresh, AppName.control, AppName.http, AppName.verify]);
/** The writes made just before the stop are still waiting for their time when the server goes away. */
const TARGET_MS = 1000;
/** Backoffs of this test's daemon: capped at a few seconds, as a short outage would see them in production. */
const DAEMON_SETTINGS = {
  maxStalenessMs: TARGET_MS,
  backoffBaseMs: 500,
  backoffMaxMs: 4000,
  'listener.reconnectMaxDelayMs': 2000,
};
const WRITES = 3;
const SHUTDOWN_GRACE_MS = 3000;
/** Beyond the grace period, a shutdown may take this long (closing pools, the process exiting). */
const SHUTDOWN_MARGIN_MS = 5000;
/** After the restart, the listener is back within its capped backoff (2 s); generously. */
const RECONNECT_TIMEOUT_MS = 30_000;
/** SIGTERM comes this long after the disconnect: the daemon has failed a few reconnects and backs off. */
const IN_BACKOFF_MS = 1000;

let cluster: PgCluster;
let url: string;
const admin = new AdminClient(() => url);

beforeAll(async () => {
  cluster = await PgCluster.create();
  await cluster.start();
  url = await createShop(cluster, 'outage');
  const { rows } = await (await admin.get()).query<{ server_version: string }>('SHOW server_version');
  process.stderr.write(
    `faults: private PostgreSQL ${rows[0]?.server_version} (${(await pgBinDir()).kind}) on port ${cluster.port}\n`,
  );
});

afterAll(async () => {
  await admin.drop();
  await cluster?.cleanup();
});

describe.each<StopMode>(['fast', 'immediate'])(
  'the database stopped with -m %s for longer than pg-listen gives up',
  (mode) => {
    let d: TestDaemon | undefined;
    afterAll(async () => {
      await d?.stop();
    });

    it('is waited for: /readyz 503 meanwhile, no log storm, a reconnect, then every write reflected', async () => {
      d = await startDaemon(url, DAEMON_SETTINGS);
      const { port } = d.running;
      await waitFor('the listener', () => d!.running.listener.connected);
      await expectQuietAndFresh(await admin.get(), d);
      expect(await readyz(port)).toBe(200);

      // committed writes the daemon has been notified of but not refreshed yet
      for (let i = 0; i < WRITES; i += 1) await exec(url, INSERT_ORDER);
      expect(await viewMatches(await admin.get(), VIEW, SHOP_QUERY)).toBe(false);
      const pooled = (await daemonConnections(await admin.get())).filter((n) => POOLED.has(n)).length;
      await admin.drop();
      const logMark = d.logs.length;
      const t0 = Date.now();
      await cluster.stop(mode);
      await waitFor('/readyz to answer 503', async () => (await readyz(port)) === 503);
      await waitFor('the listener to notice', () => !d!.running.listener.connected);
      await delay(Math.max(0, OUTAGE_MS - (Date.now() - t0)));
      expect(await readyz(port)).toBe(503);
      // the lines of the outage itself: a server that comes back fast (embedded binaries) lets the
      // reconnect's own lines in before start() returns
      const outageMs = Date.now() - t0;
      const outageLines = d.logs.slice(logMark);
      await cluster.start();
      const restartedAt = Date.now();

      // writes after the restart, possibly before the listener is back: the catch-up sweep finds them
      for (let i = 0; i < WRITES; i += 1) await exec(url, INSERT_ORDER);
      await waitFor(
        'listener_connected with reconnect: true',
        () => eventsOf(d!.logs, 'listener_connected', logMark).find((e) => e['reconnect'] === true),
        { timeoutMs: RECONNECT_TIMEOUT_MS },
      );
      await waitFor('/readyz to answer 200', async () => (await readyz(port)) === 200, {
        timeoutMs: RECONNECT_TIMEOUT_MS,
      });
      await expectQuietAndFresh(await admin.get(), d);
      reportRecovery(
        `database stopped (-m ${mode}) for ${restartedAt - t0} ms (from the restart)`,
        restartedAt,
      );
      expect(d.reports.filter((r) => r.at > restartedAt && r.outcome === 'refreshed').length).toBeGreaterThan(
        0,
      );

      const perSecond = outageLines.length / (outageMs / 1000);
      process.stderr.write(
        `faults: -m ${mode}: ${outageLines.length} log lines in ${outageMs} ms of outage (${perSecond.toFixed(2)}/s): ${JSON.stringify(
          countBy(outageLines.map((l) => String(l['event']))),
        )}\n`,
      );
      const [poolLines, repeated] = partition(outageLines, (l) => l['event'] === 'pool_error');
      expect(poolLines.length).toBeLessThanOrEqual(pooled);
      expect(repeated.length).toBeLessThanOrEqual(Math.ceil((MAX_LOG_LINES_PER_SECOND * outageMs) / 1000));
      expect(outageLines.some((l) => l['event'] === 'listener_disconnected')).toBe(true);

      await d.stop();
      d = undefined;
      await noDaemonConnectionLeft(admin);
    });
  },
);

describe('SIGTERM while the database is down', () => {
  let p: Proc | undefined;
  afterAll(async () => {
    await killCli(p);
    await cluster.start();
  });

  it('exits 0 within the shutdown grace period while the daemon is in reconnect backoff', async () => {
    p = spawnCli(['run'], {
      DATABASE_URL: url,
      MVREFRESH_SHUTDOWN_GRACE_MS: String(SHUTDOWN_GRACE_MS),
      MVREFRESH_BACKOFF_BASE_MS: '200',
      MVREFRESH_BACKOFF_MAX_MS: '2000',
    });
    const proc = p;
    await waitFor('the daemon to listen', () =>
      proc.events().some((e) => e['event'] === 'listener_connected'),
    );
    await expectQuietAndFresh(await admin.get());
    // a write whose refresh is still to come when the server goes away: a retry is pending too
    await exec(url, INSERT_ORDER);
    await admin.drop();
    await cluster.stop('immediate');
    await waitFor('the daemon to be in reconnect backoff', () =>
      proc.events().some((e) => e['event'] === 'listener_disconnected'),
    );
    await delay(IN_BACKOFF_MS);
    const t0 = Date.now();
    proc.child.kill('SIGTERM');
    const { code, signal } = await proc.exit;
    const tookMs = Date.now() - t0;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(tookMs).toBeLessThan(SHUTDOWN_GRACE_MS + SHUTDOWN_MARGIN_MS);
    expect(proc.events().at(-1)).toMatchObject({ event: 'stopped' });
    expect(proc.events().some((e) => e['event'] === 'fatal' || e['event'] === 'shutdown_timeout')).toBe(
      false,
    );
    process.stderr.write(`faults: SIGTERM while the database is down: exit 0 after ${tookMs} ms\n`);

    // nothing was lost: after the restart, the next daemon refreshes the write
    await cluster.start();
    p = spawnCli(['run'], { DATABASE_URL: url });
    const next = p;
    await expectQuietAndFresh(await admin.get());
    next.child.kill('SIGTERM');
    expect((await next.exit).code).toBe(0);
  });
});

function countBy(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

function partition<T>(values: T[], test: (v: T) => boolean): [T[], T[]] {
  return [values.filter(test), values.filter((v) => !test(v))];
}
