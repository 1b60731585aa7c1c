import pg from 'pg';
import { afterAll, beforeAll, inject } from 'vitest';
import { inTransaction } from '../../src/db/transaction.js';
import { databaseUrl } from './urls.js';
import { delay } from './wait.js';

/** How long a closed connection's backend may take to leave pg_stat_activity (a loaded machine). */
const LEAK_GRACE_MS = 2000;
const LEAK_POLL_MS = 50;

export interface TestDatabase {
  /** URL of this file's own database, cloned from the migrated template. */
  readonly url: string;
  readonly name: string;
  readonly adminUrl: string;
  /** A superuser client on this database, for setting up and checking; closed after the file. */
  readonly sql: pg.Client;
  /** Runs a statement on a new connection and closes it (for concurrent writers). */
  exec(text: string, values?: unknown[]): Promise<pg.QueryResult>;
}

/**
 * One fresh database per test file, cloned from the template that global setup migrated. After the file,
 * fails if anything the tests started still holds a connection to it (a leaked client or pool), then
 * drops it.
 */
export function useTestDatabase(label: string): TestDatabase {
  const adminUrl = inject('adminUrl');
  const template = inject('templateDb');
  const name = `t_${label
    .replace(/[^a-z0-9]/gi, '_')
    .toLowerCase()
    .slice(0, 30)}_${process.pid}_${Math.floor(Math.random() * 1e6)}`;
  const url = databaseUrl(adminUrl, name);
  let client: pg.Client | undefined;
  const db: TestDatabase = {
    url,
    name,
    adminUrl,
    get sql(): pg.Client {
      if (!client) throw new Error('test database not ready (used outside a test?)');
      return client;
    },
    async exec(text, values) {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        return await c.query(text, values);
      } finally {
        await c.end();
      }
    },
  };
  beforeAll(async () => {
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      await admin.query(
        `CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(template)}`,
      );
    } finally {
      await admin.end();
    }
    client = new pg.Client({ connectionString: url, application_name: 'mvrefresh:test' });
    await client.connect();
  });
  afterAll(async () => {
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      const myPid = client
        ? (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid
        : undefined;
      await client?.end();
      // a backend whose client has closed its socket leaves pg_stat_activity a moment later: a connection
      // still there after LEAK_GRACE_MS was not closed
      const leaked = async () =>
        (
          await admin.query<{ application_name: string; state: string }>(
            `SELECT application_name, state FROM pg_stat_activity
              WHERE datname = $1 AND pid <> pg_backend_pid() AND pid IS DISTINCT FROM $2 AND backend_type = 'client backend'`,
            [name, myPid ?? null],
          )
        ).rows;
      let rows = await leaked();
      for (const deadline = Date.now() + LEAK_GRACE_MS; rows.length > 0 && Date.now() < deadline;) {
        await delay(LEAK_POLL_MS);
        rows = await leaked();
      }
      await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      if (rows.length > 0)
        throw new Error(
          `leaked connections to the test database: ${rows.map((r) => `${r.application_name || '?'} (${r.state})`).join(', ')}`,
        );
    } finally {
      await admin.end();
    }
  });
  return db;
}

/** Runs `fn` in a REPEATABLE READ transaction on `c` (an apply's level): committed, or rolled back when it throws. */
export function inRepeatableRead<T>(c: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  return inTransaction(c, fn, 'BEGIN ISOLATION LEVEL REPEATABLE READ');
}
