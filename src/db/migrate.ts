import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { migrationsDir } from '../paths.js';
import { CHANNEL, DDL_LOCK_TIMEOUT_MS, MIGRATION_LOCK_KEY, SCHEMA_CHANGED } from './protocol.js';
import { SAFE_SEARCH_PATH } from './connect.js';
import { tryInstallDdlWatch } from './ddl-watch.js';
import { expandRoutine } from './placeholders.js';
import { SqlState, isPgError } from './errors.js';
import { LockHeldError, lockHolders } from './lock-holders.js';
import { retryOnLockTimeout } from './lock-retry.js';
import { sql } from './sql.js';
import { settleClears } from './clears.js';

/**
 * How long migrate waits for a lock before it rolls back and tries again (src/db/lock-retry.ts): shorter
 * than deadlock_timeout, so that the application's writers never queue long behind it or lose a deadlock
 * to it.
 */
export const MIGRATION_LOCK_TIMEOUT = `${DDL_LOCK_TIMEOUT_MS}ms`;

/**
 * A numbered migration: what runs once (tables, indexes, data, signature changes). Its header says whether
 * it breaks daemons of earlier versions that are still running (`-- compatibility: breaks older daemons`)
 * or not (`-- compatibility: keeps older daemons working`); daemons stop by themselves on a breaking one.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  breaking: boolean;
}

/** A function, procedure or view of the schema, from one file of routines/, applied whenever it changes. */
export interface Routine {
  name: string;
  sql: string;
  sha256: string;
}

const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;
const ROUTINE_PATTERN = /^([a-z0-9_]+)\.sql$/;
const COMPATIBILITY = /^-- compatibility: (first version|keeps older daemons working|breaks older daemons)$/m;

export const routinesDir = (dir: string) => join(dir, 'routines');

export async function loadMigrations(dir: string = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = FILE_PATTERN.exec(file);
    if (!match?.[1] || !match[2]) throw new Error(`migration file ${file} is not named NNNN_name.sql`);
    const version = Number(match[1]);
    if (migrations.some((m) => m.version === version))
      throw new Error(`two migrations have version ${version}`);
    const text = expandRoutine(file, await readFile(join(dir, file), 'utf8'));
    const compatibility = COMPATIBILITY.exec(text)?.[1];
    if (!compatibility)
      throw new Error(
        `migration ${file} does not say whether it breaks running daemons ` +
          "(a line '-- compatibility: keeps older daemons working' or '-- compatibility: breaks older daemons')",
      );
    migrations.push({
      version,
      name: match[2],
      sql: text,
      breaking: compatibility === 'breaks older daemons',
    });
  }
  return migrations;
}

/** The routine files, in name order (a routine whose SQL body calls another must sort after it). */
export async function loadRoutines(dir: string = migrationsDir): Promise<Routine[]> {
  const files = (await readdir(routinesDir(dir))).filter((f) => f.endsWith('.sql')).sort();
  const routines: Routine[] = [];
  for (const file of files) {
    const match = ROUTINE_PATTERN.exec(file);
    if (!match?.[1]) throw new Error(`routine file ${file} is not named name.sql (lower case)`);
    const text = expandRoutine(file, await readFile(join(routinesDir(dir), file), 'utf8'));
    routines.push({ name: match[1], sql: text, sha256: createHash('sha256').update(text).digest('hex') });
  }
  return routines;
}

/** The newest schema version this build knows. */
export async function latestVersion(): Promise<number> {
  const all = await loadMigrations();
  return all.at(-1)?.version ?? 0;
}

export interface MigrateResult {
  applied: Migration[];
  routines: string[];
  version: number;
}

/**
 * Applies pending migrations, then every routine whose file changed, in one transaction under one advisory
 * lock: replicas starting together neither fail nor apply a version twice (the second waits, then finds
 * it applied), and no running daemon sees a schema in which a migration dropped a routine that its file
 * has not re-created yet. When anything changed, running daemons are notified (at commit) to check that
 * they still understand the schema.
 */
export async function migrate(db: pg.ClientBase, dir: string = migrationsDir): Promise<MigrateResult> {
  const [migrations, routines] = await Promise.all([loadMigrations(dir), loadRoutines(dir)]);
  return retryOnLockTimeout(() => migrateOnce(db, migrations, routines, dir));
}

async function takeMigrationLock(db: pg.ClientBase): Promise<void> {
  try {
    await db.query(sql.migrationLock);
  } catch (err) {
    if (!isPgError(err) || err.code !== SqlState.lockNotAvailable) throw err;
    // the failed statement aborted the transaction: nothing else runs in it
    await db.query('ROLLBACK');
    const holders = await lockHolders(db, MIGRATION_LOCK_KEY).catch(() => []);
    throw holders.length > 0 ? new LockHeldError("mvrefresh's migration lock", holders) : err;
  }
}

/**
 * A superuser asked to migrate a schema owned by a role without superuser: migrate would run that role's
 * functions (which it may have replaced) with the superuser's rights. The superuser's one step is
 * `mvrefresh install-ddl-watch`, which runs only SQL shipped with mvrefresh.
 */
export class MigratorAboveOwnerError extends Error {
  constructor(readonly owner: string) {
    super(
      `schema mvrefresh belongs to role ${owner}, which is not a superuser: run migrate as that role; ` +
        'a superuser runs only `mvrefresh install-ddl-watch` (the DDL event triggers)',
    );
    this.name = 'MigratorAboveOwnerError';
  }
}

async function migrateOnce(
  db: pg.ClientBase,
  migrations: readonly Migration[],
  routines: readonly Routine[],
  dir: string,
): Promise<MigrateResult> {
  const applied: Migration[] = [];
  const changed: string[] = [];
  await db.query('BEGIN');
  try {
    // the migration lock waits the session's lock_timeout (admin commands: ADMIN_LOCK_TIMEOUT_MS), since
    // another migrate may hold it for a while; then the holder is named rather than retried behind
    await takeMigrationLock(db);
    // the routines' and migrations' SQL binds the catalog's functions and types, whatever the session's path
    await db.query(sql.pinSearchPath, [SAFE_SEARCH_PATH, true]);
    await db.query(sql.setLocalLockTimeout, [MIGRATION_LOCK_TIMEOUT]);
    const owner = (await db.query<{ owner: string }>(sql.schemaOwnerBelowMigrator)).rows[0]?.owner;
    if (owner !== undefined) throw new MigratorAboveOwnerError(owner);
    const exists = (await db.query<{ exists: boolean }>(sql.schemaExists)).rows[0]?.exists;
    if (!exists) await db.query(sql.createSchema);
    await db.query(sql.createMigrationsTable);
    await db.query(sql.addMigrationsBreaking);
    const done = new Set(
      (await db.query<{ version: number }>(sql.appliedMigrations)).rows.map((r) => r.version),
    );
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      await db.query(migration.sql);
      await db.query(sql.recordMigration, [migration.version, migration.name, migration.breaking]);
      applied.push(migration);
    }
    const have = new Map(
      (await db.query<{ name: string; sha256: string }>(sql.appliedRoutines)).rows.map((r) => [
        r.name,
        r.sha256,
      ]),
    );
    for (const routine of routines) {
      if (have.get(routine.name) === routine.sha256) continue;
      await db.query(routine.sql);
      await db.query(sql.recordRoutine, [routine.name, routine.sha256]);
      changed.push(routine.name);
    }
    // triggers follow the watched views (a migration may have replaced the trigger function)
    if (applied.length > 0 || changed.length > 0) {
      await db.query(sql.syncTableTriggers);
      await db.query(sql.notify, [CHANNEL, SCHEMA_CHANGED]);
    }
    // where this role may create event triggers, DDL on the sources is reported to daemons at once
    await tryInstallDdlWatch(db, dir);
    await db.query('COMMIT');
    // sync_table_triggers() may have drawn a clear (routines/settle_clears.sql); best effort
    await settleClears(db);
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return { applied, routines: changed, version: migrations.at(-1)?.version ?? 0 };
}

/** The schema version installed in the database, or null when mvrefresh was never migrated there. */
export async function installedVersion(db: pg.ClientBase | pg.Pool): Promise<number | null> {
  const installed = await db.query<{ installed: boolean }>(sql.schemaInstalled);
  if (!installed.rows[0]?.installed) return null;
  const { rows } = await db.query<{ version: number | null }>(sql.schemaVersion);
  return rows[0]?.version ?? null;
}
