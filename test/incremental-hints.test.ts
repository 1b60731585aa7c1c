import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { useTestDatabase } from './support/db.js';

/**
 * `watch --incremental` tells the user when recomputing a key of a view kept by key reads a large source
 * whole (src/incremental/hints.ts): each apply would scan it; and when a count(DISTINCT) view recomputed by
 * key would be kept by probes with an index leading with its group's and its value's columns (analyze.ts).
 */
const db = useTestDatabase('incremental_hints');

async function watchIncremental(view: string): Promise<{ code: number | null; text: string }> {
  const p = runCli(['watch', view, '--incremental'], { DATABASE_URL: db.url });
  const { code } = await p.exit;
  return { code, text: p.text() };
}

describe('watch --incremental of a view recomputed by key', () => {
  beforeAll(async () => {
    await db.sql.query(`
      CREATE TABLE events (id bigint PRIMARY KEY, account_id int NOT NULL, kind int NOT NULL);
      INSERT INTO events SELECT g, g % 2000, g % 7 FROM generate_series(1, 20000) g;
      CREATE TABLE tagged (id bigint PRIMARY KEY, account_id int NOT NULL, tag int NOT NULL);
      INSERT INTO tagged SELECT g, g % 2000, g % 5 FROM generate_series(1, 20000) g;
      CREATE INDEX ON tagged (account_id);
      ANALYZE events, tagged;
      CREATE MATERIALIZED VIEW account_kinds AS
        SELECT account_id, count(DISTINCT kind) AS kinds FROM events GROUP BY account_id;
      CREATE UNIQUE INDEX ON account_kinds (account_id);
      CREATE MATERIALIZED VIEW account_tags AS
        SELECT account_id, count(DISTINCT tag) AS tags FROM tagged GROUP BY account_id;
      CREATE UNIQUE INDEX ON account_tags (account_id);
      CREATE TABLE labelled (id bigint PRIMARY KEY, account_id int NOT NULL, label int NOT NULL);
      INSERT INTO labelled SELECT g, g % 2000, g % 5 FROM generate_series(1, 20000) g;
      CREATE INDEX ON labelled (label, account_id);
      ANALYZE labelled;
      CREATE MATERIALIZED VIEW account_labels AS
        SELECT account_id, count(DISTINCT label) AS labels FROM labelled GROUP BY account_id;
      CREATE UNIQUE INDEX ON account_labels (account_id);`);
  });

  it('hints at an index when recomputing a key reads the whole source', async () => {
    const r = await watchIncremental('account_kinds');
    expect(r.code).toBe(0);
    expect(r.text).toContain('is incremental');
    expect(r.text).toContain(
      'hint: recomputing a key of public.account_kinds reads all of public.events (about 20,000 rows)',
    );
    expect(r.text).toContain('an index on public.events starting with the column(s) the key (account_id)');
  });

  it("hints only at the count(DISTINCT)'s probe index when an index finds the key rows", async () => {
    const r = await watchIncremental('account_tags');
    expect(r.code).toBe(0);
    expect(r.text).toContain('is incremental');
    expect(r.text).not.toContain('reads all of');
    expect(r.text).toContain(
      'hint: tags of public.account_tags (a count(DISTINCT)) is recomputed from every row of each changed group: an index on public.tagged (account_id, tag)',
    );
  });

  it('says nothing when the count(DISTINCT) is kept by probes of an index', async () => {
    const r = await watchIncremental('account_labels');
    expect(r.code).toBe(0);
    expect(r.text).toContain('is incremental');
    expect(r.text).not.toContain('hint:');
    const { rows } = await db.sql.query<{ probe: boolean }>(
      `SELECT i.statements -> 'delta' ? 'probe' AS probe FROM mvrefresh.incremental i
         JOIN mvrefresh.view_state v ON v.id = i.view_id WHERE v.view_name = 'account_labels'`,
    );
    expect(rows[0]?.probe).toBe(true);
  });
});
