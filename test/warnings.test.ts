import { beforeAll, describe, expect, it } from 'vitest';
import { formatStatus, viewStatus } from '../src/commands/admin.js';
import { useTestDatabase } from './support/db.js';
import { expectOneWarning, watchReport } from './support/warnings.js';

const db = useTestDatabase('warnings');

const watch = (name: string, interval: number | null = null) => watchReport(db.sql, name, interval);

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE candidates (id int PRIMARY KEY, name text);
    CREATE TABLE totals (candidate_id int PRIMARY KEY, amount numeric);
    CREATE TABLE rates (cur text PRIMARY KEY, rate numeric);
    CREATE TABLE follows (account_id int, target_id int, created_at timestamptz);
    CREATE FUNCTION total_of(c int) RETURNS numeric LANGUAGE plpgsql STABLE
      AS $$ BEGIN RETURN (SELECT amount FROM public.totals WHERE candidate_id = c); END $$;
    CREATE FUNCTION rate_std(c text) RETURNS numeric LANGUAGE sql STABLE
      BEGIN ATOMIC SELECT rate FROM rates WHERE cur = c; END;
    CREATE FUNCTION doubled(x numeric) RETURNS numeric LANGUAGE plpgsql IMMUTABLE
      AS $$ BEGIN RETURN x * 2; END $$;
    CREATE FUNCTION tripled(x numeric) RETURNS numeric LANGUAGE sql IMMUTABLE RETURN x * 3;
    CREATE FUNCTION name_upper(c int) RETURNS text LANGUAGE plpgsql STABLE
      AS $$ BEGIN RETURN (SELECT upper(name) FROM public.candidates WHERE id = c); END $$;`);
});

describe('watch warnings name what they mean', () => {
  it("names a PL/pgSQL function that a plain view calls and the table its body reads (openFEC's pattern)", async () => {
    await db.sql.query(`
      CREATE VIEW candidate_totals AS SELECT id, name, total_of(id) AS total FROM candidates;
      CREATE MATERIALIZED VIEW candidate_summary AS SELECT id, name, total FROM candidate_totals;
      CREATE UNIQUE INDEX ON candidate_summary (id);`);
    const report = await watch('candidate_summary');
    expectOneWarning(report.warnings, [
      'total_of(integer)',
      'plpgsql',
      'not in the catalog',
      'totals',
      '--refresh-interval-ms',
    ]);
  });

  it('names the tables a function with a SQL-standard body reads, from the catalog', async () => {
    await db.sql.query(`
      CREATE MATERIALIZED VIEW priced AS SELECT cur, rate_std(cur) AS r FROM (VALUES ('eur'), ('usd')) v(cur);
      CREATE UNIQUE INDEX ON priced (cur);`);
    const report = await watch('priced');
    expect(report.warnings).toEqual([
      expect.stringMatching(/public\.rate_std\(text\), which reads public\.rates:/),
    ]);
  });

  it('does not warn for functions that read no table, nor for one that reads only tables the view reads anyway', async () => {
    await db.sql.query(`
      CREATE MATERIALIZED VIEW computed AS
        SELECT id, doubled(id) AS d, tripled(id) AS t, name_upper(id) AS u FROM candidates;
      CREATE UNIQUE INDEX ON computed (id);`);
    const report = await watch('computed');
    expect(report.warnings).toEqual([]);
  });

  it('drops the interval hint when the view already has a refresh interval', async () => {
    const report = await watch('priced', 60_000);
    expect(report.warnings).toHaveLength(1);
    expect(report.warnings[0]).not.toContain('--refresh-interval-ms');
  });

  it("warns that a view filtering on now() or current_date goes stale without writes (Mastodon's pattern), and status says so", async () => {
    await db.sql.query(`
      CREATE VIEW recent_follows AS SELECT * FROM follows WHERE created_at > now() - interval '30 days';
      CREATE MATERIALIZED VIEW follow_recommendations AS
        SELECT target_id, count(*) AS n FROM recent_follows WHERE created_at::date <= current_date GROUP BY target_id;
      CREATE UNIQUE INDEX ON follow_recommendations (target_id);`);
    const report = await watch('follow_recommendations');
    expectOneWarning(report.warnings, ['clock', 'now()', 'current_date', '--refresh-interval-ms']);
    const text = formatStatus(await viewStatus(db.sql), { maxStalenessMs: 1000, refreshBudget: 0.2 });
    expect(text).toMatch(/warning: public\.follow_recommendations: .*clock/);
  });

  it('warns about randomness too', async () => {
    await db.sql.query(`
      CREATE MATERIALIZED VIEW sample AS SELECT id FROM candidates WHERE random() < 0.5;
      CREATE UNIQUE INDEX ON sample (id);`);
    const report = await watch('sample');
    expect(report.warnings).toEqual([expect.stringContaining('random()')]);
  });
});
