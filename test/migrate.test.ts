import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { installedVersion, latestVersion, migrate } from '../src/db/migrate.js';
import { useTestDatabase } from './support/db.js';

const db = useTestDatabase('migrate');

describe('migrate', () => {
  it('is idempotent: a second run applies nothing', async () => {
    const result = await migrate(db.sql);
    expect(result.applied).toEqual([]);
    expect(await installedVersion(db.sql)).toBe(await latestVersion());
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
        const appliedVersions = results.flatMap((r) => r.applied.map((m) => m.version)).sort();
        const latest = await latestVersion();
        expect(appliedVersions).toEqual(Array.from({ length: latest }, (_, i) => i + 1));
        const { rows } = await clients[0]!.query<{ n: string }>(
          'SELECT count(*) AS n FROM mvrefresh.migrations',
        );
        expect(Number(rows[0]!.n)).toBe(latest);
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
    } finally {
      await admin.query(`DROP DATABASE ${pg.escapeIdentifier(fresh)} WITH (FORCE)`);
      await admin.end();
    }
  });
});
