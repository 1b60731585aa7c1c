import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grantsSql, resolveTargets } from '../src/commands/grants.js';
import { migrate } from '../src/db/migrate.js';
import { useTestDatabase } from './support/db.js';
import { startDaemon } from './support/daemon.js';
import { INSERT_ORDER, SHOP_QUERY, SHOP_SQL, viewMatches } from './support/shop.js';
import { PG17, serverVersionNum } from './support/version.js';
import { waitFor } from './support/wait.js';
import { roleUrl, testRoles, withClient } from './support/roles.js';

/** The daemon as a role without superuser, owning nothing of the application: what `mvrefresh grants` prints. */
const db = useTestDatabase('privileges');
const { OWNER, DAEMON, DDL, WRITER, MAINTAINER } = testRoles(
  'app',
  'OWNER',
  'DAEMON',
  'DDL',
  'WRITER',
  'MAINTAINER',
);
const PASSWORD = 'least-privilege-pw';
const FRESH = `${db.name}_fresh`;

const urlFor = (user: string, database: string) => roleUrl(db.url, user, PASSWORD, database);
const as = <T>(user: string, fn: (c: pg.Client) => Promise<T>) => withClient(urlFor(user, FRESH), fn);

let admin: pg.Client;
let grants: string;

beforeAll(async () => {
  await db.exec(`CREATE DATABASE ${FRESH}`);
  admin = new pg.Client({ connectionString: db.url.replace(`/${db.name}`, `/${FRESH}`) });
  await admin.connect();
  for (const role of [OWNER, DAEMON, DDL, WRITER, MAINTAINER])
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}'`);
  await admin.query(`GRANT CREATE, USAGE ON SCHEMA public TO ${OWNER}`);
  await admin.query(`SET ROLE ${OWNER}`);
  await admin.query(SHOP_SQL);
  await admin.query('CREATE TABLE unrelated (k int)');
  await admin.query(
    `GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO ${WRITER}; GRANT USAGE ON SEQUENCE order_ids TO ${WRITER}`,
  );
  await admin.query('RESET ROLE');
  await admin.query('REVOKE CREATE ON DATABASE ' + FRESH + ' FROM PUBLIC');
  grants = grantsSql({
    role: DAEMON,
    ddlRole: DDL,
    ownerRole: OWNER,
    targets: await resolveTargets(admin, ['monthly_product_sales']),
  });
  await admin.query(grants);
});

afterAll(async () => {
  await admin?.end();
  await db.exec(`DROP DATABASE IF EXISTS ${FRESH} WITH (FORCE)`);
  for (const role of [DAEMON, DDL, WRITER, MAINTAINER, OWNER]) await db.exec(`DROP ROLE IF EXISTS ${role}`);
});

describe('least privileges', () => {
  it('lets the DDL role printed by `mvrefresh grants` migrate and watch, and the runtime role keep a view fresh, without superuser', async () => {
    const { rows } = await admin.query<{ rolsuper: boolean }>(
      'SELECT rolsuper FROM pg_roles WHERE rolname = $1',
      [DAEMON],
    );
    expect(rows[0]!.rolsuper).toBe(false);
    await as(DDL, (c) => migrate(c));
    await as(DDL, (c) => c.query("SELECT mvrefresh.watch('public.monthly_product_sales')"));
    const d = await startDaemon(urlFor(DAEMON, FRESH));
    try {
      await as(WRITER, (c) => c.query(INSERT_ORDER));
      await waitFor('the view to reflect the write', () =>
        as(OWNER, (c) => viewMatches(c, 'monthly_product_sales', SHOP_QUERY)),
      );
      expect(d.reports.filter((r) => r.outcome === 'failed')).toEqual([]);
    } finally {
      await d.stop();
    }
  });

  it('grants TRIGGER only on the tables the view reads, and the runtime role no CREATE anywhere', async () => {
    const triggers = grants.split('\n').filter((l) => l.startsWith('GRANT TRIGGER'));
    expect(triggers).toEqual([
      `GRANT TRIGGER ON TABLE public.order_items TO "${DDL}";`,
      `GRANT TRIGGER ON TABLE public.orders TO "${DDL}";`,
      `GRANT TRIGGER ON TABLE public.products TO "${DDL}";`,
    ]);
    const { rows } = await admin.query(
      `SELECT has_database_privilege($1, current_database(), 'CREATE') AS db_create,
              has_schema_privilege($1, 'mvrefresh', 'CREATE') AS schema_create,
              pg_has_role($1, $2, 'MEMBER') AS ddl_member`,
      [DAEMON, DDL],
    );
    // (before PostgreSQL 17 the runtime role is a member of the views' owner, with all its rights on them)
    expect(rows[0]).toEqual({ db_create: false, schema_create: false, ddl_member: false });
  });

  it('quotes role names that carry dollar quotes, newlines and comment markers', async () => {
    const evil = 'evil$$; DROP TABLE canary; --\nDROP TABLE canary; --';
    const evilDdl = 'x$grants$ DROP TABLE canary; $grants$';
    await admin.query('CREATE TABLE canary (k int)');
    try {
      await admin.query(grantsSql({ role: evil, ddlRole: evilDdl, ownerRole: OWNER }));
      const { rows } = await admin.query('SELECT rolname FROM pg_roles WHERE rolname = ANY ($1) ORDER BY 1', [
        [evil, evilDdl],
      ]);
      expect(rows.map((r: { rolname: string }) => r.rolname)).toEqual([evil, evilDdl]);
      expect((await admin.query("SELECT to_regclass('canary') IS NOT NULL AS ok")).rows[0]).toEqual({
        ok: true,
      });
    } finally {
      for (const r of [evil, evilDdl]) {
        await admin.query(`DROP OWNED BY ${pg.escapeIdentifier(r)}`).catch(() => undefined);
        await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(r)}`);
      }
      await admin.query('DROP TABLE IF EXISTS canary');
    }
  });

  it('gives the application writer no access to the mvrefresh schema', async () => {
    await expect(as(WRITER, (c) => c.query('DELETE FROM mvrefresh.marks'))).rejects.toMatchObject({
      code: '42501',
    });
  });

  it('accepts a role holding MAINTAIN on the view instead of the owner from PostgreSQL 17, and refuses it before', async () => {
    const version = await serverVersionNum(admin);
    await admin.query(`GRANT USAGE ON SCHEMA mvrefresh TO ${MAINTAINER}`);
    const grant = admin.query(`GRANT MAINTAIN ON monthly_product_sales TO ${MAINTAINER}`);
    if (version < PG17) {
      await expect(grant).rejects.toMatchObject({ code: '42601' });
      expect(
        await as(
          MAINTAINER,
          async (c) => (await c.query("SELECT mvrefresh.can_refresh('monthly_product_sales') AS ok")).rows[0],
        ),
      ).toEqual({ ok: false });
      await expect(
        as(MAINTAINER, (c) => c.query("SELECT mvrefresh.watch('public.monthly_product_sales')")),
      ).rejects.toMatchObject({
        code: '42501',
        message: expect.not.stringContaining('MAINTAIN') as unknown,
      });
      return;
    }
    await grant;
    expect(
      await as(
        MAINTAINER,
        async (c) => (await c.query("SELECT mvrefresh.can_refresh('monthly_product_sales') AS ok")).rows[0],
      ),
    ).toEqual({ ok: true });
    await as(MAINTAINER, (c) =>
      c.query('REFRESH MATERIALIZED VIEW CONCURRENTLY public.monthly_product_sales'),
    );
  });
});
