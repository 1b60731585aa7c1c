import pg from 'pg';

export interface GrantsOptions {
  /** The role the daemon (and migrate / watch) run as. */
  role: string;
  /** The role that owns the watched views: REFRESH needs its membership before PostgreSQL 17. */
  ownerRole?: string | undefined;
  /** Schemas holding the base tables of watched views (watch installs triggers there). */
  schemas: string[];
}

/**
 * The SQL that sets up a least-privilege role for mvrefresh: no superuser, no ownership of application
 * tables. Identifiers are quoted; the text is for an administrator to review and run.
 */
export function grantsSql(opts: GrantsOptions): string {
  const role = pg.escapeIdentifier(opts.role);
  const roleLiteral = pg.escapeLiteral(opts.role);
  const lines = [
    `-- Least privileges for mvrefresh's role ${role}. Run as the database owner or a superuser.`,
    `DO $$ BEGIN`,
    `  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${roleLiteral}) THEN`,
    `    CREATE ROLE ${role} LOGIN;  -- then: ALTER ROLE ${role} PASSWORD '...';`,
    `  END IF;`,
    `  -- migrate creates (and then owns) the mvrefresh schema`,
    `  EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO %I', current_database(), ${roleLiteral});`,
    `END $$;`,
  ];
  for (const schema of opts.schemas) {
    const s = pg.escapeIdentifier(schema);
    lines.push(`-- watch installs statement triggers on the base tables in ${s}`);
    lines.push(`GRANT USAGE ON SCHEMA ${s} TO ${role};`);
    lines.push(`GRANT TRIGGER ON ALL TABLES IN SCHEMA ${s} TO ${role};`);
  }
  if (opts.ownerRole) {
    lines.push(`-- REFRESH MATERIALIZED VIEW needs the view's owner (PostgreSQL < 17)`);
    lines.push(`GRANT ${pg.escapeIdentifier(opts.ownerRole)} TO ${role};`);
  } else {
    lines.push(`-- REFRESH needs the views' owner: GRANT <owner role> TO ${role};`);
  }
  lines.push(`-- from PostgreSQL 17, instead of the owner role: GRANT MAINTAIN ON <each view> TO ${role};`);
  return `${lines.join('\n')}\n`;
}
