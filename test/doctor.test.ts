import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { doctor, type Finding } from '../src/commands/doctor.js';
import { isBloated } from '../src/db/vacuum.js';
import { packageRoot } from '../src/paths.js';
import { useTestDatabase } from './support/db.js';
import { SHOP_VIEW, watchShop } from './support/shop.js';

const db = useTestDatabase('doctor');
const BIN = join(packageRoot, 'dist', 'src', 'bin.js');
const run = promisify(execFile);
const VIEW = SHOP_VIEW;
const NOBODY = `doctor_nobody_${process.pid}`;

/** Findings other than the server-wide autovacuum setting (the shared test server runs without it). */
const problems = (findings: Finding[]) =>
  findings.filter((f) => f.level === 'problem' && !/^autovacuum is off/.test(f.message));

beforeAll(async () => {
  await watchShop(db.sql);
});

afterAll(async () => {
  await db.sql.query(`DROP ROLE IF EXISTS ${NOBODY}`);
});

describe('mvrefresh doctor', () => {
  it('finds no problem in a database set up as documented, and says what it checked', async () => {
    const findings = await doctor(db.sql);
    expect(problems(findings)).toEqual([]);
    const checks = new Set(findings.map((f) => f.check));
    for (const check of ['server', 'schema', 'autovacuum', 'bloat', 'views', 'event triggers', 'privileges'])
      expect(checks).toContain(check);
    expect(findings.find((f) => f.check === 'server')?.message).toMatch(/supported: 14 to 18/);
  });

  it('names a role that cannot use the schema or refresh the view', async () => {
    await db.sql.query(`CREATE ROLE ${NOBODY}`);
    const found = problems(await doctor(db.sql, { role: NOBODY })).map((f) => f.message);
    expect(found).toContain(`${NOBODY} has no USAGE on schema mvrefresh`);
    expect(found).toContain(
      `${NOBODY} cannot refresh public.${VIEW}: it must own it (or, from 17, have MAINTAIN)`,
    );
  });

  it('names a view without its unique index, a disabled trigger and a table without autovacuum; the CLI exits 1', async () => {
    await db.sql.query('DROP INDEX idx_monthly_product_sales_unique');
    await db.sql.query('ALTER TABLE orders DISABLE TRIGGER mvrefresh_mark');
    await db.sql.query('ALTER TABLE mvrefresh.marks SET (autovacuum_enabled = false)');
    const found = problems(await doctor(db.sql)).map((f) => `${f.check}: ${f.message}`);
    expect(found).toContain(
      `views: public.${VIEW} has no unique index on plain columns: REFRESH ... CONCURRENTLY fails (55000); create one, or watch it with --allow-blocking-refresh`,
    );
    expect(found).toContain('autovacuum: mvrefresh.marks has autovacuum_enabled = false: its dead rows stay');
    const { code, stdout } = await run(process.execPath, [BIN, 'doctor'], {
      env: { PATH: process.env['PATH'] ?? '', DATABASE_URL: db.url },
    }).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    expect(code).toBe(1);
    expect(stdout).toMatch(/^PROBLEM views: public\.monthly_product_sales has no unique index/m);
    expect(stdout).toMatch(/^warn {4}triggers: public\.orders: trigger mvrefresh_mark disabled/m);
    expect(stdout).toMatch(/^\d+ problem\(s\), \d+ warning\(s\)$/m);
  });

  it('calls a table bloated when its dead rows are many and several times its live ones', () => {
    const t = { live: 3000, bytes: 0, vacuumed_ago_s: null, autovacuum_enabled: true };
    expect(isBloated({ ...t, table: 'pg_attribute', dead: 1_600_000 })).toBe(true);
    // one autovacuum period of a busy refresher: many dead rows, but not yet a problem
    expect(isBloated({ ...t, table: 'pg_attribute', dead: 70_000 })).toBe(false);
    expect(isBloated({ ...t, table: 'pg_attribute', live: 500_000, dead: 200_000 })).toBe(false);
    expect(isBloated({ ...t, table: 'mvrefresh.marks', live: 10, dead: 20_000 })).toBe(true);
  });
});
