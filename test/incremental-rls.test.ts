import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { testRoles } from './support/roles.js';

/**
 * An incremental view holds the rows a REFRESH by its owner would give (issue 27): under a row-level
 * security policy the owner sees only some of a source's rows, while the log holds every change. Deltas
 * added from the log would count rows the owner cannot see, so a view whose owner is subject to a policy
 * of a source is kept by recomputing its groups as the owner (analyze.ts), and one whose source gets a
 * policy later recomputes in full (apply_view.sql) until it is watched again.
 */
const db = useTestDatabase('incremental_rls');
const { OWNER } = testRoles('incrls', 'OWNER');

const VIEWS: Record<string, string> = {
  // count and sum: a delta view without the policy
  by_group: 'SELECT grp, count(*) AS n, sum(amount) AS total FROM public.ledger GROUP BY grp',
  // count(DISTINCT) by probes of (grp, account) without the policy
  accounts: 'SELECT grp, count(DISTINCT account) AS accounts FROM public.ledger GROUP BY grp',
};

async function count(sql: string): Promise<number> {
  return Number((await db.sql.query<{ n: string }>(sql)).rows[0]!.n);
}

/** Rows that differ between the view and its definition evaluated as the owner. */
async function differs(view: string): Promise<number> {
  const def = VIEWS[view]!;
  await db.sql.query(`SET ROLE ${OWNER}`);
  try {
    return await count(
      `SELECT count(*) AS n FROM ((TABLE ${view} EXCEPT ALL ${def}) UNION ALL (${def} EXCEPT ALL TABLE ${view})) d`,
    );
  } finally {
    await db.sql.query('RESET ROLE');
  }
}

async function watch(view: string): Promise<void> {
  const p = runCli(['watch', view, '--incremental'], { DATABASE_URL: db.url });
  const { code } = await p.exit;
  expect(p.text(), view).toContain('is incremental');
  expect(code).toBe(0);
}

async function write(round: number): Promise<void> {
  await db.sql.query(
    `INSERT INTO ledger (grp, account, amount, hidden)
     SELECT g % 4, (g + $1) % 7, g, g % 3 = 0 FROM generate_series(1, 30) g`,
    [round],
  );
  await db.sql.query('UPDATE ledger SET amount = amount + 1 WHERE id % 5 = $1 % 5', [round]);
  await db.sql.query('DELETE FROM ledger WHERE id % 11 = $1 % 11', [round]);
}

/** Rounds first..last of writes, each applied and every view compared with its definition as the owner. */
async function writeApplyAndCompare(first: number, last: number): Promise<void> {
  for (let round = first; round <= last; round += 1) {
    await write(round);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    for (const v of Object.keys(VIEWS)) expect([v, round, await differs(v)]).toEqual([v, round, 0]);
  }
}

/** How the views' last applies went (mvrefresh.incremental.last_apply_kind), each kind once. */
async function applyKinds(): Promise<string[]> {
  const { rows } = await db.sql.query<{ kind: string }>(
    'SELECT DISTINCT last_apply_kind AS kind FROM mvrefresh.incremental',
  );
  return rows.map((r) => r.kind);
}

describe("an incremental view whose owner is subject to a source's row-level security policy", () => {
  beforeAll(async () => {
    await db.sql.query(`
      CREATE ROLE ${OWNER};
      CREATE TABLE ledger (id bigserial PRIMARY KEY, grp int NOT NULL, account int NOT NULL,
                           amount int NOT NULL, hidden boolean NOT NULL);
      CREATE INDEX ON ledger (grp, account);
      GRANT SELECT ON ledger TO ${OWNER};
      GRANT CREATE ON SCHEMA public TO ${OWNER};
      GRANT TEMPORARY ON DATABASE ${db.name} TO ${OWNER};
      INSERT INTO ledger (grp, account, amount, hidden)
      SELECT g % 4, g % 7, g, g % 3 = 0 FROM generate_series(1, 200) g;`);
    for (const [name, def] of Object.entries(VIEWS)) {
      await db.sql.query(`CREATE MATERIALIZED VIEW ${name} AS ${def}`);
      await db.sql.query(`CREATE UNIQUE INDEX ON ${name} (grp)`);
      await db.sql.query(`ALTER MATERIALIZED VIEW ${name} OWNER TO ${OWNER}`);
    }
  });

  afterAll(async () => {
    await db.sql.query(`DROP OWNED BY ${OWNER}`).catch(() => undefined);
    await db.exec(`DROP ROLE IF EXISTS ${OWNER}`);
  });

  it('is kept by deltas while no policy applies, and equals its definition as the owner', async () => {
    for (const v of Object.keys(VIEWS)) await watch(v);
    // made incremental, nothing changed since: the drift check has nothing to say of them
    expect((await db.sql.query('SELECT view FROM mvrefresh.check_drift(1000)')).rows).toEqual([]);
    await write(1);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    for (const v of Object.keys(VIEWS)) expect([v, await differs(v)]).toEqual([v, 0]);
    expect(await applyKinds()).toEqual(['delta']);
  });

  it('recomputes in full once a policy hides rows from the owner, and stays equal to its definition', async () => {
    await db.sql.query(`ALTER TABLE ledger ENABLE ROW LEVEL SECURITY;
      CREATE POLICY visible ON ledger FOR SELECT TO ${OWNER} USING (NOT hidden)`);
    // the policy changed what the owner sees without any write: the drift check finds it (needs_full)
    const drift = await db.sql.query<{ view: string }>(
      'SELECT view FROM mvrefresh.check_drift(1000) ORDER BY 1',
    );
    expect(drift.rows.map((r) => r.view)).toEqual(['public.accounts', 'public.by_group']);
    await writeApplyAndCompare(2, 4);
    expect(await applyKinds()).toEqual(['full: row-level security']);
  });

  it('is kept by recomputing its groups as the owner when watched again under the policy', async () => {
    for (const v of Object.keys(VIEWS)) {
      const p = runCli(['unwatch', v], { DATABASE_URL: db.url });
      expect((await p.exit).code).toBe(0);
      await watch(v);
    }
    await writeApplyAndCompare(5, 7);
    expect(await applyKinds()).toEqual(['keys']);
  });
});
