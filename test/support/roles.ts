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

/**
 * Names for a test file's roles, `mvr_<prefix>_<name>_<pid>`: roles are cluster-wide, so the process id
 * keeps files that run at the same time (and the same file on several servers' runs) apart.
 */
export function testRoles<K extends string>(prefix: string, ...names: K[]): Record<K, string> {
  return Object.fromEntries(
    names.map((n) => [n, `mvr_${prefix}_${n.toLowerCase()}_${process.pid}`]),
  ) as Record<K, string>;
}
