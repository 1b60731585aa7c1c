import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import pg from 'pg';
import { sql } from '../src/db/sql.js';
import { stopChild } from './child-stop.js';
import { freePort, serverUser } from './embedded.js';

/**
 * A private PgBouncer for the tests and benchmarks (Debian's package `pgbouncer`): its own ini in a temporary
 * directory, a free port on 127.0.0.1, one pooled database, clients admitted without a password (auth_type
 * trust) and the server reached with the credentials of the URL given. It never touches a system instance.
 */
export type PoolMode = 'transaction' | 'session';

export interface PgBouncer {
  /** The pooled database's URL: same user and database name as the server URL, PgBouncer's port. */
  readonly url: string;
  readonly mode: PoolMode;
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  /** The server and database to pool (its password, if any, is given to PgBouncer for the server side). */
  serverUrl: string;
  mode: PoolMode;
  /** Startup parameters PgBouncer accepts and drops (e.g. `options`); by default it refuses them. */
  ignoreStartupParameters?: string[];
  /** Server connections per user and database (PgBouncer's default_pool_size). */
  poolSize?: number;
}

const SEARCH_DIRS = ['/usr/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/sbin'];
const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5000;

/** The pgbouncer binary, or undefined when it is not installed. */
export function pgbouncerBinary(): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter).filter(Boolean), ...SEARCH_DIRS];
  return dirs.map((d) => join(d, 'pgbouncer')).find((p) => existsSync(p));
}

/** A value of a PgBouncer connection string, in single quotes with quotes and backslashes escaped. */
function quoted(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export async function startPgBouncer(opts: PgBouncerOptions): Promise<PgBouncer> {
  const binary = pgbouncerBinary();
  if (!binary) throw new Error('pgbouncer is not installed (Debian: apt-get install pgbouncer)');
  const server = new URL(opts.serverUrl);
  const database = decodeURIComponent(server.pathname.slice(1)) || 'postgres';
  // the ini's keys take no quoting
  if (!/^\w+$/.test(database))
    throw new Error(`database name ${JSON.stringify(database)}: PgBouncer's ini needs letters, digits and _`);
  const user = decodeURIComponent(server.username) || 'postgres';
  const password = decodeURIComponent(server.password);
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'mvrefresh-pgbouncer-'));
  const osUser = serverUser();
  const connection = [
    `host=${quoted(server.hostname.replace(/^\[|\]$/g, ''))}`,
    `port=${server.port || '5432'}`,
    `dbname=${quoted(database)}`,
    `user=${quoted(user)}`,
    ...(password ? [`password=${quoted(password)}`] : []),
  ].join(' ');
  const ini = [
    '[databases]',
    `${database} = ${connection}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${join(dir, 'users.txt')}`,
    `pool_mode = ${opts.mode}`,
    `default_pool_size = ${opts.poolSize ?? 20}`,
    'max_client_conn = 200',
    ...(opts.ignoreStartupParameters?.length
      ? [`ignore_startup_parameters = ${opts.ignoreStartupParameters.join(',')}`]
      : []),
    `logfile = ${join(dir, 'pgbouncer.log')}`,
    '',
  ].join('\n');
  await writeFile(join(dir, 'pgbouncer.ini'), ini, { mode: 0o600 });
  await writeFile(join(dir, 'users.txt'), `${JSON.stringify(user)} ""\n`, { mode: 0o600 });
  if (osUser)
    for (const f of ['', 'pgbouncer.ini', 'users.txt']) await chown(join(dir, f), osUser.uid, osUser.gid);

  const child: ChildProcess = spawn(binary, [join(dir, 'pgbouncer.ini')], {
    ...(osUser ? { uid: osUser.uid, gid: osUser.gid } : {}),
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const stderr: Buffer[] = [];
  child.stderr?.on('data', (b: Buffer) => stderr.push(b));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pooled = new URL(opts.serverUrl);
  pooled.hostname = '127.0.0.1';
  pooled.port = String(port);
  pooled.password = '';
  const url = pooled.toString();

  const stop = async () => {
    // SIGTERM: immediate shutdown, every client and server connection closed
    await stopChild(child, exited, STOP_TIMEOUT_MS);
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`pgbouncer exited at start: ${Buffer.concat(stderr).toString('utf8').trim()}`);
    }
    const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.query(sql.ping);
      await probe.end();
      break;
    } catch (err) {
      await probe.end().catch(() => undefined);
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`pgbouncer did not accept connections within ${READY_TIMEOUT_MS} ms: ${String(err)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { url, mode: opts.mode, stop };
}
