import pg from 'pg';
import { sql } from './sql.js';

/** application_name of each kind of connection, so that operators can find them in pg_stat_activity. */
export const AppName = {
  admin: 'mvrefresh:admin',
  listen: 'mvrefresh:listen',
  refresh: 'mvrefresh:refresh',
  control: 'mvrefresh:control',
  http: 'mvrefresh:http',
  verify: 'mvrefresh:verify',
  /** the replace worker's listen and executor sessions (src/replace/worker.ts) */
  replace: 'mvrefresh:replace',
} as const;

/** Connect timeout of every connection; a server that does not answer within it counts as unreachable. */
export const CONNECT_TIMEOUT_MS = 10_000;

/**
 * The search_path of every session mvrefresh opens: a function, operator or type that a role with CREATE on
 * a schema of the default path (public) defines never takes the place of the catalog's in our statements
 * (issue 23). pg_temp last, so that it is searched at all only for relations and types, and after the
 * catalog. Behind a pooler that refuses start-up settings the statements of src/db/sql.ts hold on their
 * own: their functions are schema-qualified and their operators match the catalog's exactly.
 */
export const SAFE_SEARCH_PATH = 'pg_catalog, pg_temp';

/** Server versions (server_version_num) that introduced settings the daemon uses. */
const PG14 = 140_000;

/**
 * Session settings sent with the start-up packet of the daemon's connections. They override role and
 * database defaults (ALTER ROLE ... SET), so that a role's idle_session_timeout or statement_timeout cannot
 * silently kill the LISTEN connection or cut refreshes shorter than configured.
 */
export function sessionSettings(
  serverVersion: number,
  timeouts: { statementTimeoutMs: number; idleInTransactionMs?: number; connectionCheckInterval?: string },
): Record<string, string> {
  return {
    search_path: SAFE_SEARCH_PATH,
    statement_timeout: `${timeouts.statementTimeoutMs}ms`,
    idle_in_transaction_session_timeout: `${timeouts.idleInTransactionMs ?? 0}ms`,
    ...(serverVersion >= PG14 ? { idle_session_timeout: '0' } : {}),
    ...(serverVersion >= PG14 && timeouts.connectionCheckInterval
      ? { client_connection_check_interval: timeouts.connectionCheckInterval }
      : {}),
  };
}

export interface PoolOptions {
  connectionString: string;
  applicationName: string;
  max: number;
  /** Session settings sent at connection start-up (PostgreSQL `options`), e.g. timeouts; none behind a pooler that refuses them. */
  settings?: Record<string, string | number> | undefined;
  /** Client-side limit of one query: a server that stopped answering (half-open) cannot hang a caller. */
  queryTimeoutMs?: number;
  /** A connection is closed after this many checkouts (pg's maxUses), at its release. */
  maxUses?: number;
  /** A connection is closed once this old: at once when idle, else at its release (pg's maxLifetimeSeconds). */
  maxLifetimeSeconds?: number;
  onError: (err: Error) => void;
}

export function startupOptions(settings: Record<string, string | number> | undefined): string | undefined {
  if (!settings) return undefined;
  return Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${String(v).replace(/[\s\\]/g, (c) => `\\${c}`)}`)
    .join(' ');
}

/**
 * A pool whose idle clients' errors (server restart, terminated backend) are reported instead of
 * crashing the process; pg emits them on the pool.
 */
export function createPool(opts: PoolOptions): pg.Pool {
  const options = startupOptions(opts.settings);
  const pool = new pg.Pool({
    connectionString: opts.connectionString,
    application_name: opts.applicationName,
    max: opts.max,
    keepAlive: true,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    ...(options ? { options } : {}),
    ...(opts.queryTimeoutMs ? { query_timeout: opts.queryTimeoutMs } : {}),
    ...(opts.maxUses ? { maxUses: opts.maxUses } : {}),
    ...(opts.maxLifetimeSeconds ? { maxLifetimeSeconds: opts.maxLifetimeSeconds } : {}),
  });
  pool.on('error', opts.onError);
  return pool;
}

/** How long an admin command (watch, unwatch) waits for one of mvrefresh's locks before it names the holder. */
export const ADMIN_LOCK_TIMEOUT_MS = 10_000;
/** A command killed on the client side ends on the server within this (PostgreSQL 14+). */
const ADMIN_CONNECTION_CHECK_INTERVAL = '1s';

/** The search_path an admin session had before prepareAdminSession() pinned it: where user names resolve. */
const callerSearchPaths = new WeakMap<pg.ClientBase, string>();

/**
 * Session settings of an admin command's connection: a bounded wait for locks, a backend that notices
 * within a second that its client is gone, so that a command killed while it waits never runs later, and
 * SAFE_SEARCH_PATH. The session's own search_path is kept (callerSearchPath()) for the view names the
 * user gives, which watch, unwatch, pause and resume look up there.
 */
export async function prepareAdminSession(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{ search_path: string }>(sql.searchPath);
  if (rows[0]) callerSearchPaths.set(client, rows[0].search_path);
  await client.query(sql.pinSearchPath, [SAFE_SEARCH_PATH, false]);
  await client.query(sql.adminSession, [`${ADMIN_LOCK_TIMEOUT_MS}ms`, ADMIN_CONNECTION_CHECK_INTERVAL]);
}

/** Where the names a user gives are looked up on this connection; null: its current search_path. */
export function callerSearchPath(client: pg.ClientBase): string | null {
  return callerSearchPaths.get(client) ?? null;
}

/** A single client for a short admin command. */
export async function connectClient(
  connectionString: string,
  applicationName: string = AppName.admin,
): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString,
    application_name: applicationName,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}
