import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { routinesDir } from '../../src/db/migrate.js';
import { expandRoutine } from '../../src/db/placeholders.js';
import { migrationsDir } from '../../src/paths.js';
import { delay, waitFor } from './wait.js';

/**
 * Deterministic interleavings inside a routine: gates between its statements. A gate is
 * `PERFORM pg_catalog.pg_advisory_xact_lock_shared(key)`: a session running the routine passes every open
 * gate and stops at one whose key the test holds exclusively (Gate.hold), until the test opens it. Shared,
 * so that any number of sessions pass an open gate together; transaction-scoped, so a gate taken before a
 * COMMIT inside a procedure is gone after it.
 *
 * Two ways to place gates: gatedCopy() puts them at named points of a copy under another name (one
 * interleaving a test means); gatedRoutine() puts one in every gap of the routine itself, replacing it under
 * its own name (every interleaving, for enumeration).
 */

/** The text of migrations/routines/<file>.sql with its placeholders filled in, as migrate applies it. */
export function routineText(file: string): string {
  const name = file.endsWith('.sql') ? file : `${file}.sql`;
  return expandRoutine(name, readFileSync(join(routinesDir(migrationsDir), name), 'utf8'));
}

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

/** Creates a gated copy of migrations/routines/<file>.sql in the database of `client`. */
export async function installGatedCopy(
  client: pg.ClientBase,
  file: string,
  options: GatedCopyOptions,
): Promise<void> {
  await client.query(gatedCopy(routineText(file), options));
}

/**
 * gatedRoutine(): gaps are found in the text, not named: a gate follows every line of the body whose code
 * ends a statement (`;` at the end of the line, comments aside), from the body's BEGIN up to a stop line,
 * except after RETURN (dead code) and COMMIT (a new transaction: beyond the range). So the enumeration
 * follows the routine as it is written, whatever statements a fix adds or moves. The gated routine replaces
 * the original under the same name in the test's own database, so that every caller (triggers,
 * refresh_dirty) runs it; routineText() puts the original back.
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
  const text = routineText(file);
  const lines = text.split('\n');
  const dollar = lines.findIndex((l) => l.includes('$$'));
  const begin = lines.findIndex((l, i) => i > dollar && /^BEGIN\s*$/.test(l));
  if (dollar < 0 || begin < 0) throw new Error(`${file}: no $$ ... BEGIN body`);
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

/** A gate the test holds closed on a connection of its own. */
export class Gate {
  private held = true;

  private constructor(
    private readonly client: pg.Client,
    readonly key: number,
  ) {}

  /** Closes the gate: a session of its own holds the key exclusively until open(). */
  static async hold(url: string, key: number): Promise<Gate> {
    const client = new pg.Client({ connectionString: url, application_name: `mvrefresh:test-gate-${key}` });
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

  /** Resolves once `count` sessions wait at the gate. */
  async arrived(count = 1): Promise<void> {
    await waitFor(`${count} session(s) at gate ${this.key}`, async () => (await this.waiting()) >= count);
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

  /** Opens the gate: every waiting session goes on, and so do later ones. */
  async open(): Promise<void> {
    if (!this.held) return;
    this.held = false;
    await this.client.query('SELECT pg_advisory_unlock($1::bigint)', [this.key]);
  }

  /** Opens the gate if still closed and closes the holder's connection. */
  async end(): Promise<void> {
    try {
      await this.open();
    } finally {
      await this.client.end();
    }
  }
}
