import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { migrationsDir } from '../paths.js';
import { SAFE_SEARCH_PATH } from './connect.js';
import { SqlState, isPgError } from './errors.js';
import { expandRoutine } from './placeholders.js';
import { sql } from './sql.js';
import { inTransaction } from './transaction.js';

/**
 * The DDL event triggers (migrations/ddl-watch/install.sql): installed by a role that may create event
 * triggers, executing only SQL text shipped with mvrefresh, never a function stored in schema mvrefresh
 * (which the DDL role owns and could replace with code that the installer, or any superuser running DDL,
 * would then run).
 */
const INSTALL_FILE = join('ddl-watch', 'install.sql');

async function installSql(dir: string): Promise<string> {
  return expandRoutine(INSTALL_FILE, await readFile(join(dir, INSTALL_FILE), 'utf8'));
}

export async function ddlWatchInPlace(db: pg.ClientBase): Promise<boolean> {
  const { rows } = await db.query<{ in_place: boolean }>(sql.ddlWatchInPlace);
  return rows[0]?.in_place ?? false;
}

/**
 * Installs (or re-installs) the event triggers in a transaction of its own; fails with 42501 where this role
 * may not create event triggers.
 */
export async function installDdlWatch(db: pg.ClientBase, dir: string = migrationsDir): Promise<void> {
  const text = await installSql(dir);
  await inTransaction(db, async () => {
    await db.query(sql.pinSearchPath, [SAFE_SEARCH_PATH, true]);
    await db.query(text);
  });
}

/**
 * Inside migrate's transaction: installs the event triggers where they are not in place and this role may
 * create them (a savepoint keeps a refusal from aborting the migration). Says whether they are in place.
 */
export async function tryInstallDdlWatch(db: pg.ClientBase, dir: string = migrationsDir): Promise<boolean> {
  if (await ddlWatchInPlace(db)) return true;
  const text = await installSql(dir);
  await db.query('SAVEPOINT mvrefresh_ddl_watch');
  try {
    await db.query(text);
    await db.query('RELEASE SAVEPOINT mvrefresh_ddl_watch');
    return true;
  } catch (err) {
    if (!isPgError(err) || err.code !== SqlState.insufficientPrivilege) throw err;
    await db.query('ROLLBACK TO SAVEPOINT mvrefresh_ddl_watch');
    return false;
  }
}
