import type pg from 'pg';
import { installedVersion, latestVersion } from './migrate.js';

export class SchemaMissingError extends Error {
  override name = 'SchemaMissingError';
}

/** Fails with a message that says what to run when the schema is missing or older than this build. */
export async function requireSchema(db: pg.ClientBase | pg.Pool): Promise<void> {
  const [have, want] = await Promise.all([installedVersion(db), latestVersion()]);
  if (have === null)
    throw new SchemaMissingError(
      'the mvrefresh schema is not installed in this database: run `mvrefresh migrate` first',
    );
  if (have < want)
    throw new SchemaMissingError(
      `the mvrefresh schema is at version ${have}, this build needs ${want}: run \`mvrefresh migrate\``,
    );
  if (have > want)
    throw new SchemaMissingError(
      `the mvrefresh schema is at version ${have}, newer than this build knows (${want}): upgrade mvrefresh`,
    );
}
