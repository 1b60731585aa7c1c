import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { INSERT_ORDER, watchShop } from './support/shop.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('refresh_connections');
/** Refreshes each test asks for. */
const REFRESHES = 6;

/** Pids of the daemon's refresh connections now. */
async function refreshPids(): Promise<number[]> {
  const { rows } = await db.sql.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
      WHERE application_name = 'mvrefresh:refresh' AND datname = current_database()`,
  );
  return rows.map((r) => r.pid);
}

beforeAll(async () => {
  await watchShop(db.sql);
});

describe('refresh connections are replaced (a backend that repeats REFRESH CONCURRENTLY slows down)', () => {
  let d: TestDaemon | undefined;
  afterAll(async () => {
    await d?.stop();
  });

  it('after refreshConnectionMaxUses cycles', async () => {
    d = await startDaemon(db.url, { concurrency: 1, refreshConnectionMaxUses: 2 });
    const seen = new Set<number>();
    for (let i = 0; i < REFRESHES; i += 1) {
      const before = d.reports.filter((r) => r.outcome === 'refreshed').length;
      await db.exec(INSERT_ORDER);
      await waitFor(
        'the refresh of the write',
        () => d!.reports.filter((r) => r.outcome === 'refreshed').length > before,
      );
      // a replaced backend may linger in pg_stat_activity for a moment after its client ended it
      for (const pid of await refreshPids()) seen.add(pid);
    }
    // every cycle (refreshed or clean) is a use: at most 2 per connection, so 6 refreshes took 3 or more
    expect(seen.size).toBeGreaterThanOrEqual(3);
    await d.stop();
    d = undefined;
  });

  it('once refreshConnectionMaxAgeMs old, even when idle', async () => {
    d = await startDaemon(db.url, { concurrency: 1, refreshConnectionMaxAgeMs: 1000 });
    const before = d.reports.filter((r) => r.outcome === 'refreshed').length;
    await db.exec(INSERT_ORDER);
    await waitFor(
      'the refresh of the write',
      () => d!.reports.filter((r) => r.outcome === 'refreshed').length > before,
    );
    // the pool's idle timeout is 30 s: a connection gone well before it was ended by its age
    await waitFor(
      'the idle refresh connection to end at its age',
      async () => (await refreshPids()).length === 0,
      {
        timeoutMs: 20_000,
      },
    );
    await d.stop();
    d = undefined;
  });
});
