import { beforeAll, describe, expect, it } from 'vitest';
import type { WatchReport } from '../src/commands/admin.js';
import { useTestDatabase } from './support/db.js';
import { expectOneWarning, watchReport } from './support/warnings.js';

const db = useTestDatabase('clock_warnings');

const watch = (name: string, interval: number | null = null) => watchReport(db.sql, name, interval);

const clockWarnings = (r: WatchReport) => r.warnings.filter((w) => /clock or on randomness/.test(w));

beforeAll(async () => {
  // Lemmy's hot_rank(): PL/pgSQL reading now(); the same in SQL, with a text body and a standard body
  await db.sql.query(`
    CREATE TABLE post (id int PRIMARY KEY, score int NOT NULL, published timestamptz NOT NULL);
    CREATE FUNCTION hot_rank(score numeric, published timestamptz) RETURNS integer LANGUAGE plpgsql IMMUTABLE
      AS $$ BEGIN
        RETURN floor(10000 * log(greatest(1, score + 3)) / power(((EXTRACT(EPOCH FROM (now() - published)) / 3600) + 2), 1.8))::integer;
      END $$;
    CREATE FUNCTION age_hours(published timestamptz) RETURNS numeric LANGUAGE sql STABLE
      AS $$ SELECT extract(epoch FROM (CURRENT_TIMESTAMP - published)) / 3600 $$;
    CREATE FUNCTION age_days(published timestamptz) RETURNS numeric LANGUAGE sql STABLE
      RETURN extract(epoch FROM (clock_timestamp() - published)) / 86400;
    CREATE FUNCTION plus_one(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN x + 1; END $$;
    INSERT INTO post VALUES (1, 5, now() - interval '1 hour');`);
});

describe('the clock warning follows the functions a view calls', () => {
  it('names a PL/pgSQL function that reads now(), called by the view itself', async () => {
    await db.sql
      .query(`CREATE MATERIALIZED VIEW post_hot AS SELECT id, hot_rank(score, published) AS rank FROM post;
      CREATE UNIQUE INDEX ON post_hot (id);`);
    const warnings = clockWarnings(await watch('post_hot'));
    expectOneWarning(warnings, [
      'calls function public.hot_rank(numeric,timestamp with time zone)',
      '(now())',
      '--refresh-interval-ms',
    ]);
  });

  it('names a SQL function (text body) that reads CURRENT_TIMESTAMP, called through a plain view', async () => {
    await db.sql.query(`CREATE VIEW post_ages AS SELECT id, age_hours(published) AS hours FROM post;
      CREATE MATERIALIZED VIEW post_age AS SELECT id, hours FROM post_ages;
      CREATE UNIQUE INDEX ON post_age (id);`);
    const warnings = clockWarnings(await watch('post_age'));
    expectOneWarning(warnings, [
      'calls function public.age_hours(timestamp with time zone)',
      'current_timestamp',
    ]);
  });

  it('names a SQL function with a standard body that reads clock_timestamp(), directly and through a plain view', async () => {
    await db.sql
      .query(`CREATE MATERIALIZED VIEW post_days AS SELECT id, age_days(published) AS days FROM post;
      CREATE UNIQUE INDEX ON post_days (id);
      CREATE VIEW post_days_v AS SELECT id, age_days(published) AS days FROM post;
      CREATE MATERIALIZED VIEW post_days_through AS SELECT id, days FROM post_days_v;
      CREATE UNIQUE INDEX ON post_days_through (id);`);
    for (const view of ['post_days', 'post_days_through']) {
      const warnings = clockWarnings(await watch(view));
      expectOneWarning(
        warnings,
        ['calls function public.age_days(timestamp with time zone)', 'clock_timestamp()'],
        view,
      );
    }
  });

  it('names a PL/pgSQL function through a plain view, and leaves out the hint when the view is periodic', async () => {
    await db.sql.query(`CREATE VIEW post_ranks AS SELECT id, hot_rank(score, published) AS rank FROM post;
      CREATE MATERIALIZED VIEW post_hot_through AS SELECT id, rank FROM post_ranks;
      CREATE UNIQUE INDEX ON post_hot_through (id);`);
    const warnings = clockWarnings(await watch('post_hot_through', 60_000));
    expectOneWarning(warnings, ['public.hot_rank(numeric,timestamp with time zone)']);
    expect(warnings[0]).not.toContain('--refresh-interval-ms');
  });

  it('says nothing of the clock for a function that does not read it', async () => {
    await db.sql.query(`CREATE MATERIALIZED VIEW post_next AS SELECT plus_one(id) AS id FROM post;
      CREATE UNIQUE INDEX ON post_next (id);`);
    expect(clockWarnings(await watch('post_next'))).toEqual([]);
  });
});
