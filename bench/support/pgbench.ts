/** pgbench against the bench server (BENCH_URL): the benches' one way to run it. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ADMIN_URL } from './db.js';

const run = promisify(execFile);
/** pgbench's report, and the per-transaction lines of -l, can be long. */
const MAX_BUFFER = 16 * 1024 * 1024;
const DEFAULT_THREADS = 2;

export interface PgbenchRun {
  database: string;
  clients: number;
  seconds: number;
  /** Worker threads (-j). */
  threads?: number;
  /** A script file (-f); else `builtin`; else pgbench's default, TPC-B. */
  script?: string;
  /** A built-in script (-b). */
  builtin?: string;
  /** With -l: the per-transaction log files start with this path. */
  logPrefix?: string;
  /** Environment of pgbench beyond the password (e.g. PGOPTIONS). */
  env?: Record<string, string>;
}

/** -h, -p and -U of the bench server. */
function serverArgs(): string[] {
  const u = new URL(ADMIN_URL);
  return ['-h', u.hostname, '-p', u.port || '5432', '-U', decodeURIComponent(u.username || 'postgres')];
}

function pgEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const password = decodeURIComponent(new URL(ADMIN_URL).password);
  return { ...process.env, ...(password ? { PGPASSWORD: password } : {}), ...extra };
}

/** The arguments of one run (shown as they are in the results, where a bench prints its command). */
export function pgbenchArgs(r: PgbenchRun): string[] {
  return [
    '-n',
    '-c',
    String(r.clients),
    '-j',
    String(r.threads ?? DEFAULT_THREADS),
    '-T',
    String(r.seconds),
    ...(r.script ? ['-f', r.script] : r.builtin ? ['-b', r.builtin] : []),
    ...(r.logPrefix ? ['-l', '--log-prefix', r.logPrefix] : []),
    ...serverArgs(),
    r.database,
  ];
}

/** Runs pgbench; its transactions per second. Throws when it fails or reports a failed transaction. */
export async function pgbench(r: PgbenchRun): Promise<number> {
  const { stdout } = await run('pgbench', pgbenchArgs(r), { env: pgEnv(r.env), maxBuffer: MAX_BUFFER });
  const tps = Number(/^tps = ([\d.]+)/m.exec(stdout)?.[1]);
  const failed = Number(/^number of failed transactions: (\d+)/m.exec(stdout)?.[1] ?? 0);
  if (!Number.isFinite(tps) || failed > 0) throw new Error(`pgbench on ${r.database} failed:\n${stdout}`);
  return tps;
}

/** `pgbench -i` at `scale`: its tables in `database`, quietly. */
export async function pgbenchInit(database: string, scale: number): Promise<void> {
  await run('pgbench', ['-i', '-q', '-s', String(scale), ...serverArgs(), database], { env: pgEnv() });
}
