import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grantsSql, resolveTargets } from '../src/commands/grants.js';
import { installDdlWatch } from '../src/db/ddl-watch.js';
import { MigratorAboveOwnerError, migrate } from '../src/db/migrate.js';
import { runCli } from './support/cli.js';
import { startDaemon } from './support/daemon.js';
import { useTestDatabase } from './support/db.js';
import { SHOP_SQL } from './support/shop.js';
import { unpinnedTransactions, unqualifiedNames } from './support/sql-tokens.js';
import { waitFor } from './support/wait.js';
import { roleUrl, testRoles, withClient } from './support/roles.js';

/**
 * The functions without a SET clause, on purpose (the write path's cost): every name qualified instead
 * (the generated capture functions of incremental views too: test/incremental-one-trigger.test.ts).
 */
const QUALIFIED_ONLY = new Set(['mark_table', 'mark_relid']);
const SAFE = 'search_path=pg_catalog, pg_temp';

const db = useTestDatabase('search_path');
const { WRITER, PLANTER, DDL, DAEMON, OWNER } = testRoles(
  'sp',
  'WRITER',
  'PLANTER',
  'DDL',
  'DAEMON',
  'OWNER',
);
const PASSWORD = 'search-path-pw';
const FRESH = `${db.name}_ddl`;

const urlFor = (user: string, database: string) => roleUrl(db.url, user, PASSWORD, database);
const as = <T>(user: string, database: string, fn: (c: pg.Client) => Promise<T>) =>
  withClient(urlFor(user, database), fn);

interface Routine {
  name: string;
  kind: 'f' | 'p';
  config: string[] | null;
  src: string;
}

beforeAll(async () => {
  for (const role of [WRITER, PLANTER, DDL, DAEMON, OWNER])
    await db.sql.query(`CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}'`);
});

afterAll(async () => {
  for (const role of [WRITER, PLANTER, DDL, DAEMON, OWNER]) {
    await db.sql.query(`DROP OWNED BY ${role}`);
    await db.sql.query(`DROP ROLE IF EXISTS ${role}`);
  }
});

describe('the routines of schema mvrefresh', () => {
  it('pin search_path: a SET clause on every function, qualified names in mark_table, a pinned start of each procedure transaction', async () => {
    const { rows } = await db.sql.query<Routine>(
      `SELECT p.proname AS name, p.prokind AS kind, p.proconfig AS config, p.prosrc AS src
         FROM pg_proc p WHERE p.pronamespace = 'mvrefresh'::regnamespace ORDER BY 1`,
    );
    expect(rows.length).toBeGreaterThan(10);
    const problems: string[] = [];
    for (const r of rows) {
      if (QUALIFIED_ONLY.has(r.name)) {
        for (const f of unqualifiedNames(r.src)) problems.push(`${r.name}: ${f}`);
        if (r.config !== null) problems.push(`${r.name}: a SET clause (its cost was meant to be avoided)`);
      } else if (r.kind === 'p') {
        for (const i of unpinnedTransactions(r.src)) problems.push(`${r.name}: transaction ${i} not pinned`);
        const declared = unqualifiedNames(r.src).filter((f) => f.startsWith('declaration'));
        for (const f of declared) problems.push(`${r.name}: ${f}`);
      } else if (!(r.config ?? []).includes(SAFE)) problems.push(`${r.name}: no SET ${SAFE}`);
    }
    expect(problems).toEqual([]);
  });

  it('finds what the tokenizer must find: unqualified calls, declarations, casts and operators, not those in comments or strings', () => {
    const bad = `DECLARE x text; y pg_catalog.int4; BEGIN
      x := format('%s', 1)::text;  -- format( in a comment
      IF y = 1 THEN RETURN; END IF; END`;
    expect(unqualifiedNames(bad)).toEqual([
      'declaration of x: type text',
      'function format',
      'cast to text',
      'operator =',
    ]);
    const good = `DECLARE x pg_catalog.text; BEGIN
      x := pg_catalog.format('a = b(c)', 1)::pg_catalog.text; /* y = z() */
      IF pg_catalog.length(x) OPERATOR(pg_catalog.>) 1 THEN SELECT pg_catalog.count(*) INTO x; END IF; END`;
    expect(unqualifiedNames(good)).toEqual([]);
    expect(
      unpinnedTransactions(`DECLARE a pg_catalog.int4; BEGIN
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        a := 1; COMMIT;
        a := 2; COMMIT; END`),
    ).toEqual([1]);
  });
});

describe('a writer with INSERT only (finding 1)', () => {
  it('runs no code as the trigger function’s owner through a pg_temp.text domain', async () => {
    await db.sql.query(`CREATE TABLE pwn_target (g int, v int);
        CREATE MATERIALIZED VIEW pwn_view AS SELECT g, sum(v) AS s FROM pwn_target GROUP BY g;
        CREATE UNIQUE INDEX ON pwn_view (g);
        SELECT mvrefresh.watch('pwn_view');
        CREATE TABLE pwn_log (who text);
        GRANT INSERT ON pwn_log TO PUBLIC;
        GRANT INSERT ON pwn_target TO ${WRITER};`);
    await as(WRITER, db.name, async (c) => {
      await c.query(`CREATE FUNCTION pg_temp.pwn(v pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS
          $$BEGIN INSERT INTO public.pwn_log VALUES (current_user); RETURN true; END$$`);
      await c.query('CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.pwn(VALUE))');
      await c.query('INSERT INTO pwn_target (g, v) VALUES (1, 1)');
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await c.query('INSERT INTO pwn_target (g, v) VALUES (2, 1)');
      await c.query('COMMIT');
    });
    const { rows } = await db.sql.query<{ who: string }>('SELECT who FROM pwn_log');
    expect(rows).toEqual([]);
  });
});

describe('a role with CREATE on public (finding 3)', () => {
  it('never has its public.format(text, name, name) called by the daemon’s drift check, `mvrefresh status` or `doctor` run as postgres', async () => {
    await db.sql.query(`CREATE TABLE fmt_src (k int PRIMARY KEY, v int);
      INSERT INTO fmt_src VALUES (1, 1);
      CREATE MATERIALIZED VIEW fmt_view AS SELECT k, v FROM fmt_src;
      CREATE UNIQUE INDEX ON fmt_view (k);
      SELECT mvrefresh.watch('fmt_view');
      CREATE TABLE format_calls (who text, at timestamptz DEFAULT now());
      GRANT INSERT ON format_calls TO PUBLIC;
      GRANT CREATE ON SCHEMA public TO ${PLANTER};`);
    await as(PLANTER, db.name, (c) =>
      c.query(`CREATE FUNCTION public.format(f text, a name, b name) RETURNS text LANGUAGE plpgsql AS
        $$BEGIN INSERT INTO public.format_calls (who) VALUES (current_user);
                RETURN pg_catalog.format(f, a, b); END$$`),
    );
    // the trap works on a session with the default search_path
    await db.exec("SELECT format('%I.%I', 'a'::name, 'b'::name)");
    const calls = async () => (await db.sql.query<{ who: string }>('SELECT who FROM format_calls')).rows;
    expect(await calls()).toEqual([{ who: 'postgres' }]);
    await db.sql.query('DELETE FROM format_calls');

    const d = await startDaemon(db.url, { driftCheckIntervalMs: 300 });
    try {
      const checks = () => d.logs.filter((l) => l['event'] === 'source_drift').length;
      await db.sql.query('ALTER TABLE fmt_src DISABLE TRIGGER mvrefresh_mark');
      await waitFor('a drift check that repairs the trigger', async () => {
        const { rows } = await db.sql.query<{ tgenabled: string }>(
          "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'fmt_src'::regclass AND tgname = 'mvrefresh_mark'",
        );
        return rows[0]?.tgenabled === 'A' || checks() > 0;
      });
      for (const args of [['status'], ['status', '--json'], ['doctor']]) {
        const p = runCli(args, { DATABASE_URL: db.url });
        expect((await p.exit).code, p.text()).toBe(args[0] === 'doctor' ? (await p.exit).code : 0);
      }
    } finally {
      await d.stop();
    }
    expect(await calls()).toEqual([]);
  });
});

describe('the DDL event triggers (finding 2)', () => {
  let admin: pg.Client;
  beforeAll(async () => {
    await db.sql.query(`CREATE DATABASE ${FRESH}`);
    admin = new pg.Client({ connectionString: db.url.replace(`/${db.name}`, `/${FRESH}`) });
    await admin.connect();
    await admin.query(`GRANT CREATE, USAGE ON SCHEMA public TO ${OWNER}; SET ROLE ${OWNER}`);
    await admin.query(SHOP_SQL);
    await admin.query('RESET ROLE');
    await admin.query(`REVOKE CREATE ON DATABASE ${FRESH} FROM PUBLIC`);
    await admin.query(
      grantsSql({
        role: DAEMON,
        ddlRole: DDL,
        ownerRole: OWNER,
        targets: await resolveTargets(admin, ['monthly_product_sales']),
      }),
    );
    await as(DDL, FRESH, (c) => migrate(c));
    await installDdlWatch(admin);
  });
  afterAll(async () => {
    await admin?.end();
    await db.sql.query(`DROP DATABASE IF EXISTS ${FRESH} WITH (FORCE)`);
  });

  it('execute a function owned by the installer in a schema the DDL role cannot create in', async () => {
    const { rows } = await admin.query(
      `SELECT e.evtname, p.oid::regprocedure::text AS fn, pg_get_userbyid(p.proowner) AS owner,
              has_schema_privilege($1, p.pronamespace, 'CREATE') AS ddl_may_create,
              has_schema_privilege($1, p.pronamespace, 'USAGE') AS ddl_may_use
         FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid ORDER BY 1`,
      [DDL],
    );
    expect(rows).toEqual(
      [
        ['mvrefresh_ddl', 'ddl_changed'],
        ['mvrefresh_drop', 'ddl_changed'],
        ['mvrefresh_refresh', 'refresh_guard'],
      ].map(([evtname, fn]) => ({
        evtname,
        fn: `mvrefresh_ddl_watch.${fn}()`,
        owner: 'postgres',
        ddl_may_create: false,
        ddl_may_use: false,
      })),
    );
  });

  it('do not let the DDL role make itself superuser by redefining their function', async () => {
    const escalate = (
      schema: string,
    ) => `CREATE OR REPLACE FUNCTION ${schema}.ddl_changed() RETURNS event_trigger
      LANGUAGE plpgsql AS $$BEGIN
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
          EXECUTE 'ALTER ROLE ${DDL} SUPERUSER';
        END IF;
      END$$`;
    // the function the triggers run is out of reach; one of the same name in the DDL role's schema is inert
    await expect(as(DDL, FRESH, (c) => c.query(escalate('mvrefresh_ddl_watch')))).rejects.toMatchObject({
      code: '42501',
    });
    await as(DDL, FRESH, (c) => c.query(escalate('mvrefresh')));
    await admin.query('CREATE TABLE after_the_plant (k int)');
    const { rows } = await admin.query('SELECT rolsuper FROM pg_roles WHERE rolname = $1', [DDL]);
    expect(rows).toEqual([{ rolsuper: false }]);
  });

  it('are still reported to daemons after the application’s DDL', async () => {
    const listener = new pg.Client({ connectionString: urlFor(DAEMON, FRESH) });
    await listener.connect();
    try {
      const seen: string[] = [];
      listener.on('notification', (n) => seen.push(n.payload ?? ''));
      await listener.query('LISTEN mvrefresh');
      await admin.query('CREATE TABLE seen_by_the_watch (k int)');
      await waitFor('the ddl notification', () => seen.includes('ddl'));
    } finally {
      await listener.end();
    }
  });

  it('refuses a superuser’s migrate of a schema the DDL role owns: it would run that role’s functions', async () => {
    await expect(migrate(admin)).rejects.toBeInstanceOf(MigratorAboveOwnerError);
  });
});
