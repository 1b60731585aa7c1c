import convict from 'convict';
import { readFileSync, statSync } from 'node:fs';
import { connectionStringProblem, isPostgresUrl, redactUrl } from './db/url.js';
import { MIN_REFRESH_BUDGET, parseDuration, parseShare } from './duration.js';

/** http.probePort's default: the HTTP port + 1, or any free port when that is 0. */
const PROBE_PORT_AUTO = 'auto';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A set postgres:// URL whose parameters the driver can use (files that exist, known sslmode). */
function checkPostgresUrl(value: string): void {
  if (!isPostgresUrl(value)) throw new Error(`must be a postgres:// URL, got ${redactUrl(value)}`);
  const problem = connectionStringProblem(value, isRegularFile);
  if (problem) throw new Error(`${problem} (in ${redactUrl(value)})`);
}

convict.addFormat({
  name: 'postgres-url',
  validate(value: unknown) {
    if (typeof value !== 'string' || value === '')
      throw new Error('must be set (postgres://user:password@host:port/db)');
    checkPostgresUrl(value);
  },
  coerce: (v: unknown) => String(v),
});

convict.addFormat({
  name: 'optional-postgres-url',
  validate(value: unknown) {
    if (typeof value !== 'string') throw new Error('must be a postgres:// URL or empty');
    if (value !== '') checkPostgresUrl(value);
  },
  coerce: (v: unknown) => String(v),
});

convict.addFormat({
  name: 'host',
  validate(value: unknown) {
    // an empty MVREFRESH_HTTP_HOST would make Node listen on every interface
    if (typeof value !== 'string' || value.trim() === '')
      throw new Error(
        'must be an address to listen on (0.0.0.0 for every IPv4 interface), got an empty value',
      );
  },
  coerce: (v: unknown) => String(v),
});

convict.addFormat({
  name: 'probe-port',
  validate(value: unknown) {
    if (value === PROBE_PORT_AUTO) return;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65535)
      throw new Error(`must be a port from 0 to 65535, or "${PROBE_PORT_AUTO}" (http.port + 1)`);
  },
  coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v),
});

convict.addFormat({
  name: 'admin-token',
  validate(value: unknown) {
    // a token read from a mounted secret ends with a newline: trimmed below; only whitespace is a mistake
    if (typeof value !== 'string') throw new Error('must be a string');
    if (value !== '' && value.trim() === '')
      throw new Error('is only whitespace: set a token, or leave it empty to disable POST endpoints');
  },
  coerce: (v: unknown) => String(v),
});

export function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** A configuration file larger than this is refused before it is read (MVREFRESH_CONFIG=/dev/zero). */
export const CONFIG_FILE_MAX_BYTES = 1024 * 1024;

function positiveInt(min: number, max: number) {
  return {
    name: `int ${min}..${max}`,
    validate(value: unknown) {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
        throw new Error(`must be an integer from ${min} to ${max}`);
    },
    coerce: (v: unknown) => (typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v),
  };
}
for (const [name, min, max] of [
  ['ms', 0, 86_400_000],
  ['positive-ms', 1, 86_400_000],
  ['count', 1, 1000],
  ['uses', 1, 100_000_000],
] as const) {
  const f = positiveInt(min, max);
  convict.addFormat({ ...f, name });
}

convict.addFormat({
  name: 'duration',
  validate(value: unknown) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 86_400_000)
      throw new Error('must be a duration from 1 ms to 24 h: "10s", "500ms", "2m" or milliseconds');
  },
  coerce: (v: unknown) => (typeof v === 'string' ? (parseDuration(v) ?? v) : v),
});
convict.addFormat({
  name: 'share',
  validate(value: unknown) {
    if (typeof value !== 'number' || !(value >= MIN_REFRESH_BUDGET && value <= 1))
      throw new Error(
        `must be a share of time from ${MIN_REFRESH_BUDGET} (${MIN_REFRESH_BUDGET * 100}%) to 1: "0.2" or "20%"`,
      );
  },
  coerce: (v: unknown) => (typeof v === 'string' ? (parseShare(v) ?? v) : v),
});

/** The schema: one place for every key, its environment variable, default and documentation. */
export const schema = {
  databaseUrl: {
    doc: 'PostgreSQL connection string. Its password is never logged.',
    format: 'postgres-url',
    default: '',
    env: 'DATABASE_URL',
    sensitive: true,
  },
  listenUrl: {
    doc: 'Connection string of the LISTEN connection; empty: databaseUrl. Give it a direct (or session-mode pooler) URL when databaseUrl goes through a transaction pooler, which cannot deliver notifications. Its password is never logged.',
    format: 'optional-postgres-url',
    default: '',
    env: 'MVREFRESH_LISTEN_URL',
    sensitive: true,
  },
  http: {
    host: {
      doc: 'Address the HTTP server listens on (not empty).',
      format: 'host',
      default: '0.0.0.0',
      env: 'MVREFRESH_HTTP_HOST',
    },
    port: {
      doc: 'HTTP port for /healthz, /readyz, /views and /metrics (0: any free port).',
      format: 'port',
      default: 9187,
      env: 'MVREFRESH_HTTP_PORT',
    },
    probePort: {
      doc: 'Port of /healthz and /readyz alone, for liveness and readiness probes: its own connections, header timeouts and per-client caps, so that no flood of the HTTP port can lock the probes out. "auto": http.port + 1 (any free port when http.port is 0).',
      format: 'probe-port',
      default: PROBE_PORT_AUTO as string | number,
      env: 'MVREFRESH_PROBE_PORT',
    },
    adminToken: {
      doc: 'Bearer token that enables POST /views/<id>/refresh and full error texts on /views; surrounding whitespace is ignored. Empty: no endpoint changes state.',
      format: 'admin-token',
      default: '',
      env: 'MVREFRESH_ADMIN_TOKEN',
      sensitive: true,
    },
    maxConnections: {
      doc: 'Open HTTP connections at once; more are closed on accept. Lowered at start to leave 100 file descriptors of the limit to everything else.',
      format: 'count',
      default: 1000,
      env: 'MVREFRESH_HTTP_MAX_CONNECTIONS',
    },
    maxConnectionsPerClient: {
      doc: 'Open HTTP connections at once from one address; more are closed on accept, so that one client cannot hold every connection.',
      format: 'count',
      default: 100,
      env: 'MVREFRESH_HTTP_MAX_CONNECTIONS_PER_CLIENT',
    },
  },
  logLevel: {
    doc: 'pino log level: fatal, error, warn, info, debug, trace, silent.',
    format: LOG_LEVELS as unknown as string[],
    default: 'info',
    env: 'MVREFRESH_LOG_LEVEL',
  },
  maxStalenessMs: {
    doc: 'Staleness target of views without their own (watch --max-staleness): how old the oldest write a view does not show may get. Accepts "10s", "500ms", "2m" or milliseconds.',
    format: 'duration',
    default: 1000,
    env: 'MVREFRESH_MAX_STALENESS',
  },
  refreshBudget: {
    doc: "Share of time one view's refreshes may keep the database busy (refresh time / interval), for views without their own; it wins over the staleness target. Accepts 0.2 or 20%.",
    format: 'share',
    default: 0.2,
    env: 'MVREFRESH_REFRESH_BUDGET',
  },
  sweepIntervalMs: {
    doc: 'Period of the sweep of dirty views, the backstop for missed notifications.',
    format: 'positive-ms',
    default: 30_000,
    env: 'MVREFRESH_SWEEP_INTERVAL_MS',
  },
  driftCheckIntervalMs: {
    doc: "Period of the check of every watched view's sources against the catalog (partitions, view definitions, triggers, writes that fired no trigger); also run after every reconnect and, with the event trigger, at each DDL.",
    format: 'positive-ms',
    default: 60_000,
    env: 'MVREFRESH_DRIFT_CHECK_INTERVAL_MS',
  },
  vacuumCheckIntervalMs: {
    doc: "Period of the look at autovacuum and at the dead rows and size of the catalogs that REFRESH ... CONCURRENTLY churns and of mvrefresh's tables (metrics mvrefresh_table_dead_rows, mvrefresh_table_bytes; logs autovacuum_off, table_bloat).",
    format: 'positive-ms',
    default: 60_000,
    env: 'MVREFRESH_VACUUM_CHECK_INTERVAL_MS',
  },
  logVacuumIntervalMs: {
    doc: "Period of the look at the change logs of incremental views: a log with at least 1 000 dead rows, more than its live ones, is vacuumed (VACUUM (SKIP_LOCKED), log log_vacuum at debug, metric mvrefresh_log_vacuums_total), so that each apply's scans of it stay short between autovacuum's visits (autovacuum_naptime). Needs the log's owner's rights (MAINTAIN from PostgreSQL 17), else log log_vacuum_forbidden once. 0: never.",
    format: 'ms',
    default: 2_000,
    env: 'MVREFRESH_LOG_VACUUM_INTERVAL_MS',
  },
  logPollIntervalMs: {
    doc: 'Period of the look at the change logs of incremental views for committed writes that a view does not show yet (mvrefresh.log_due()): a table that only incremental views read has no mark trigger and sends no notification, so its writes make a view due at this look (the staleness clock starts at the write all the same). Only views this daemon has no refresh planned or running for are looked at.',
    format: 'positive-ms',
    default: 100,
    env: 'MVREFRESH_LOG_POLL_INTERVAL_MS',
  },
  incrementalVerifyIntervalMs: {
    doc: 'Period of the verify of one incremental view (the one verified longest ago, by any replica): its table compared with its definition and repaired (log incremental_verify_mismatch, metric mvrefresh_incremental_verify_mismatch_total); a full evaluation of the view, counted in its refresh budget, on a connection of its own (mvrefresh:verify). 0: never.',
    format: 'ms',
    default: 21_600_000,
    env: 'MVREFRESH_INCREMENTAL_VERIFY_INTERVAL_MS',
  },
  concurrency: {
    doc: 'Refreshes running at once (each holds one pooled connection): the budget of all views together.',
    format: 'count',
    default: 2,
    env: 'MVREFRESH_CONCURRENCY',
  },
  refreshConnectionMaxUses: {
    doc: 'A refresh connection is replaced after this many refresh cycles: a backend that repeats REFRESH ... CONCURRENTLY grows its catalog caches and slows down (docs/benchmarks.md, "Refresh connections over their lifetime").',
    format: 'uses',
    default: 1000,
    env: 'MVREFRESH_REFRESH_CONNECTION_MAX_USES',
  },
  refreshConnectionMaxAgeMs: {
    doc: 'A refresh connection is replaced once this old (after its running cycle), however few cycles it ran. Accepts "1h", "30m" or milliseconds.',
    format: 'duration',
    default: 3_600_000,
    env: 'MVREFRESH_REFRESH_CONNECTION_MAX_AGE',
  },
  refreshTimeoutMs: {
    doc: 'statement_timeout of one refresh cycle.',
    format: 'positive-ms',
    default: 600_000,
    env: 'MVREFRESH_REFRESH_TIMEOUT_MS',
  },
  lockTimeoutMs: {
    doc: 'lock_timeout of a refresh (waiting behind DDL or a held lock).',
    format: 'positive-ms',
    default: 10_000,
    env: 'MVREFRESH_LOCK_TIMEOUT_MS',
  },
  writerWaitMs: {
    doc: "How long a cycle waits for writers running when it cleared the view's marks; writers still running then get another cycle.",
    format: 'ms',
    default: 2000,
    env: 'MVREFRESH_WRITER_WAIT_MS',
  },
  backoffBaseMs: {
    doc: 'First retry delay after a failed refresh; doubles per failure.',
    format: 'positive-ms',
    default: 1000,
    env: 'MVREFRESH_BACKOFF_BASE_MS',
  },
  backoffMaxMs: {
    doc: 'Cap of the retry delay.',
    format: 'positive-ms',
    default: 300_000,
    env: 'MVREFRESH_BACKOFF_MAX_MS',
  },
  shutdownGraceMs: {
    doc: 'On SIGTERM, how long running refreshes may finish before they are cancelled.',
    format: 'ms',
    default: 30_000,
    env: 'MVREFRESH_SHUTDOWN_GRACE_MS',
  },
  startupTimeoutMs: {
    doc: 'How long start-up waits for an unreachable database before it gives up.',
    format: 'positive-ms',
    default: 60_000,
    env: 'MVREFRESH_STARTUP_TIMEOUT_MS',
  },
  listener: {
    heartbeatIntervalMs: {
      doc: 'Period of the LISTEN connection check.',
      format: 'positive-ms',
      default: 10_000,
      env: 'MVREFRESH_HEARTBEAT_INTERVAL_MS',
    },
    heartbeatTimeoutMs: {
      doc: 'A check slower than this marks the LISTEN connection dead (half-open).',
      format: 'positive-ms',
      default: 5000,
      env: 'MVREFRESH_HEARTBEAT_TIMEOUT_MS',
    },
    reconnectMaxDelayMs: {
      doc: 'Cap of the jittered reconnect backoff; reconnects never stop.',
      format: 'positive-ms',
      default: 30_000,
      env: 'MVREFRESH_RECONNECT_MAX_DELAY_MS',
    },
  },
} as const;

export interface Config {
  readonly databaseUrl: string;
  /** The LISTEN connection's URL: listenUrl, or databaseUrl when that is empty. */
  readonly listenUrl: string;
  readonly http: {
    readonly host: string;
    readonly port: number;
    /** Resolved: never "auto". */
    readonly probePort: number;
    readonly adminToken: string;
    readonly maxConnections: number;
    readonly maxConnectionsPerClient: number;
  };
  readonly logLevel: LogLevel;
  readonly maxStalenessMs: number;
  readonly refreshBudget: number;
  readonly sweepIntervalMs: number;
  readonly driftCheckIntervalMs: number;
  readonly vacuumCheckIntervalMs: number;
  readonly logVacuumIntervalMs: number;
  readonly logPollIntervalMs: number;
  readonly incrementalVerifyIntervalMs: number;
  readonly concurrency: number;
  readonly refreshConnectionMaxUses: number;
  readonly refreshConnectionMaxAgeMs: number;
  readonly refreshTimeoutMs: number;
  readonly lockTimeoutMs: number;
  readonly writerWaitMs: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly shutdownGraceMs: number;
  readonly startupTimeoutMs: number;
  readonly listener: {
    readonly heartbeatIntervalMs: number;
    readonly heartbeatTimeoutMs: number;
    readonly reconnectMaxDelayMs: number;
  };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** A JSON file (MVREFRESH_CONFIG); environment variables override it. */
  file?: string | undefined;
  /** Values from the command line; they override everything. */
  overrides?: Record<string, unknown>;
  /** Told about every retired setting still in use (with what replaces it). */
  onDeprecation?: (message: string) => void;
}

/**
 * Settings whose meaning the daemon cannot honour any more (the trigger notifies once per clean -> dirty
 * turn, so no quiet time can be observed): still accepted, with a warning. maxWaitMs, the longest a view
 * waited, becomes its staleness target when no target is set; debounceMs is ignored.
 */
const RETIRED = [
  { key: 'debounceMs', env: 'MVREFRESH_DEBOUNCE_MS', replacedBy: undefined },
  { key: 'maxWaitMs', env: 'MVREFRESH_MAX_WAIT_MS', replacedBy: 'maxStalenessMs' },
] as const;

/** Validates configuration once into a new, frozen object. Errors name the key, the value and what is allowed. */
export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const warn = options.onDeprecation ?? (() => undefined);
  const conf = convict(schema, { env, args: [] });
  const file = options.file ?? env['MVREFRESH_CONFIG'];
  const retired: Record<string, unknown> = {};
  let targetSet = envKeys(env).includes('maxStalenessMs');
  try {
    if (file) {
      const content = readConfigFile(file);
      for (const r of RETIRED)
        if (r.key in content) {
          retired[r.key] = content[r.key];
          delete content[r.key];
          warn(retiredMessage(r, `key ${r.key} in ${file}`));
        }
      targetSet ||= content['maxStalenessMs'] !== undefined;
      conf.load(content);
      // the environment wins over the file
      const fromEnv = convict(schema, { env, args: [] });
      for (const key of envKeys(env)) conf.set(key, fromEnv.get(key as never));
    }
    const retiredFrom: Record<string, string> = {};
    for (const r of RETIRED) if (r.key in retired) retiredFrom[r.key] = `key ${r.key} in ${file}`;
    for (const r of RETIRED)
      if (env[r.env] !== undefined) {
        retired[r.key] = env[r.env];
        retiredFrom[r.key] = r.env;
        warn(retiredMessage(r, r.env));
      }
    if (retired['maxWaitMs'] !== undefined && !targetSet)
      conf.set('maxStalenessMs', maxWaitAsTarget(retired['maxWaitMs'], retiredFrom['maxWaitMs']!) as never);
    for (const [key, value] of Object.entries(options.overrides ?? {}))
      if (value !== undefined) conf.set(key, value);
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`invalid configuration: ${scrubConfigMessage((err as Error).message)}`);
  }
  const config = conf.getProperties() as Config;
  (config.http as { adminToken: string }).adminToken = config.http.adminToken.trim();
  if (config.listenUrl === '') (config as { listenUrl: string }).listenUrl = config.databaseUrl;
  const probePort = resolveProbePort(config.http.port, config.http.probePort as number | string);
  (config.http as { probePort: number }).probePort = probePort;
  if (config.listener.heartbeatTimeoutMs >= config.listener.heartbeatIntervalMs)
    throw new ConfigError(
      `invalid configuration: listener.heartbeatTimeoutMs (${config.listener.heartbeatTimeoutMs}) must be below listener.heartbeatIntervalMs (${config.listener.heartbeatIntervalMs})`,
    );
  return deepFreeze(structuredClone(config));
}

function resolveProbePort(port: number, probePort: number | string): number {
  if (probePort === PROBE_PORT_AUTO) {
    if (port === 0) return 0;
    if (port + 1 > 65535)
      throw new ConfigError(
        `invalid configuration: http.probePort "${PROBE_PORT_AUTO}" would be ${port + 1}; set a port`,
      );
    return port + 1;
  }
  const resolved = probePort as number;
  if (resolved !== 0 && resolved === port)
    throw new ConfigError(
      `invalid configuration: http.probePort (${resolved}) must differ from http.port: the probes need a port of their own`,
    );
  return resolved;
}

/**
 * The staleness target a retired maxWaitMs stands for. It was a whole number of milliseconds from 0 (no
 * wait: refresh at once) to 24 h; 0 becomes the smallest target, 1 ms (refresh as soon as the budget
 * allows). Anything else is refused naming the retired setting and what replaces it, not maxStalenessMs,
 * which the operator never set.
 */
export function maxWaitAsTarget(value: unknown, where: string): number {
  const ms = typeof value === 'number' ? value : typeof value === 'string' ? parseDuration(value) : undefined;
  if (ms === undefined || !Number.isInteger(ms) || ms < 0 || ms > 86_400_000)
    throw new ConfigError(
      `invalid configuration: ${where} (deprecated) must be a whole number of milliseconds from 0 to 86400000, got ${JSON.stringify(value)}; set maxStalenessMs (MVREFRESH_MAX_STALENESS), which replaces it, instead`,
    );
  return Math.max(1, ms);
}

function retiredMessage(r: (typeof RETIRED)[number], where: string): string {
  return r.replacedBy
    ? `${where} is deprecated: it is used as ${r.replacedBy} (MVREFRESH_MAX_STALENESS), which replaces it`
    : `${where} is deprecated and ignored: views are refreshed by their staleness target (maxStalenessMs) and refresh budget (refreshBudget)`;
}

/**
 * The parsed JSON object of a configuration file. Everything that is wrong with it is permanent and named
 * with the file: missing, not a regular file (a FIFO would hang start-up, a device never ends), too large,
 * not JSON (with the position), not an object.
 */
function readConfigFile(file: string): Record<string, unknown> {
  const what = `configuration file ${file} (MVREFRESH_CONFIG)`;
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new ConfigError(`${what} is not a regular file`);
    if (st.size > CONFIG_FILE_MAX_BYTES)
      throw new ConfigError(`${what} is ${st.size} bytes; the limit is ${CONFIG_FILE_MAX_BYTES}`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'ENOENT' ? `${what} does not exist` : `${what} cannot be read: ${(err as Error).message}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const where = jsonErrorPosition((err as Error).message, text);
    throw new ConfigError(
      `${what} is not valid JSON${where ? ` at ${where}` : ''}: ${(err as Error).message}`,
    );
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new ConfigError(`${what} must hold a JSON object`);
  return parsed as Record<string, unknown>;
}

/**
 * "line L, column C (position N)" of a JSON.parse error, or undefined: V8 names the position in some
 * messages and only quotes the text around it in others.
 */
function jsonErrorPosition(message: string, text: string): string | undefined {
  let pos: number | undefined;
  const at = /at position (\d+)/.exec(message);
  if (at?.[1]) pos = Number(at[1]);
  else if (/Unexpected end of JSON input/.test(message)) pos = text.length;
  else {
    const quoted = /Unexpected token '(.+?)', (?:\.\.\.)?"(.*?)(?:\.\.\.)?" is not valid JSON/s.exec(message);
    if (quoted?.[1] && quoted[2] !== undefined) {
      const start = text.indexOf(quoted[2]);
      if (start >= 0) pos = start + quoted[2].lastIndexOf(quoted[1]);
    }
  }
  if (pos === undefined) return undefined;
  const before = text.slice(0, pos).split('\n');
  return `line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1} (position ${pos})`;
}

/** The schema keys whose environment variable is set. */
function envKeys(env: NodeJS.ProcessEnv): string[] {
  const keys: string[] = [];
  const walk = (node: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(node)) {
      const path = prefix ? `${prefix}.${k}` : k;
      const spec = v as { env?: string; doc?: string };
      if (typeof spec.doc === 'string') {
        if (spec.env && env[spec.env] !== undefined) keys.push(path);
      } else walk(v as Record<string, unknown>, path);
    }
  };
  walk(schema as unknown as Record<string, unknown>, '');
  return keys;
}

/** convict quotes the offending value; a connection string's password must not survive in the message. */
function scrubConfigMessage(message: string): string {
  return message.replace(/postgres(?:ql)?:\/\/[^\s'"]+/g, (m) => redactUrl(m));
}

/**
 * Every key with its environment variable, default and doc: config/README.md must document exactly these
 * (test/config.test.ts checks it). `--help` does not use it: its text is static.
 */
export function describeSchema(): { key: string; env: string; default: unknown; doc: string }[] {
  const rows: { key: string; env: string; default: unknown; doc: string }[] = [];
  const walk = (node: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(node)) {
      const path = prefix ? `${prefix}.${k}` : k;
      const spec = v as { env?: string; doc?: string; default?: unknown; sensitive?: boolean };
      if (typeof spec.doc === 'string')
        rows.push({
          key: path,
          env: spec.env ?? '',
          default: spec.sensitive ? '(secret)' : spec.default,
          doc: spec.doc,
        });
      else walk(v as Record<string, unknown>, path);
    }
  };
  walk(schema as unknown as Record<string, unknown>, '');
  return rows;
}

/**
 * The defaults a view without settings of its own gets, as far as the environment tells (for `mvrefresh
 * status`, which runs without the daemon's configuration file).
 */
export function viewDefaults(env: NodeJS.ProcessEnv): { maxStalenessMs: number; refreshBudget: number } {
  const target = env['MVREFRESH_MAX_STALENESS'];
  const maxWait = env['MVREFRESH_MAX_WAIT_MS'];
  const budget = env['MVREFRESH_REFRESH_BUDGET'];
  let retiredTarget: number | undefined;
  try {
    retiredTarget = maxWait === undefined ? undefined : maxWaitAsTarget(maxWait, 'MVREFRESH_MAX_WAIT_MS');
  } catch {
    retiredTarget = undefined;
  }
  return {
    maxStalenessMs:
      (target === undefined ? undefined : parseDuration(target)) ??
      retiredTarget ??
      schema.maxStalenessMs.default,
    refreshBudget: (budget === undefined ? undefined : parseShare(budget)) ?? schema.refreshBudget.default,
  };
}

/** The daemon's sweep interval as far as the environment tells (for `mvrefresh status`). */
export function sweepInterval(env: NodeJS.ProcessEnv): number {
  const raw = env['MVREFRESH_SWEEP_INTERVAL_MS'];
  const ms = raw === undefined ? NaN : Number(raw);
  return Number.isInteger(ms) && ms > 0 ? ms : schema.sweepIntervalMs.default;
}
