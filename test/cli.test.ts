import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/paths.js';
import { useTestDatabase } from './support/db.js';
import { SHOP_SQL } from './support/shop.js';

const db = useTestDatabase('cli');
const BIN = join(packageRoot, 'dist', 'src', 'bin.js');
const run = promisify(execFile);

/** Runs the built CLI as a user would; never throws, returns exit code and output. */
async function cli(args: string[], env: Record<string, string> = { DATABASE_URL: db.url }) {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  await db.sql.query(SHOP_SQL);
});

describe('the mvrefresh CLI', () => {
  it('--help lists every exit code, 130 of a forced stop of run included', async () => {
    const { code, stdout } = await cli(['--help']);
    expect(code).toBe(0);
    const codes = stdout.slice(stdout.indexOf('Exit codes:'));
    for (const exit of ['0 done', '1 the operation failed', '2 the command line', '130 run'])
      expect(codes).toContain(exit);
  });

  it('migrate reports an up-to-date schema', async () => {
    const r = await cli(['migrate']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/up to date \(version \d+\)/);
  });

  it('watch, then a write shows the view dirty in status and status --json', async () => {
    const w = await cli([
      'watch',
      'public.monthly_product_sales',
      '--max-staleness',
      '2.5s',
      '--refresh-budget',
      '10%',
    ]);
    expect(w.code).toBe(0);
    expect(w.stdout).toMatch(/watching public\.monthly_product_sales \(id \d+\)/);
    expect(w.stdout).toMatch(/triggers on: public\.products, public\.orders, public\.order_items/);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    await db.exec("INSERT INTO orders VALUES (nextval('order_ids'), 1, '2024-05-01')");
    const s = await cli(['status']);
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/public\.monthly_product_sales\s+dirty\s+full\s+-\s+\S+\s+2\.5 s\s+10%/);
    const j = await cli(['status', '--json']);
    const rows = JSON.parse(j.stdout) as { view: string; dirty: boolean; max_staleness_ms: number }[];
    expect(rows).toMatchObject([
      { view: 'public.monthly_product_sales', dirty: true, max_staleness_ms: 2500, refresh_budget: 0.1 },
    ]);
  });

  it('pause keeps a view from being refreshed, with its marks; resume makes it due again', async () => {
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    const p = await cli(['pause', 'monthly_product_sales']);
    expect(p.code).toBe(0);
    expect(p.stdout).toMatch(/^paused public\.monthly_product_sales/);
    await db.exec("INSERT INTO orders VALUES (nextval('order_ids'), 1, '2024-05-02')");
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    const s = await cli(['status']);
    expect(s.stdout).toMatch(/public\.monthly_product_sales\s+paused/);
    const { rows } = await db.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM mvrefresh.due_views()',
    );
    expect(rows[0]!.n).toBe(0);
    const r = await cli(['resume', 'monthly_product_sales', '--json']);
    expect(JSON.parse(r.stdout)).toMatchObject({ paused: false, changed: true, dirty: true });
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    const after = await cli(['status', '--json']);
    expect(JSON.parse(after.stdout)).toMatchObject([{ dirty: false, paused: false }]);
  });

  it('unwatch removes the view', async () => {
    const r = await cli(['unwatch', 'monthly_product_sales']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/unwatched public\.monthly_product_sales; triggers removed from: /);
    expect((await cli(['status'])).stdout).toMatch(/no materialized view is watched/);
  });

  it('watch --with-dependencies, then unwatch --all removes every view and trigger, dependants first', async () => {
    await db.sql.query(`CREATE MATERIALIZED VIEW product_totals AS
        SELECT product_id, sum(total_quantity_sold) AS quantity FROM monthly_product_sales GROUP BY product_id;
      CREATE UNIQUE INDEX ON product_totals (product_id);`);
    const w = await cli(['watch', 'product_totals', '--with-dependencies']);
    expect(w.code).toBe(0);
    expect(w.stdout).toMatch(/reads watched materialized views: public\.monthly_product_sales/);
    const u = await cli(['unwatch', '--all']);
    expect(u.code).toBe(0);
    expect(u.stdout.trim().split('\n')).toEqual([
      'unwatched public.product_totals; triggers removed from: (none)',
      expect.stringMatching(/^unwatched public\.monthly_product_sales; triggers removed from: \S/),
    ]);
    const left = await db.sql.query(
      "SELECT 1 FROM pg_trigger WHERE tgfoid = 'mvrefresh.mark_table()'::regprocedure UNION ALL SELECT 1 FROM mvrefresh.view_state",
    );
    expect(left.rows).toEqual([]);
    expect(JSON.parse((await cli(['status', '--json'])).stdout)).toEqual([]);
    expect((await cli(['unwatch', '--all'])).stdout).toMatch(/no view was watched/);
  });

  it.each([
    [[], /Usage/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['watch'], /exactly one materialized view name/],
    [['watch', 'a', 'b'], /exactly one materialized view name/],
    [['watch', 'v', '--max-staleness', 'soon'], /--max-staleness must be a duration/],
    [['watch', 'v', '--refresh-budget', '150%'], /--refresh-budget must be a share/],
    [['watch', 'v', '--debounce-ms', '900'], /--debounce-ms is retired.*--max-staleness/],
    [['pause'], /pause takes exactly one/],
    [['status', '--bogus'], /Unknown option '--bogus'/],
    [['unwatch'], /one materialized view name, or --all/],
  ])('exits 2 with a message for bad arguments %j', async (args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it('exits 2 without a database URL, and 1 naming a missing view', async () => {
    const none = await cli(['status'], {});
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/DATABASE_URL/);
    const missing = await cli(['watch', 'nowhere']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/materialized view "nowhere" does not exist/);
    const notWatched = await cli(['unwatch', 'nowhere']);
    expect(notWatched.code).toBe(1);
    expect(notWatched.stderr).toMatch(/materialized view "nowhere" is not watched/);
  });

  it('answers a name that needs quoting with a hint that shows how to quote it', async () => {
    const r = await cli(['watch', 'with space']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/invalid materialized view name 'with space'/);
    expect(r.stderr).toMatch(/must be double-quoted.*'"with space"'/);
  });

  it('status prints control characters of view names and errors escaped, never raw', async () => {
    const view = pg.escapeIdentifier('evil\u001b[2J\u0007view');
    await db.sql.query(
      `CREATE MATERIALIZED VIEW ${view} AS SELECT 1 AS k; CREATE UNIQUE INDEX ON ${view} (k)`,
    );
    await db.sql.query('SELECT mvrefresh.watch($1)', [view]);
    try {
      const r = await cli(['status']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('evil\\u001b[2J\\u0007view');
      // eslint-disable-next-line no-control-regex
      expect(r.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f]/);
    } finally {
      await db.sql.query('SELECT mvrefresh.unwatch($1)', [view]);
    }
  });

  it('refuses a connection string with an unknown sslmode or a missing certificate file at once', async () => {
    const bogus = await cli(['status'], { DATABASE_URL: `${db.url}?sslmode=bogus` });
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toMatch(/sslmode="bogus" is not one of/);
    const missing = await cli(['status'], {
      DATABASE_URL: `${db.url}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem`,
    });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/sslrootcert=\/nonexistent\/ca\.pem is not a readable regular file/);
  });

  it('never prints the password of a database it cannot reach', async () => {
    const r = await cli(['status'], { DATABASE_URL: 'postgres://me:sekr3t-pw@127.0.0.1:1/db' });
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).not.toContain('sekr3t-pw');
  });

  it('prints least-privilege SQL for a runtime and a DDL role with quoted identifiers, and needs both', async () => {
    const r = await cli(
      [
        'grants',
        '--role',
        'mv"refresh',
        '--ddl-role',
        'mv ddl',
        '--owner-role',
        'app owner',
        '--view',
        'monthly_product_sales',
      ],
      { DATABASE_URL: db.url },
    );
    expect(r.code).toBe(0);
    // REFRESH needs the owner's membership before PostgreSQL 17, MAINTAIN on the view from 17
    const { rows } = await db.sql.query<{ v: number }>(
      "SELECT current_setting('server_version_num')::int AS v",
    );
    expect(r.stdout).toContain(
      rows[0]!.v >= 170000
        ? 'GRANT MAINTAIN ON TABLE public.monthly_product_sales TO "mv ddl", "mv""refresh";'
        : 'GRANT "app owner" TO "mv ddl", "mv""refresh";',
    );
    // the daemon vacuums the change logs of incremental views (from 17: MAINTAIN; before, the owner's rights)
    if (rows[0]!.v >= 170000)
      expect(r.stdout).toContain('GRANT MAINTAIN ON ALL TABLES IN SCHEMA mvrefresh TO "mv""refresh";');
    else expect(r.stdout).not.toContain('MAINTAIN');
    expect(r.stdout).toContain('GRANT TRIGGER ON TABLE public.orders TO "mv ddl";');
    expect(r.stdout).not.toMatch(/GRANT TRIGGER ON TABLE public\.customers/);
    expect(r.stdout).not.toMatch(/ON DATABASE/);
    expect((await cli(['grants', '--role', 'x'], {})).code).toBe(2);
    expect((await cli(['grants', '--role', 'x', '--ddl-role', 'x'], {})).code).toBe(2);
    const missing = await cli(['grants', '--role', 'x', '--ddl-role', 'y', '--view', 'nowhere']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no such relation: "nowhere"/);
  });

  it('prints its version', async () => {
    expect((await cli(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+/);
  });
});
