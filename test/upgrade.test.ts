import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { latestVersion, migrate } from '../src/db/migrate.js';
import { PACKAGE_VERSION } from '../src/version.js';
import { migrationsDir, packageRoot } from '../src/paths.js';
import { runCli, type Proc } from './support/cli.js';
import { startDaemon, type TestDaemon } from './support/daemon.js';
import { useTestDatabase } from './support/db.js';
import { dumpSchema } from './support/schema-dump.js';
import { INSERT_ORDER, SHOP_QUERY, SHOP_SQL, viewMatches } from './support/shop.js';
import { delay, waitFor } from './support/wait.js';

/**
 * The rolling upgrade: a daemon of the previous release keeps running while this tree's `migrate` upgrades
 * its schema under writers; then a daemon of this tree takes over. The previous release is the packed
 * tarball in test/fixtures/releases/, run with this tree's node_modules (same dependencies).
 */
const PREVIOUS = 'mvrefresh-0.1.0.tgz';
const db = useTestDatabase('upgrade');
const run = promisify(execFile);

let release: string;
let oldBin: string;
let upgradeDb: string;
let upgradeUrl: string;
let admin: pg.Client;
let client: pg.Client;
const procs: Proc[] = [];
let daemon: TestDaemon | undefined;

beforeAll(async () => {
  release = await mkdtemp(join(tmpdir(), 'mvrefresh-release-'));
  await run('tar', ['-xzf', join(packageRoot, 'test', 'fixtures', 'releases', PREVIOUS), '-C', release]);
  await symlink(join(packageRoot, 'node_modules'), join(release, 'package', 'node_modules'));
  oldBin = join(release, 'package', 'dist', 'src', 'bin.js');
  // a database the previous release migrated, not a clone of this tree's template
  upgradeDb = `${db.name}_old`;
  upgradeUrl = db.url.replace(db.name, upgradeDb);
  admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(upgradeDb)}`);
  client = new pg.Client({ connectionString: upgradeUrl });
  await client.connect();
});

afterAll(async () => {
  await daemon?.stop();
  for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  await client?.end();
  await admin?.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(upgradeDb)} WITH (FORCE)`);
  await admin?.end();
  await rm(release, { recursive: true, force: true });
});

async function oldCli(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [oldBin, ...args, '--database-url', upgradeUrl]);
  return stdout;
}

describe('a rolling upgrade from the previous release', () => {
  it('keeps the old daemon refreshing through migrate under writers, with no failed refresh, until the new one takes over', async () => {
    expect(await oldCli(['migrate'])).toMatch(/schema at version 3/);
    await client.query(SHOP_SQL);
    await oldCli(['watch', 'monthly_product_sales']);

    const old = runCli(
      ['run'],
      // 0.1 daemons do not understand table notifications (schema 5): they find dirty views at their sweep
      {
        DATABASE_URL: upgradeUrl,
        MVREFRESH_LOG_LEVEL: 'debug',
        MVREFRESH_DEBOUNCE_MS: '50',
        MVREFRESH_SWEEP_INTERVAL_MS: '1000',
      },
      oldBin,
    );
    procs.push(old);
    const refreshes = () => old.events().filter((e) => e['event'] === 'refresh');
    const failures = () => refreshes().filter((e) => e['outcome'] === 'failed' || e['outcome'] === 'error');
    await waitFor('the old daemon to refresh', () => refreshes().some((e) => e['outcome'] === 'refreshed'));

    let writing = true;
    let writes = 0;
    const writer = (async () => {
      const w = new pg.Client({ connectionString: upgradeUrl });
      await w.connect();
      try {
        while (writing) {
          await w.query(INSERT_ORDER);
          writes += 1;
          await delay(20);
        }
      } finally {
        await w.end();
      }
    })();

    // this tree's daemon refuses the old schema and names the command that fixes it
    const early = runCli(['run'], { DATABASE_URL: upgradeUrl });
    procs.push(early);
    expect((await early.exit).code).toBe(1);
    expect(early.text()).toContain('run `mvrefresh migrate`');

    await delay(1000);
    const result = await migrate(client);
    expect(result.applied.map((m) => m.version)).toContain(4);
    // schema 5 moved the triggers from one per view and table to one per table, in migrate's transaction
    const { rows: triggers } = await client.query<{ tgname: string }>(
      "SELECT DISTINCT tgname FROM pg_trigger WHERE tgname LIKE 'mvrefresh%' ORDER BY 1",
    );
    expect(triggers).toEqual([{ tgname: 'mvrefresh_mark' }]);
    const refreshedBefore = refreshes().filter((e) => e['outcome'] === 'refreshed').length;
    // the old daemon's prepared CALL, status and sweep queries keep working on the new schema
    await waitFor(
      'the old daemon to refresh three times after migrate',
      () => refreshes().filter((e) => e['outcome'] === 'refreshed').length >= refreshedBefore + 3,
    );
    await delay(3000);
    expect(old.child.exitCode).toBeNull();

    daemon = await startDaemon(upgradeUrl);
    old.child.kill('SIGTERM');
    expect((await old.exit).code).toBe(0);
    await waitFor('the new daemon to refresh', () => daemon!.reports.some((r) => r.outcome === 'refreshed'));

    writing = false;
    await writer;
    expect(writes).toBeGreaterThan(50);
    await waitFor('the view to equal its query', () =>
      viewMatches(client, 'monthly_product_sales', SHOP_QUERY),
    );
    expect(failures()).toEqual([]);
    expect(daemon.reports.filter((r) => r.outcome === 'failed' || r.outcome === 'error')).toEqual([]);
    const { rows } = await client.query<{ consecutive_failures: number; last_error: string | null }>(
      'SELECT consecutive_failures, last_error FROM mvrefresh.view_state',
    );
    expect(rows).toEqual([{ consecutive_failures: 0, last_error: null }]);
  });

  it('leaves the upgraded database with the same schema as a fresh migrate', async () => {
    expect(await dumpSchema(client)).toBe(await readFile(join(migrationsDir, 'schema-dump.txt'), 'utf8'));
  });
});

describe('a migration that breaks running daemons', () => {
  it('makes a running daemon stop by itself with one clear line and exit 3, and a new start refuse, without failing a view', async () => {
    await daemon?.stop();
    daemon = undefined;
    const d = runCli(['run'], { DATABASE_URL: upgradeUrl, MVREFRESH_LOG_LEVEL: 'info' });
    procs.push(d);
    await waitFor('the daemon to start', () => d.events().some((e) => e['event'] === 'started'));
    const dir = await mkdtemp(join(tmpdir(), 'mvrefresh-migrations-'));
    try {
      await cp(migrationsDir, dir, { recursive: true });
      await writeFile(
        join(dir, '0900_breaking.sql'),
        `-- compatibility: breaks older daemons
ALTER TABLE mvrefresh.view_state ADD COLUMN something_new integer;
`,
      );
      const writes = client.query(INSERT_ORDER);
      await migrate(client, dir);
      await writes;
      // migrate's notification, not the next sweep (30 s by default), stops it
      expect((await d.exit).code).toBe(3);
      const lines = d.events().filter((e) => e['event'] === 'schema_incompatible');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        version: PACKAGE_VERSION,
        knownSchema: await latestVersion(),
        schema: 900,
        breakingVersion: 900,
        action: 'deploy the new mvrefresh version',
      });
      expect(d.events().filter((e) => e['outcome'] === 'failed')).toEqual([]);

      const again = runCli(['run'], { DATABASE_URL: upgradeUrl });
      procs.push(again);
      expect((await again.exit).code).toBe(1);
      expect(again.text()).toContain('deploy the new mvrefresh version');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
