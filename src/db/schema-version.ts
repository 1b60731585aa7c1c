import type pg from 'pg';
import { judgeSchema, readSchemaState } from './compat.js';
import { latestVersion } from './migrate.js';

export class SchemaMissingError extends Error {
  override name = 'SchemaMissingError';
}

/**
 * Fails with a message that says what to do when this build cannot work with the database's schema:
 * missing or older (run `mvrefresh migrate`), or moved past this build by a breaking migration (deploy the
 * new version). A newer schema that keeps older daemons working is accepted (src/db/compat.ts).
 */
export async function requireSchema(db: pg.ClientBase | pg.Pool): Promise<void> {
  const [state, known] = await Promise.all([readSchemaState(db), latestVersion()]);
  const verdict = judgeSchema(state, known);
  if (!verdict.ok) throw new SchemaMissingError(verdict.message);
}
