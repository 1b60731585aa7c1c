import pg from 'pg';
import { sql } from '../db/sql.js';

export interface GrantTargets {
  /** Tables the watched views read (partitions, children, through plain views), quoted (format %I). */
  tables: string[];
  /** The materialized views to refresh: those named and those they read, quoted. */
  views: string[];
  /** Schemas of both, quoted. */
  schemas: string[];
  /** PostgreSQL 17+: MAINTAIN on each view instead of membership in the owner role. */
  maintain: boolean;
}

export interface GrantsOptions {
  /** The runtime role: `mvrefresh run`. */
  role: string;
  /** The owner / DDL role: `mvrefresh migrate`, `watch`, `unwatch`; owns the mvrefresh schema. */
  ddlRole: string;
  /** The role owning the views: REFRESH needs its membership before PostgreSQL 17. */
  ownerRole?: string | undefined;
  /** From the database (resolveTargets); without them no TRIGGER or MAINTAIN is granted. */
  targets?: GrantTargets | undefined;
}

const PG17 = 170_000;

export class GrantsError extends Error {
  override name = 'GrantsError';
}

/** Resolves the views to watch into what the roles need privileges on. */
export async function resolveTargets(db: pg.ClientBase, views: string[]): Promise<GrantTargets> {
  const missing = (await db.query<{ n: string }>(sql.unresolvedViews, [views])).rows.map((r) => r.n);
  if (missing.length > 0)
    throw new GrantsError(
      `no such relation: ${missing.map((m) => JSON.stringify(m)).join(', ')} (quote names with capitals or spaces: '"My View"')`,
    );
  const { rows } = await db.query<{ kind: string; name: string; schema: string }>(sql.grantTargets, [views]);
  const version = Number((await db.query<{ version: number }>(sql.serverVersion)).rows[0]?.version ?? 0);
  return {
    tables: rows.filter((r) => r.kind !== 'm').map((r) => r.name),
    views: rows.filter((r) => r.kind === 'm').map((r) => r.name),
    schemas: [...new Set(rows.map((r) => r.schema))].sort(),
    maintain: version >= PG17,
  };
}

/** A dollar-quoted body whose tag occurs nowhere in it, so that no name inside can end the quote. */
function dollarQuote(body: string): string {
  let tag = 'grants';
  for (let i = 0; body.includes(`$${tag}$`); i += 1) tag = `grants${i}`;
  return `$${tag}$${body}$${tag}$`;
}

/**
 * The SQL that sets up least privileges for two roles: an owner / DDL role that owns the mvrefresh schema
 * and runs migrate, watch and unwatch (TRIGGER on exactly the tables the views read), and a runtime role for
 * the daemon (the schema's tables and routines, and REFRESH of the views). Every name is quoted, as an
 * identifier or a literal, and no name appears in a comment (a newline in one would end the comment).
 */
export function grantsSql(opts: GrantsOptions): string {
  const run = pg.escapeIdentifier(opts.role);
  const ddl = pg.escapeIdentifier(opts.ddlRole);
  const createRoles = [opts.ddlRole, opts.role]
    .map(
      (r) =>
        `  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${pg.escapeLiteral(r)}) THEN\n` +
        `    CREATE ROLE ${pg.escapeIdentifier(r)} LOGIN;\n  END IF;\n`,
    )
    .join('');
  const lines = [
    '-- Least privileges for mvrefresh. Review, then run as a superuser or the database owner.',
    '-- The DDL role runs `mvrefresh migrate`, `watch` and `unwatch`; the runtime role runs `mvrefresh run`.',
    `DO ${dollarQuote(`\nBEGIN\n${createRoles}END\n`)};`,
    '-- then give each a password: ALTER ROLE ... PASSWORD',
    '-- the DDL role owns the mvrefresh schema (no CREATE on the database)',
    `CREATE SCHEMA IF NOT EXISTS mvrefresh AUTHORIZATION ${ddl};`,
    '-- the runtime role uses what migrate creates there, now and later',
    `GRANT USAGE ON SCHEMA mvrefresh TO ${run};`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${ddl} IN SCHEMA mvrefresh GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${run};`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${ddl} IN SCHEMA mvrefresh GRANT USAGE, UPDATE ON SEQUENCES TO ${run};`,
    `ALTER DEFAULT PRIVILEGES FOR ROLE ${ddl} IN SCHEMA mvrefresh GRANT EXECUTE ON ROUTINES TO ${run};`,
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA mvrefresh TO ${run};`,
    `GRANT USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA mvrefresh TO ${run};`,
    `GRANT EXECUTE ON ALL ROUTINES IN SCHEMA mvrefresh TO ${run};`,
  ];
  const t = opts.targets;
  if (!t) {
    lines.push('-- pass --view (with a database URL) to grant TRIGGER on exactly the tables the views read');
  } else {
    lines.push('-- the schemas of the views and of the tables they read');
    for (const s of t.schemas) lines.push(`GRANT USAGE ON SCHEMA ${s} TO ${ddl}, ${run};`);
    lines.push('-- watch installs one statement trigger on each table the views read, and nowhere else');
    for (const table of t.tables) lines.push(`GRANT TRIGGER ON TABLE ${table} TO ${ddl};`);
    if (t.maintain) {
      lines.push('-- REFRESH (PostgreSQL 17+): MAINTAIN on each view; watch checks it for its caller too');
      for (const view of t.views) lines.push(`GRANT MAINTAIN ON TABLE ${view} TO ${ddl}, ${run};`);
      lines.push(
        "-- the daemon vacuums incremental views' change logs, which watch creates (PostgreSQL 17+)",
        `ALTER DEFAULT PRIVILEGES FOR ROLE ${ddl} IN SCHEMA mvrefresh GRANT MAINTAIN ON TABLES TO ${run};`,
        `GRANT MAINTAIN ON ALL TABLES IN SCHEMA mvrefresh TO ${run};`,
      );
    }
  }
  if (!t?.maintain) {
    if (opts.ownerRole) {
      lines.push(
        "-- REFRESH needs the views' owner before PostgreSQL 17; watch checks it for its caller too",
        `GRANT ${pg.escapeIdentifier(opts.ownerRole)} TO ${ddl}, ${run};`,
      );
    } else {
      lines.push("-- REFRESH needs the views' owner before PostgreSQL 17: pass --owner-role");
    }
  }
  return `${lines.join('\n')}\n`;
}
