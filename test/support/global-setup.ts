import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate } from '../../src/db/migrate.js';
import { startTestServer, type TestServer } from './server.js';
import { databaseUrl } from './urls.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    templateDb: string;
    serverKind: string;
  }
}

let server: TestServer | undefined;
let templateDb: string | undefined;

/** Starts (or finds) the server once and migrates a template database that every test file clones. */
export async function setup(project: TestProject): Promise<void> {
  server = await startTestServer();
  templateDb = `mvrefresh_tpl_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ server_version: string }>('SHOW server_version');
    process.stderr.write(`tests: PostgreSQL ${rows[0]?.server_version} (${server.kind})\n`);
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(templateDb)}`);
  } finally {
    await admin.end();
  }
  const tpl = new pg.Client({ connectionString: databaseUrl(server.adminUrl, templateDb) });
  await tpl.connect();
  try {
    await migrate(tpl);
  } finally {
    await tpl.end();
  }
  project.provide('adminUrl', server.adminUrl);
  project.provide('templateDb', templateDb);
  project.provide('serverKind', server.kind);
}

export async function teardown(): Promise<void> {
  if (server && templateDb) {
    const admin = new pg.Client({ connectionString: server.adminUrl });
    await admin.connect();
    await admin
      .query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(templateDb)} WITH (FORCE)`)
      .catch(() => undefined);
    await admin.end();
  }
  await server?.stop();
}
