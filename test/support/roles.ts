import pg from 'pg';

/**
 * The URL of `url` as another role (and, if given, another database). Test roles get a password: embedded
 * servers ask for one (SCRAM), the local service trusts.
 */
export function roleUrl(url: string, user: string, password: string, database?: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = password;
  if (database !== undefined) u.pathname = `/${database}`;
  return u.toString();
}

/** Runs fn on a new connection to `url`, closed afterwards whatever fn does. */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
