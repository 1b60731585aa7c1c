import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { routinesDir } from '../../src/db/migrate.js';
import { expandRoutine } from '../../src/db/placeholders.js';
import { migrationsDir } from '../../src/paths.js';
import { waitFor } from './wait.js';

/**
 * Deterministic interleavings inside a routine: a test copy of a PL/pgSQL routine with gates between its
 * statements. A gate is `PERFORM pg_catalog.pg_advisory_xact_lock_shared(key)`: a session running the copy
 * stops there while the test holds the key (holdGate), and goes on when the test releases it. Shared, so
 * that any number of sessions pass an open gate together; transaction-scoped, so a gate taken before a
 * COMMIT inside a procedure is gone after it.
 */
export interface GatePoint {
  /** Insert the gate after the statement containing the first match (ended by the first `;` at a line's end). */
  after?: RegExp | string;
  /** Insert the gate on its own line before the line containing the first match. */
  before?: RegExp | string;
  /** The advisory lock key (bigint) the test holds to close the gate. */
  key: number;
}

export interface GatedCopyOptions {
  /** Qualified name of the copy, e.g. 'mvrefresh.refresh_view_gated'. */
  name: string;
  gates: GatePoint[];
}

const HEADER = /CREATE\s+OR\s+REPLACE\s+(FUNCTION|PROCEDURE)\s+([\w."]+)\s*\(/i;

function find(text: string, pattern: RegExp | string, from = 0): { index: number; length: number } {
  if (typeof pattern === 'string') {
    const index = text.indexOf(pattern, from);
    if (index < 0) throw new Error(`gate point not found: ${pattern}`);
    return { index, length: pattern.length };
  }
  const re = new RegExp(pattern.source, pattern.flags.replace('g', '') + 'g');
  re.lastIndex = from;
  const m = re.exec(text);
  if (!m) throw new Error(`gate point not found: ${String(pattern)}`);
  return { index: m.index, length: m[0].length };
}

/** The offset just after the statement that contains `index`: after the first `;` that ends a line. */
function statementEnd(text: string, index: number): number {
  const re = /;[ \t]*(--[^\n]*)?\n/g;
  re.lastIndex = index;
  const m = re.exec(text);
  if (!m) throw new Error('no statement end after the gate point');
  return m.index + m[0].length;
}

const gateStatement = (key: number) =>
  `    PERFORM pg_catalog.pg_advisory_xact_lock_shared(${key}::pg_catalog.int8);\n`;

/**
 * The text of a routine file (placeholders filled in or not) as a copy named `name`, with the gates
 * inserted; the body starts at the header `CREATE OR REPLACE FUNCTION|PROCEDURE`, points are searched
 * from there. Everything else (REVOKE / GRANT lines naming the original) is dropped.
 */
export function gatedCopy(sql: string, { name, gates }: GatedCopyOptions): string {
  const header = HEADER.exec(sql);
  if (!header) throw new Error('no CREATE OR REPLACE FUNCTION|PROCEDURE in the routine');
  let text = sql.slice(header.index);
  const end = text.indexOf('$$;');
  if (end < 0) throw new Error('the routine body does not end with $$;');
  text = text.slice(0, end + 3) + '\n';
  text = text.replace(HEADER, (_m, kind: string) => `CREATE OR REPLACE ${kind} ${name}(`);
  const bodyStart = text.indexOf('$$');
  // insert from the last position backwards, so that earlier offsets stay valid
  const inserts = gates.map((g) => {
    if ((g.after === undefined) === (g.before === undefined))
      throw new Error('a gate needs exactly one of after / before');
    if (g.after !== undefined) {
      const m = find(text, g.after, bodyStart);
      return { at: statementEnd(text, m.index), key: g.key };
    }
    const m = find(text, g.before!, bodyStart);
    return { at: text.lastIndexOf('\n', m.index) + 1, key: g.key };
  });
  inserts.sort((a, b) => b.at - a.at);
  for (const { at, key } of inserts) text = text.slice(0, at) + gateStatement(key) + text.slice(at);
  return text;
}

/** The text of migrations/routines/<file>.sql with its placeholders filled in, as migrate applies it. */
export async function routineText(file: string): Promise<string> {
  const name = file.endsWith('.sql') ? file : `${file}.sql`;
  return expandRoutine(name, await readFile(join(routinesDir(migrationsDir), name), 'utf8'));
}

/** Creates a gated copy of migrations/routines/<file>.sql in the database of `client`. */
export async function installGatedCopy(
  client: pg.ClientBase,
  file: string,
  options: GatedCopyOptions,
): Promise<void> {
  await client.query(gatedCopy(await routineText(file), options));
}

export interface GateHolder {
  readonly key: number;
  /** Resolves once `count` sessions wait at the gate. */
  arrived(count?: number): Promise<void>;
  /** Opens the gate: every waiting session goes on, and so do later ones. */
  release(): Promise<void>;
  /** Opens the gate if still closed and closes the holder's connection. */
  close(): Promise<void>;
}

/** Closes a gate: a session of its own holds the key exclusively until release(). */
export async function holdGate(url: string, key: number): Promise<GateHolder> {
  const client = new pg.Client({ connectionString: url, application_name: `mvrefresh:test-gate-${key}` });
  await client.connect();
  await client.query('SELECT pg_advisory_lock($1::bigint)', [key]);
  let held = true;
  const release = async () => {
    if (!held) return;
    held = false;
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [key]);
  };
  return {
    key,
    async arrived(count = 1) {
      await waitFor(`${count} session(s) at gate ${key}`, async () => {
        const { rows } = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_locks
            WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
              AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
          [key],
        );
        return rows[0]!.n >= count;
      });
    },
    release,
    async close() {
      try {
        await release();
      } finally {
        await client.end();
      }
    },
  };
}
