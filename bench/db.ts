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

/** Runs fn on a new connection and closes it. */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await connect(url);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
