import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { judgeSchema, readSchemaState } from '../src/db/compat.js';
import { installedVersion, latestVersion, loadMigrations, migrate } from '../src/db/migrate.js';
import { CHANNEL, SCHEMA_CHANGED } from '../src/db/protocol.js';
import { migrationsDir } from '../src/paths.js';
import { useTestDatabase } from './support/db.js';

const db = useTestDatabase('migrate');

/** A copy of migrations/ that a test may change. */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mvrefresh-migrations-'));
  await cp(migrationsDir, dir, { recursive: true });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function notificationsDuring(fn: () => Promise<void>): Promise<string[]> {
  const listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  const seen: string[] = [];
  listener.on('notification', (n) => {
    if (n.channel === CHANNEL) seen.push(n.payload ?? '');
  });
  try {
    await listener.query(`LISTEN ${CHANNEL}`);
    await fn();
    await listener.query('SELECT 1'); // notifications sent before this round trip have arrived
    return seen;
  } finally {
    await listener.end();
  }
}

describe('migrate', () => {
  it('is idempotent: a second run applies nothing and notifies nobody', async () => {
    let result;
    const seen = await notificationsDuring(async () => {
      result = await migrate(db.sql);
    });
    expect(result).toMatchObject({ applied: [], routines: [] });
    expect(seen).toEqual([]);
    expect(await installedVersion(db.sql)).toBe(await latestVersion());
  });

  it('applies a routine again when its file changes, only that one, and notifies running daemons', async () => {
    const file = join(dir, 'routines', 'due_views.sql');
    await writeFile(file, `${await readFile(file, 'utf8')}-- changed\n`);
    let result;
    const seen = await notificationsDuring(async () => {
      result = await migrate(db.sql, dir);
    });
    expect(result).toMatchObject({ applied: [], routines: ['due_views'] });
    expect(seen).toEqual([SCHEMA_CHANGED]);
    expect((await migrate(db.sql, dir)).routines).toEqual([]);
  });

  it('creates a routine again in the same run when a migration drops it', async () => {
    await writeFile(
      join(dir, '0900_drop_due_views.sql'),
      `-- compatibility: breaks older daemons
DROP FUNCTION mvrefresh.due_views();
DELETE FROM mvrefresh.routines WHERE name = 'due_views';
`,
    );
    const result = await migrate(db.sql, dir);
    expect(result.applied.map((m) => m.version)).toEqual([900]);
    expect(result.routines).toEqual(['due_views']);
    await db.sql.query('SELECT * FROM mvrefresh.due_views()');
    // a build that knows only the committed migrations must stop on this schema
    const state = await readSchemaState(db.sql);
    expect(state).toEqual({ version: 900, breakingVersion: 900 });
    expect(judgeSchema(state, await latestVersion())).toMatchObject({ ok: false, reason: 'incompatible' });
  });

  it('refuses a migration that does not say whether it breaks running daemons', async () => {
    await writeFile(join(dir, '0901_silent.sql'), 'SELECT 1;\n');
    await expect(loadMigrations(dir)).rejects.toThrow(/0901_silent.sql does not say whether it breaks/);
    await rm(join(dir, '0901_silent.sql'));
  });

  it('judges a schema: missing or older needs migrate, newer works unless a newer migration breaks it', () => {
    expect(judgeSchema({ version: null, breakingVersion: 0 }, 4)).toMatchObject({
      ok: false,
      message: expect.stringContaining('run `mvrefresh migrate`'),
    });
    expect(judgeSchema({ version: 3, breakingVersion: 3 }, 4)).toMatchObject({
      ok: false,
      reason: 'older',
      message: expect.stringContaining('run `mvrefresh migrate`'),
    });
    expect(judgeSchema({ version: 4, breakingVersion: 3 }, 4)).toEqual({ ok: true, newer: false });
    expect(judgeSchema({ version: 6, breakingVersion: 4 }, 4)).toEqual({ ok: true, newer: true });
    expect(judgeSchema({ version: 6, breakingVersion: 5 }, 4)).toMatchObject({
      ok: false,
      reason: 'incompatible',
      message: expect.stringContaining('deploy the new mvrefresh version'),
    });
  });

  it('five migrators starting together on an empty database all succeed and apply each version once', async () => {
    const admin = new pg.Client({ connectionString: db.adminUrl });
    await admin.connect();
    const fresh = `${db.name}_fresh`;
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(fresh)}`);
    const url = db.url.replace(db.name, fresh);
    try {
      const clients = await Promise.all(
        Array.from({ length: 5 }, async () => {
          const c = new pg.Client({ connectionString: url });
          await c.connect();
          return c;
        }),
      );
      try {
        const results = await Promise.all(clients.map((c) => migrate(c)));
        const appliedVersions = results.flatMap((r) => r.applied.map((m) => m.version)).sort((a, b) => a - b);
        // every version of the tree once; numbers reserved by work on other branches may be missing
        const versions = (await loadMigrations()).map((m) => m.version);
        expect(appliedVersions).toEqual(versions);
        expect(results.filter((r) => r.routines.length > 0)).toHaveLength(1);
        const { rows } = await clients[0]!.query<{ n: string }>(
          'SELECT count(*) AS n FROM mvrefresh.migrations',
        );
        expect(Number(rows[0]!.n)).toBe(versions.length);
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
    } finally {
      await admin.query(`DROP DATABASE ${pg.escapeIdentifier(fresh)} WITH (FORCE)`);
      await admin.end();
    }
  });
});
