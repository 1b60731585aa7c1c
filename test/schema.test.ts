import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { migrationsDir } from '../src/paths.js';
import { useTestDatabase } from './support/db.js';
import { dumpSchema } from './support/schema-dump.js';

const db = useTestDatabase('schema');
const DUMP = join(migrationsDir, 'schema-dump.txt');

describe('the migrated schema', () => {
  it('matches the committed dump (regenerate with npm run schema:dump)', async () => {
    const actual = await dumpSchema(db.sql);
    if (process.env['UPDATE_SCHEMA_DUMP']) await writeFile(DUMP, actual);
    expect(actual).toBe(await readFile(DUMP, 'utf8'));
  });
});
