import convict from 'convict';
import { existsSync } from 'node:fs';
import { isPostgresUrl, redactUrl } from './db/url.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

convict.addFormat({
  name: 'postgres-url',
  validate(value: unknown) {
    if (typeof value !== 'string' || value === '')
      throw new Error('must be set (postgres://user:password@host:port/db)');
    if (!isPostgresUrl(value)) throw new Error(`must be a postgres:// URL, got ${redactUrl(value)}`);
  },
  coerce: (v: unknown) => String(v),
});

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
] as const) {
  const f = positiveInt(min, max);
  convict.addFormat({ ...f, name });
}

/** The schema: one place for every key, its environment variable, default and documentation. */
export const schema = {
  databaseUrl: {
    doc: 'PostgreSQL connection string. Its password is never logged.',
    format: 'postgres-url',
    default: '',
    env: 'DATABASE_URL',
    sensitive: true,
  },
  http: {
    host: {
      doc: 'Address the HTTP server listens on.',
      format: String,
      default: '0.0.0.0',
      env: 'MVREFRESH_HTTP_HOST',
    },
    port: {
      doc: 'HTTP port for /healthz, /readyz, /views and /metrics (0: any free port).',
      format: 'port',
      default: 9187,
      env: 'MVREFRESH_HTTP_PORT',
    },
    adminToken: {
      doc: 'Bearer token that enables POST /views/<id>/refresh. Empty: no endpoint changes state.',
      format: String,
      default: '',
      env: 'MVREFRESH_ADMIN_TOKEN',
      sensitive: true,
    },
  },
  logLevel: {
    doc: 'pino log level: fatal, error, warn, info, debug, trace, silent.',
    format: LOG_LEVELS as unknown as string[],
    default: 'info',
    env: 'MVREFRESH_LOG_LEVEL',
  },
  debounceMs: {
    doc: 'Quiet time after the last notification before a view is refreshed.',
    format: 'ms',
    default: 500,
    env: 'MVREFRESH_DEBOUNCE_MS',
  },
  maxWaitMs: {
    doc: 'Longest a view waits under a continuous stream of notifications (>= debounceMs).',
    format: 'ms',
    default: 5000,
    env: 'MVREFRESH_MAX_WAIT_MS',
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
  concurrency: {
    doc: 'Refreshes running at once (each holds one pooled connection).',
    format: 'count',
    default: 2,
    env: 'MVREFRESH_CONCURRENCY',
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
  readonly http: { readonly host: string; readonly port: number; readonly adminToken: string };
  readonly logLevel: LogLevel;
  readonly debounceMs: number;
  readonly maxWaitMs: number;
  readonly sweepIntervalMs: number;
  readonly driftCheckIntervalMs: number;
  readonly concurrency: number;
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
}

/** Validates configuration once into a new, frozen object. Errors name the key, the value and what is allowed. */
export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const conf = convict(schema, { env, args: [] });
  const file = options.file ?? env['MVREFRESH_CONFIG'];
  try {
    if (file) {
      if (!existsSync(file))
        throw new ConfigError(`configuration file ${file} (MVREFRESH_CONFIG) does not exist`);
      conf.loadFile(file);
      // the environment wins over the file
      const fromEnv = convict(schema, { env, args: [] });
      for (const key of envKeys(env)) conf.set(key, fromEnv.get(key as never));
    }
    for (const [key, value] of Object.entries(options.overrides ?? {}))
      if (value !== undefined) conf.set(key, value);
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`invalid configuration: ${scrubConfigMessage((err as Error).message)}`);
  }
  const config = conf.getProperties() as Config;
  if (config.maxWaitMs < config.debounceMs)
    throw new ConfigError(
      `invalid configuration: maxWaitMs (MVREFRESH_MAX_WAIT_MS) = ${config.maxWaitMs} must be >= debounceMs (MVREFRESH_DEBOUNCE_MS) = ${config.debounceMs}`,
    );
  if (config.listener.heartbeatTimeoutMs >= config.listener.heartbeatIntervalMs)
    throw new ConfigError(
      `invalid configuration: listener.heartbeatTimeoutMs (${config.listener.heartbeatTimeoutMs}) must be below listener.heartbeatIntervalMs (${config.listener.heartbeatIntervalMs})`,
    );
  return deepFreeze(structuredClone(config));
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
