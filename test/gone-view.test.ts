import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatStatus, viewStatus } from '../src/commands/admin.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { viewMatches } from './support/shop.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('gone_view');
const QUERY = 'SELECT kind, count(*) AS n FROM events GROUP BY kind';

let d: TestDaemon | undefined;

async function createView() {
  await db.sql.query(`CREATE MATERIALIZED VIEW event_counts AS ${QUERY};
    CREATE UNIQUE INDEX ON event_counts (kind);`);
}

beforeAll(async () => {
  await db.sql.query(`CREATE TABLE events (id serial PRIMARY KEY, kind text NOT NULL);
    INSERT INTO events (kind) VALUES ('a'), ('b');`);
  await createView();
  await db.sql.query("SELECT mvrefresh.watch('event_counts')");
  d = await startDaemon(db.url, { backoffBaseMs: 100, backoffMaxMs: 300 });
});

afterAll(async () => {
  await d?.stop();
});

describe('a watched view that the application drops', () => {
  it('is said once, plainly, with the command to run; status shows it gone, the failure gauge stays 0; re-created, it is refreshed again', async () => {
    const daemon = d!;
    await waitFor('the first refresh', () => daemon.reports.some((r) => r.outcome === 'refreshed'));
    await db.sql.query('DROP MATERIALIZED VIEW event_counts');
    await db.exec("INSERT INTO events (kind) VALUES ('c')");
    await waitFor(
      'several attempts on the gone view',
      () => daemon.reports.filter((r) => r.outcome === 'gone').length >= 3,
    );
    const said = daemon.logs.filter((l) => l['event'] === 'view_gone');
    expect(said).toHaveLength(1);
    expect(said[0]!['level']).toBe('warn');
    expect(said[0]!['msg']).toContain('run: mvrefresh unwatch public.event_counts');
    // no refresh line at warn or error level for it: nothing to page about
    expect(
      daemon.logs.filter(
        (l) => l['event'] === 'refresh' && (l['level'] === 'warn' || l['level'] === 'error'),
      ),
    ).toEqual([]);

    const status = formatStatus(await viewStatus(db.sql), { maxStalenessMs: 200, refreshBudget: 1 });
    const row = status.split('\n').find((l) => l.startsWith('public.event_counts'))!;
    expect(row.split(/\s{2,}/)[1]).toBe('gone');
    expect(status).toContain('else run: mvrefresh unwatch public.event_counts');
    const metrics = await (await fetch(`http://127.0.0.1:${daemon.running.port}/metrics`)).text();
    expect(metrics).toMatch(/mvrefresh_view_consecutive_failures\{view="public.event_counts"\} 0/);
    expect(metrics).toMatch(/mvrefresh_refreshes_total\{[^}]*outcome="gone"/);

    // a migration that re-creates it in a second transaction: refreshed again, no re-watch
    await createView();
    await db.exec("INSERT INTO events (kind) VALUES ('d')");
    await waitFor('the re-created view equal to its query', () => viewMatches(db.sql, 'event_counts', QUERY));
    await waitFor('said back', () => daemon.logs.some((l) => l['event'] === 'view_back'));
  });
});
