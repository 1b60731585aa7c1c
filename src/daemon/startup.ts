import type pg from 'pg';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { AppName, connectClient } from '../db/connect.js';
import { SqlState, describeError, isPermanentConnectError, isPgError } from '../db/errors.js';
import { requirePrimary, StandbyError } from '../db/primary.js';
import { requireSchema, SchemaMissingError } from '../db/schema-version.js';
import { sql } from '../db/sql.js';
import { probeStartupSettings, type StartupSettingsSupport } from '../db/startup-settings.js';
import { redactUrl, scrubSecret } from '../db/url.js';
import { backoffDelay } from './lib/backoff.js';
import { sleep } from './lib/timers.js';

const STARTUP_RETRY_BASE_MS = 500;
const STARTUP_RETRY_MAX_MS = 5000;

/** Start-up refused: the process should exit non-zero with this message. */
export class StartupError extends Error {
  override name = 'StartupError';
}

/** Errors that waiting will not fix. */
const HOPELESS = new Set<string>([
  SqlState.invalidPassword,
  SqlState.invalidAuthorization,
  SqlState.invalidCatalogName,
]);

/**
 * Waits (bounded by startupTimeoutMs, or until aborted) for the database, then refuses a standby or a
 * missing or old schema; finds out what the connection does with start-up settings (a pooler may refuse or
 * drop them).
 */
export async function checkDatabase(
  config: Pick<Config, 'databaseUrl' | 'startupTimeoutMs'>,
  logger: Logger,
  abort: AbortSignal,
): Promise<{ serverVersion: number; startupSettings: StartupSettingsSupport }> {
  const deadline = Date.now() + config.startupTimeoutMs;
  for (let attempt = 1; ; attempt += 1) {
    if (abort.aborted) throw new StartupError('stopped while waiting for the database');
    let client: pg.Client | undefined;
    try {
      client = await connectClient(config.databaseUrl, AppName.control);
      await requirePrimary(client, 'run');
      await requireSchema(client);
      const { rows } = await client.query<{ version: number }>(sql.serverVersion);
      const startupSettings = await probeStartupSettings(config.databaseUrl, AppName.control);
      return { serverVersion: rows[0]?.version ?? 0, startupSettings };
    } catch (err) {
      if (err instanceof StartupError) throw err;
      if (err instanceof StandbyError || err instanceof SchemaMissingError)
        throw new StartupError(err.message);
      const message = scrubSecret(describeError(err), config.databaseUrl);
      if ((isPgError(err) && err.code && HOPELESS.has(err.code)) || isPermanentConnectError(err))
        throw new StartupError(`cannot connect: ${message}`);
      if (Date.now() >= deadline)
        throw new StartupError(`the database is unreachable after ${config.startupTimeoutMs} ms: ${message}`);
      const delay = Math.min(
        backoffDelay(attempt, STARTUP_RETRY_BASE_MS, STARTUP_RETRY_MAX_MS),
        Math.max(0, deadline - Date.now()),
      );
      logger.warn(
        { event: 'database_unreachable', attempt, retryInMs: delay, err: message },
        'waiting for the database',
      );
      await sleep(delay, abort);
    } finally {
      await client?.end().catch(() => undefined);
    }
  }
}

/**
 * What the LISTEN URL does with start-up settings. Unreachable now is no reason to refuse start-up (the
 * listener keeps trying, as it does after any outage): then the settings are sent.
 */
export async function probeListenUrl(listenUrl: string, logger: Logger): Promise<StartupSettingsSupport> {
  try {
    return await probeStartupSettings(listenUrl, AppName.listen);
  } catch (err) {
    logger.warn(
      { event: 'listen_database_unreachable', err: scrubSecret(describeError(err), listenUrl) },
      'the LISTEN URL does not answer yet; the listener keeps trying',
    );
    return 'applied';
  }
}

/** One line when a connection's start-up settings (timeouts) do not reach the server. */
export function reportStartupSettings(
  logger: Logger,
  connection: 'database' | 'listen',
  url: string,
  support: StartupSettingsSupport,
): void {
  if (support === 'applied') return;
  logger.warn(
    { event: 'startup_settings_unsupported', connection, database: redactUrl(url), support },
    `session settings sent at connection start-up are ${support} by ${redactUrl(url)} (a connection pooler): ` +
      "statement_timeout and the other timeouts of these connections are the role's defaults on the server " +
      '(ALTER ROLE ... SET statement_timeout); the daemon still gives up on a statement after its own timeout',
  );
}
