import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { routinesDir } from '../src/db/migrate.js';
import { DRIFT_KINDS, OUTCOMES, sqlConstants } from '../src/db/protocol.js';
import { migrationsDir } from '../src/paths.js';
import { routineText } from './support/gates.js';

/**
 * src/db/protocol.ts is the one list of what the routines answer: the daemon, tests, the demo and the
 * benchmarks import it instead of keeping copies, so the routines must not answer anything it leaves out.
 */
describe('the vocabulary of src/db/protocol.ts', () => {
  it('lists every outcome refresh_view() and record_failure() produce', async () => {
    const produced = new Set<string>();
    for (const file of ['refresh_view', 'record_failure', 'refresh_dirty']) {
      const text = await routineText(file);
      for (const m of text.matchAll(/(?:outcome\s*(?::=|=)\s*)'([a-z_]+)'/g)) produced.add(m[1]!);
    }
    expect(produced.size).toBeGreaterThan(5);
    expect(OUTCOMES).toEqual(expect.arrayContaining([...produced]));
  });

  it('gives every drift kind a placeholder, {{DRIFT_<KIND>}}, through which check_drift() names each one', async () => {
    const file = await readFile(join(routinesDir(migrationsDir), 'check_drift.sql'), 'utf8');
    for (const kind of DRIFT_KINDS) {
      const name = `DRIFT_${kind.toUpperCase()}`;
      expect(sqlConstants[name]).toBe(`'${kind}'`);
      expect(file).toContain(`{{${name}}}`);
      expect(file).not.toContain(`'${kind}'`);
    }
  });
});
