import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { migrationsDir } from '../paths.js';
import { sql } from './sql.js';

/** How long a migration waits for a table lock before it fails rather than queueing behind DDL. */
export const MIGRATION_LOCK_TIMEOUT = '10s';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export async function loadMigrations(dir: string = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = FILE_PATTERN.exec(file);
    if (!match?.[1] || !match[2]) throw new Error(`migration file ${file} is not named NNNN_name.sql`);
    const version = Number(match[1]);
    if (migrations.some((m) => m.version === version))
      throw new Error(`two migrations have version ${version}`);
    migrations.push({ version, name: match[2], sql: await readFile(join(dir, file), 'utf8') });
  }
  return migrations;
}

/** The newest schema version this build knows. */
export async function latestVersion(): Promise<number> {
  const all = await loadMigrations();
  return all.at(-1)?.version ?? 0;
}

export interface MigrateResult {
  applied: Migration[];
  version: number;
}

/**
 * Applies pending migrations, each in its own transaction under one advisory lock, so that replicas
 * starting together neither fail nor apply a version twice: the second waits, then finds it applied.
 */
export async function migrate(db: pg.ClientBase): Promise<MigrateResult> {
  const migrations = await loadMigrations();
  const applied: Migration[] = [];
  for (const migration of migrations) {
    await db.query('BEGIN');
    try {
      await db.query(sql.setLocalLockTimeout, [MIGRATION_LOCK_TIMEOUT]);
      await db.query(sql.migrationLock);
      await db.query(sql.createSchema);
      await db.query(sql.createMigrationsTable);
      const done = new Set(
        (await db.query<{ version: number }>(sql.appliedMigrations)).rows.map((r) => r.version),
      );
      if (done.has(migration.version)) {
        await db.query('COMMIT');
        continue;
      }
      await db.query(migration.sql);
      await db.query(sql.recordMigration, [migration.version, migration.name]);
      await db.query('COMMIT');
      applied.push(migration);
    } catch (err) {
      await db.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }
  return { applied, version: migrations.at(-1)?.version ?? 0 };
}

/** The schema version installed in the database, or null when mvrefresh was never migrated there. */
export async function installedVersion(db: pg.ClientBase | pg.Pool): Promise<number | null> {
  const installed = await db.query<{ installed: boolean }>(sql.schemaInstalled);
  if (!installed.rows[0]?.installed) return null;
  const { rows } = await db.query<{ version: number | null }>(sql.schemaVersion);
  return rows[0]?.version ?? null;
}
