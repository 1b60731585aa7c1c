import type pg from 'pg';
import { SqlState, isPgError } from './errors.js';
import { sql } from './sql.js';

/**
 * The compatibility contract between the schema and the daemons running against it. A build knows the
 * schema versions up to its newest migration. It works with a schema at that version or newer, unless a
 * newer migration says it breaks older daemons (`-- compatibility: breaks older daemons`): migrate keeps
 * every other change compatible (routines keep the signatures earlier builds call). A schema older than
 * the build needs `mvrefresh migrate` first.
 */
export interface SchemaState {
  /** The newest migration applied; null when mvrefresh was never migrated into the database. */
  version: number | null;
  /** The newest applied migration that breaks daemons of earlier versions (0: none). */
  breakingVersion: number;
}

export type SchemaVerdict =
  { ok: true; newer: boolean } | { ok: false; reason: 'missing' | 'older' | 'incompatible'; message: string };

export function judgeSchema(state: SchemaState, known: number): SchemaVerdict {
  const { version, breakingVersion } = state;
  if (version === null)
    return {
      ok: false,
      reason: 'missing',
      message: 'the mvrefresh schema is not installed in this database: run `mvrefresh migrate` first',
    };
  if (version < known)
    return {
      ok: false,
      reason: 'older',
      message: `the mvrefresh schema is at version ${version}, this build needs ${known}: run \`mvrefresh migrate\``,
    };
  if (breakingVersion > known)
    return {
      ok: false,
      reason: 'incompatible',
      message:
        `the mvrefresh schema is at version ${version}, and its version ${breakingVersion} breaks builds that ` +
        `know only up to ${known}: deploy the new mvrefresh version`,
    };
  return { ok: true, newer: version > known };
}

export async function readSchemaState(db: pg.ClientBase | pg.Pool): Promise<SchemaState> {
  const installed = await db.query<{ installed: boolean }>(sql.schemaInstalled);
  if (!installed.rows[0]?.installed) return { version: null, breakingVersion: 0 };
  try {
    const { rows } = await db.query<{ version: number | null; breaking_version: number }>(
      sql.schemaCompatibility,
    );
    return { version: rows[0]?.version ?? null, breakingVersion: rows[0]?.breaking_version ?? 0 };
  } catch (err) {
    // migrated only by builds older than version 4, which had no breaking column: nothing newer applied
    if (!isPgError(err) || err.code !== SqlState.undefinedColumn) throw err;
    const { rows } = await db.query<{ version: number | null }>(sql.schemaVersion);
    return { version: rows[0]?.version ?? null, breakingVersion: 0 };
  }
}
