import pg from 'pg';
import { expect } from 'vitest';
import { AppName } from '../../src/db/connect.js';
import { migrate } from '../../src/db/migrate.js';
import { runCli, type Proc } from '../support/cli.js';
import type { TestDaemon } from '../support/daemon.js';
import { SHOP_QUERY, viewMatches, SHOP_VIEW, watchShop } from '../support/shop.js';
import { waitFor } from '../support/wait.js';
import type { PgCluster } from '../../dev/cluster.js';

export type { Proc };

export const VIEW = SHOP_VIEW;
export const QUALIFIED_VIEW = `public.${VIEW}`;
/** How long convergence may take after a fault ends: reconnect backoff + staleness target + refresh, generously. */
export const CONVERGE_TIMEOUT_MS = 60_000;
/** A probe of the daemon's HTTP port that takes longer counts as no answer. */
const HTTP_TIMEOUT_MS = 5000;
/** Polling period of the convergence checks (each compares the view with its query). */
const POLL_MS = 200;

/** A superuser client on a database of the cluster; the caller ends it. */
export async function connect(url: string, applicationName = 'mvrefresh:faults-test'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  // a client that is open while the server stops gets an error event: it must not crash the test run
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** A superuser client on `url()`, opened on first use and again after drop(): a server restart ends it. */
export class AdminClient {
  private client: pg.Client | undefined;

  constructor(private readonly url: () => string) {}

  async get(): Promise<pg.Client> {
    this.client ??= await connect(this.url());
    return this.client;
  }

  async drop(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }
}

/** Runs one statement on a new connection (a writer's committed transaction). */
export async function exec(url: string, text: string, values?: unknown[]): Promise<pg.QueryResult> {
  const c = await connect(url, 'mvrefresh:faults-writer');
  try {
    return await c.query(text, values);
  } finally {
    await c.end();
  }
}

/** Creates `database` in the cluster, migrates it, creates the shop and watches its view. */
export async function createShop(cluster: PgCluster, database: string): Promise<string> {
  await exec(cluster.url(), `CREATE DATABASE ${pg.escapeIdentifier(database)}`);
  const url = cluster.url(database);
  const c = await connect(url);
  try {
    await migrate(c);
    await watchShop(c);
  } finally {
    await c.end();
  }
  return url;
}

export interface ViewStatus {
  view: string;
  dirty: boolean;
  cycle_unfinished: boolean;
  consecutive_failures: number;
  last_sqlstate: string | null;
  last_error: string | null;
}

export async function statusOf(client: pg.ClientBase, view: string): Promise<ViewStatus | undefined> {
  const { rows } = await client.query<ViewStatus>(
    `SELECT view, dirty, cycle_unfinished, consecutive_failures, last_sqlstate, last_error
       FROM mvrefresh.status WHERE view = $1`,
    [view],
  );
  return rows[0];
}

/**
 * The end state every case asserts: the view equals its defining query, no watched view is dirty (nor
 * has an unfinished cycle), and the in-process daemon, if any, has nothing queued or running.
 */
export async function expectQuietAndFresh(
  client: pg.ClientBase,
  d?: TestDaemon,
  views: { name: string; query: string }[] = [{ name: VIEW, query: SHOP_QUERY }],
): Promise<void> {
  for (const v of views)
    await waitFor(`${v.name} to equal its query`, () => viewMatches(client, v.name, v.query), {
      timeoutMs: CONVERGE_TIMEOUT_MS,
      intervalMs: POLL_MS,
    });
  await waitFor(
    'no dirty view and an idle daemon',
    async () => {
      const { rows } = await client.query<{ n: string }>(
        'SELECT count(*) AS n FROM mvrefresh.status WHERE dirty OR cycle_unfinished',
      );
      // the drift check at start and after a reconnect may mark views (writes counted since the last check)
      return (
        rows[0]?.n === '0' &&
        (!d ||
          (!d.running.driftChecker.checking &&
            d.running.scheduler.waitingCount === 0 &&
            d.running.refresher.active === 0 &&
            d.running.refresher.queued === 0))
      );
    },
    { timeoutMs: CONVERGE_TIMEOUT_MS, intervalMs: POLL_MS },
  );
  for (const v of views) expect(await viewMatches(client, v.name, v.query)).toBe(true);
}

/** The status code of GET /readyz (0 when the daemon does not answer at all). */
export async function readyz(port: number): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`, {
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    await res.text();
    return res.status;
  } catch {
    return 0;
  }
}

/** Every kind of connection a running daemon holds (src/db/connect.ts). */
const DAEMON_APP_NAMES = [
  AppName.listen,
  AppName.refresh,
  AppName.control,
  AppName.http,
  AppName.verify,
  AppName.replace,
];

/** Connections of the daemon to the database, by application_name. */
export async function daemonConnections(client: pg.ClientBase): Promise<string[]> {
  const { rows } = await client.query<{ application_name: string }>(
    `SELECT application_name FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = ANY($1::text[])
      ORDER BY 1`,
    [DAEMON_APP_NAMES],
  );
  return rows.map((r) => r.application_name);
}

/** Waits until no daemon connection is left on the database of `admin` (a stopped daemon closed them all). */
export async function noDaemonConnectionLeft(admin: AdminClient): Promise<void> {
  await waitFor(
    'no daemon connection left',
    async () => (await daemonConnections(await admin.get())).length === 0,
  );
}

/** Spawns the built CLI, as an operator would (test/support/cli.ts). */
export const spawnCli = (args: string[], env: Record<string, string>): Proc => runCli(args, env);

/** Kills a spawned CLI that a failed test left running. */
export async function killCli(p: Proc | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGKILL');
  await p.exit;
}

/** The daemon's log events with this `event` field, from index `from` on. */
export function eventsOf(
  logs: Record<string, unknown>[],
  event: string,
  from = 0,
): Record<string, unknown>[] {
  return logs.slice(from).filter((l) => l['event'] === event);
}
