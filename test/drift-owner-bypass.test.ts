import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { doctor } from '../src/commands/doctor.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon } from './support/daemon.js';
import { waitFor } from './support/wait.js';
import { roleUrl, withClient } from './support/roles.js';
import { insertsReported, viewDirty } from './support/drift.js';

/**
 * What the owner of a watched table can do to keep writes from marking views, when the daemon's role owns
 * the views but not the table (it has SELECT and TRIGGER on it, as `mvrefresh grants` prints): the drift
 * check must keep finding it, keep the views refreshed, and say so (check_drift's changes, status, doctor).
 */
const db = useTestDatabase('drift_owner_bypass');
const suffix = `${process.pid}`;
const OWNER = `mvr_bypass_owner_${suffix}`;
const DAEMON = `mvr_bypass_daemon_${suffix}`;
const TABLES = ['a', 'b', 'c', 'd'];
const PASSWORD = 'drift-owner-bypass-pw';

const urlFor = (user: string) => roleUrl(db.url, user, PASSWORD);
const as = <T>(user: string, fn: (c: pg.Client) => Promise<T>) => withClient(urlFor(user), fn);

interface DriftRow {
  view: string;
  changes: string[];
}

const checkDrift = () =>
  as(
    DAEMON,
    async (c) => (await c.query<DriftRow>('SELECT view, changes FROM mvrefresh.check_drift(1000)')).rows,
  );
const changesOf = (rows: DriftRow[], view: string) => rows.find((r) => r.view === view)?.changes ?? [];
const refreshDirty = () => as(DAEMON, (c) => c.query('CALL mvrefresh.refresh_dirty()'));

async function warnings(view: string): Promise<string[]> {
  const { rows } = await db.sql.query<{ warnings: string[] }>(
    'SELECT warnings FROM mvrefresh.status WHERE view = $1',
    [view],
  );
  return rows[0]!.warnings;
}

const dirty = (view: string) => viewDirty(db.sql, view);

/** The view holds its table's row count. */
async function fresh(table: string): Promise<boolean> {
  const { rows } = await db.sql.query<{ same: boolean }>(
    `SELECT (SELECT n FROM ${pg.escapeIdentifier(`v${table}`)}) = (SELECT count(*) FROM ${pg.escapeIdentifier(table)}) AS same`,
  );
  return rows[0]!.same;
}

/**
 * A write the trigger missed: view v<table> is clean until the drift check, whose changes for it are
 * `changes`, marks it; a refresh then brings it up to date.
 */
async function expectFoundByDriftCheck(table: string, changes: unknown[]): Promise<void> {
  const view = `public.v${table}`;
  expect(await dirty(view)).toBe(false);
  expect(changesOf(await checkDrift(), view)).toEqual(changes);
  expect(await dirty(view)).toBe(true);
  await refreshDirty();
  expect(await fresh(table)).toBe(true);
}

const reported = (table: string, inserted: number) => insertsReported(db.sql, table, inserted);

beforeAll(async () => {
  await db.sql
    .query(`CREATE ROLE ${OWNER} LOGIN PASSWORD '${PASSWORD}'; CREATE ROLE ${DAEMON} LOGIN PASSWORD '${PASSWORD}';
    GRANT CREATE, USAGE ON SCHEMA public TO ${OWNER}, ${DAEMON};
    GRANT USAGE ON SCHEMA mvrefresh TO ${DAEMON};
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA mvrefresh TO ${DAEMON};
    GRANT USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA mvrefresh TO ${DAEMON};
    GRANT EXECUTE ON ALL ROUTINES IN SCHEMA mvrefresh TO ${DAEMON};
    GRANT pg_read_all_stats TO ${DAEMON};`);
  await as(OWNER, async (c) => {
    for (const t of TABLES)
      await c.query(`CREATE TABLE ${t} (k int NOT NULL); GRANT SELECT, TRIGGER ON ${t} TO ${DAEMON}`);
  });
  await as(DAEMON, async (c) => {
    for (const t of TABLES) {
      await c.query(`CREATE MATERIALIZED VIEW v${t} AS SELECT count(*) AS n FROM ${t}`);
      await c.query(`CREATE UNIQUE INDEX ON v${t} (n)`);
      await c.query('SELECT mvrefresh.watch($1)', [`v${t}`]);
    }
  });
  await refreshDirty();
  await checkDrift();
});

afterAll(async () => {
  await db.sql.query(`SELECT mvrefresh.unwatch_all()`).catch(() => undefined);
  for (const t of TABLES)
    await db.sql.query(`DROP MATERIALIZED VIEW IF EXISTS v${t}; DROP TABLE IF EXISTS ${t}`);
  await db.sql.query(`DROP FUNCTION IF EXISTS public.not_ours()`);
  for (const role of [DAEMON, OWNER]) {
    await db.sql.query(`DROP OWNED BY ${role}`);
    await db.sql.query(`DROP ROLE IF EXISTS ${role}`);
  }
});

describe("a table owner who is not the daemon's role", () => {
  it('cannot stop the drift check for every view with a trigger of its own named mvrefresh_mark (issue 23, finding 5)', async () => {
    await as(OWNER, (c) =>
      c.query(`
        CREATE FUNCTION public.not_ours() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
        DROP TRIGGER mvrefresh_mark ON a;
        CREATE TRIGGER mvrefresh_mark AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON a
          FOR EACH STATEMENT EXECUTE FUNCTION public.not_ours();
        ALTER TABLE b DISABLE TRIGGER mvrefresh_mark;
        INSERT INTO a VALUES (1);
        INSERT INTO b VALUES (1);`),
    );
    const drift = await checkDrift();
    expect(changesOf(drift, 'public.va')).toEqual([
      expect.stringMatching(
        /^foreign trigger on public\.a: its trigger named mvrefresh_mark runs public\.not_ours\(\)/,
      ),
    ]);
    expect(changesOf(drift, 'public.vb')).toEqual(['trigger disabled on public.b']);
    expect(await dirty('public.va')).toBe(true);
    expect(await dirty('public.vb')).toBe(true);
    expect(await warnings('public.va')).toContainEqual(
      expect.stringMatching(/^foreign trigger on public\.a: /),
    );
    await refreshDirty();
    expect(await fresh('a')).toBe(true);
    expect(await fresh('b')).toBe(true);

    // found again at every check: the views cannot stay stale
    await as(OWNER, (c) => c.query('INSERT INTO a VALUES (2)'));
    await expectFoundByDriftCheck('a', [expect.stringMatching(/^foreign trigger on public\.a: /)]);

    const findings = await as(DAEMON, (c) => doctor(c));
    expect(findings).toContainEqual({
      level: 'problem',
      check: 'triggers',
      message: expect.stringMatching(/^a: its trigger named mvrefresh_mark runs not_ours\(\)/) as string,
    });
    // watch names it instead of failing
    const report = await as(DAEMON, async (c) => {
      await c.query('CREATE MATERIALIZED VIEW va_again AS SELECT count(*) AS n FROM a');
      await c.query('CREATE UNIQUE INDEX ON va_again (n)');
      return (await c.query<{ r: { warnings: string[] } }>("SELECT mvrefresh.watch('va_again') AS r"))
        .rows[0]!.r;
    });
    expect(report.warnings).toContainEqual(
      expect.stringMatching(
        /^foreign trigger on public\.a: its trigger named mvrefresh_mark runs public\.not_ours\(\)/,
      ),
    );
    await as(DAEMON, (c) => c.query("SELECT mvrefresh.unwatch('va_again'); DROP MATERIALIZED VIEW va_again"));

    await as(OWNER, (c) =>
      c.query('DROP TRIGGER mvrefresh_mark ON a; ALTER TABLE b ENABLE TRIGGER mvrefresh_mark'),
    );
    expect(changesOf(await checkDrift(), 'public.va')).toEqual(['trigger missing on public.a']);
    expect(await warnings('public.va')).not.toContainEqual(expect.stringMatching(/^foreign trigger/));
    const { rows } = await db.sql.query<{ ours: boolean }>(
      `SELECT tgfoid = 'mvrefresh.mark_table()'::regprocedure AS ours FROM pg_trigger
        WHERE tgrelid = 'a'::regclass AND tgname = 'mvrefresh_mark'`,
    );
    expect(rows).toEqual([{ ours: true }]);
    await refreshDirty();
  });

  it('cannot hide a TRUNCATE from the views by disabling the trigger around it (issue 23, finding 6)', async () => {
    await as(OWNER, (c) => c.query('INSERT INTO c VALUES (1), (2)'));
    await reported('c', 2);
    // the drift check marks views for the counters that moved since its last check: refreshed after it
    await refreshDirty();
    await checkDrift();
    await refreshDirty();
    expect(await dirty('public.vc')).toBe(false);
    await as(OWNER, (c) =>
      c.query(`BEGIN;
               ALTER TABLE c DISABLE TRIGGER mvrefresh_mark;
               TRUNCATE c;
               ALTER TABLE c ENABLE ALWAYS TRIGGER mvrefresh_mark;
               COMMIT`),
    );
    await expectFoundByDriftCheck('c', [expect.stringMatching(/^truncate of public\.c fired no trigger/)]);
    const findings = await as(DAEMON, (c) => doctor(c));
    expect(findings).toContainEqual({
      level: 'warn',
      check: 'drift check',
      message: expect.stringMatching(
        /^truncate of public\.c fired no trigger.*\(unmarked_truncate, last found /,
      ) as string,
    });
  });

  it('gets one refresh, and no warning, for a TRUNCATE that fired the trigger and for a VACUUM FULL', async () => {
    await as(OWNER, (c) => c.query('INSERT INTO c VALUES (3)'));
    await refreshDirty();
    await checkDrift();
    await as(OWNER, (c) => c.query('TRUNCATE c'));
    expect(changesOf(await checkDrift(), 'public.vc')).toEqual([]);
    await refreshDirty();
    expect(await fresh('c')).toBe(true);
    await checkDrift();
    await as(OWNER, (c) => c.query('VACUUM FULL c'));
    expect(changesOf(await checkDrift(), 'public.vc')).toEqual([]);
    expect(await dirty('public.vc')).toBe(true);
    await refreshDirty();
  });

  it('cannot make the trigger fire only under session_replication_role = replica unnoticed (issue 23, finding 6)', async () => {
    await as(OWNER, (c) =>
      c.query('ALTER TABLE d ENABLE REPLICA TRIGGER mvrefresh_mark; INSERT INTO d VALUES (1)'),
    );
    expect(changesOf(await checkDrift(), 'public.vd')).toContainEqual(
      expect.stringMatching(/^replica trigger on public\.d: trigger mvrefresh_mark is ENABLE REPLICA/),
    );
    expect(await dirty('public.vd')).toBe(true);
    await refreshDirty();
    expect(await fresh('d')).toBe(true);
    // a standing condition: reported, and the view marked, at every check
    expect(changesOf(await checkDrift(), 'public.vd')).toContainEqual(
      expect.stringMatching(/^replica trigger on public\.d/),
    );
    expect(await dirty('public.vd')).toBe(true);
    expect(await warnings('public.vd')).toContainEqual(
      expect.stringMatching(/^replica trigger on public\.d: /),
    );
    const findings = await as(DAEMON, (c) => doctor(c));
    expect(findings).toContainEqual({
      level: 'problem',
      check: 'triggers',
      message: expect.stringMatching(/^d: trigger mvrefresh_mark is ENABLE REPLICA/) as string,
    });
    await as(OWNER, (c) => c.query('ALTER TABLE d ENABLE ALWAYS TRIGGER mvrefresh_mark'));
    expect(changesOf(await checkDrift(), 'public.vd')).toEqual([]);
    expect(await warnings('public.vd')).not.toContainEqual(expect.stringMatching(/^replica trigger/));
    await refreshDirty();
  });
});

describe('a drift check that fails', () => {
  it('is counted, recorded for doctor, and clears once a check succeeds again', async () => {
    const d = await startDaemon(urlFor(DAEMON), { driftCheckIntervalMs: 300 });
    try {
      const count = async (result: string) =>
        (await d.running.metrics.driftChecks.get()).values
          .filter((v) => v.labels['result'] === result)
          .reduce((n, v) => n + v.value, 0);
      await waitFor('a drift check to succeed', async () => (await count('ok')) > 0);
      // the daemon's role loses a privilege the check needs
      await db.sql.query(`REVOKE SELECT ON mvrefresh.table_files FROM ${DAEMON}`);
      await waitFor('a drift check to fail', async () => (await count('error')) > 0);
      await waitFor('doctor to report the failing check', async () => {
        const findings = await as(DAEMON, (c) => doctor(c));
        return findings.some(
          (f) => f.level === 'problem' && f.check === 'drift check' && /permission denied/.test(f.message),
        );
      });
      expect(d.logs.some((l) => l['event'] === 'drift_check_failed')).toBe(true);
      const before = await count('ok');
      await db.sql.query(`GRANT SELECT ON mvrefresh.table_files TO ${DAEMON}`);
      await waitFor('a drift check to succeed again', async () => (await count('ok')) > before);
      const findings = await as(DAEMON, (c) => doctor(c));
      expect(findings.filter((f) => f.check === 'drift check' && f.level === 'problem')).toEqual([]);
    } finally {
      await d.stop();
    }
  });
});
