import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { routinesDir } from '../../src/db/migrate.js';
import { expandRoutine } from '../../src/db/placeholders.js';
import { migrationsDir } from '../../src/paths.js';
import { delay } from './wait.js';

/**
 * A routine with a gate at every gap between its statements, for enumerating interleavings inside it: a
 * gate is `PERFORM pg_catalog.pg_advisory_xact_lock_shared(key)`, one key per gap. A session running the
 * routine passes every open gate and stops at the one whose key the test holds exclusively, until the test
 * lets go. Shared and transaction-scoped: any number of sessions pass an open gate, and a procedure's gates
 * are gone after its COMMIT. The gated routine replaces the original under the same name in the test's own
 * database, so that every caller (triggers, refresh_dirty) runs it.
 *
 * Gaps are found in the text, not named: a gate follows every line of the body whose code ends a statement
 * (`;` at the end of the line, comments aside), from the body's BEGIN up to a stop line, except after
 * RETURN (dead code) and COMMIT (a new transaction: beyond the range). So the enumeration follows the
 * routine as it is written, whatever statements a fix adds or moves.
 */
export interface Gap {
  key: number;
  /** 1-based line of the routine file after which the gate stands. */
  line: number;
  /** The statement's last line, trimmed: names the gap in test titles. */
  after: string;
}

export interface GatedRoutine {
  /** CREATE OR REPLACE text of the gated routine, placeholders filled in. */
  sql: string;
  gaps: Gap[];
}

const STATEMENT_END = /;\s*(--.*)?$/;

/**
 * The routine of migrations/routines/<file>.sql with a gate in every gap of its body up to (not past) the
 * first line matching `stop` (or the body's end), keys from `firstKey` on.
 */
export function gatedRoutine(file: string, firstKey: number, stop?: RegExp): GatedRoutine {
  const name = file.endsWith('.sql') ? file : `${file}.sql`;
  const text = expandRoutine(name, readFileSync(join(routinesDir(migrationsDir), name), 'utf8'));
  const lines = text.split('\n');
  const dollar = lines.findIndex((l) => l.includes('$$'));
  const begin = lines.findIndex((l, i) => i > dollar && /^BEGIN\s*$/.test(l));
  if (dollar < 0 || begin < 0) throw new Error(`${name}: no $$ ... BEGIN body`);
  const bodyEnd = lines.findIndex((l, i) => i > begin && /^END\s*$/.test(l));
  let end = stop ? lines.findIndex((l, i) => i > begin && stop.test(l)) : bodyEnd;
  if (end < 0) end = bodyEnd;
  const gaps: Gap[] = [];
  const out: string[] = [];
  lines.forEach((l, i) => {
    out.push(l);
    if (i <= begin || i >= end) return;
    const code = l.replace(/--.*$/, '').trim();
    if (!STATEMENT_END.test(code) || /^(RETURN|COMMIT)\b/i.test(code)) return;
    const key = firstKey + gaps.length;
    gaps.push({ key, line: i + 1, after: code });
    out.push(`    PERFORM pg_catalog.pg_advisory_xact_lock_shared(${key}::pg_catalog.int8);`);
  });
  // the REVOKE / GRANT lines after the body keep their meaning: the routine keeps its name
  return { sql: out.join('\n'), gaps };
}

/** The original routine, placeholders filled in (to put back what gatedRoutine replaced). */
export function plainRoutine(file: string): string {
  const name = file.endsWith('.sql') ? file : `${file}.sql`;
  return expandRoutine(name, readFileSync(join(routinesDir(migrationsDir), name), 'utf8'));
}

/** A gate the test holds closed on a connection of its own. */
export class Gate {
  private constructor(
    private readonly client: pg.Client,
    readonly key: number,
  ) {}

  static async close(url: string, key: number): Promise<Gate> {
    const client = new pg.Client({ connectionString: url, application_name: 'mvrefresh:test-gate' });
    await client.connect();
    await client.query('SELECT pg_advisory_lock($1::bigint)', [key]);
    return new Gate(client, key);
  }

  /** Sessions stopped at this gate. */
  async waiting(): Promise<number> {
    const { rows } = await this.client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
          AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [this.key],
    );
    return rows[0]!.n;
  }

  /**
   * Resolves true once a session stops at the gate, false when `done` settles first (the routine took a
   * path without this gap).
   */
  async reached(done: Promise<unknown>, timeoutMs = 10_000): Promise<boolean> {
    let settled = false;
    void done.then(
      () => (settled = true),
      () => (settled = true),
    );
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
      if ((await this.waiting()) > 0) return true;
      if (settled) return false;
      await delay(5);
    }
    throw new Error(`nothing reached gate ${this.key} nor finished within ${timeoutMs} ms`);
  }

  /** Opens the gate for good and closes the connection. */
  async open(): Promise<void> {
    await this.client.end();
  }
}
