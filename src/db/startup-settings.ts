import pg from 'pg';
import { CONNECT_TIMEOUT_MS, startupOptions } from './connect.js';
import { SqlState, isPgError } from './errors.js';
import { sql } from './sql.js';

/**
 * What a server (or what stands in front of it) does with session settings sent at connection start-up
 * (the `options` startup parameter, which carries the daemon's timeouts):
 * - applied: a direct connection, or a pooler that passes them on;
 * - refused: PgBouncer without `ignore_startup_parameters = options` rejects the connection (08P01,
 *   "unsupported startup parameter: options"): the daemon connects without them;
 * - ignored: a pooler that accepts and drops them (PgBouncer with `ignore_startup_parameters = options`).
 * In the last two cases the role's or database's defaults hold for statement_timeout and the rest.
 */
export type StartupSettingsSupport = 'applied' | 'refused' | 'ignored';

/** A value no default is likely to have, so that seeing it proves the setting arrived. */
const PROBE_STATEMENT_TIMEOUT = '31415ms';

export async function probeStartupSettings(
  connectionString: string,
  applicationName: string,
): Promise<StartupSettingsSupport> {
  const client = new pg.Client({
    connectionString,
    application_name: applicationName,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    options: startupOptions({ statement_timeout: PROBE_STATEMENT_TIMEOUT }),
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    if (isRefusal(err)) return 'refused';
    throw err;
  }
  try {
    const { rows } = await client.query<{ applied: boolean }>(sql.startupSettingApplied, [
      PROBE_STATEMENT_TIMEOUT,
    ]);
    return rows[0]?.applied ? 'applied' : 'ignored';
  } finally {
    await client.end().catch(() => undefined);
  }
}

function isRefusal(err: unknown): boolean {
  return isPgError(err) && err.code === SqlState.protocolViolation && /startup parameter/i.test(err.message);
}
