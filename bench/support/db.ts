import pg from 'pg';

/** The server the benches run against (BENCH_URL), as a superuser: they create and drop databases. */
export const ADMIN_URL = process.env['BENCH_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** The URL of database `name` on the bench server. */
export function dbUrl(name: string): string {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

export async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

/** Creates database `name` on the bench server, empty (a left-over one is dropped first); returns its URL. */
export async function recreateDatabase(name: string): Promise<string> {
  await withClient(ADMIN_URL, async (admin) => {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  });
  return dbUrl(name);
}

/** Drops database `name` from the bench server, if it is there. */
export async function dropDatabase(name: string): Promise<void> {
  await withClient(ADMIN_URL, (admin) =>
    admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
  );
}

/** Runs fn on a new connection and closes it. */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await connect(url);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** The server's version (server_version), for the results' headings. */
export async function serverVersion(url = ADMIN_URL): Promise<string> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    return rows[0]?.v ?? '?';
  });
}
