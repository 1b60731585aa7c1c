import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { runCli as run } from './support/cli.js';
import { useTestDatabase } from './support/db.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('run');
/** The test database's URL, with a password in it even where the server does not ask for one. */
function urlWithPassword(): { url: string; password: string } {
  const u = new URL(db.url);
  if (!u.password) u.password = 'pw-that-must-not-leak';
  return { url: u.toString(), password: decodeURIComponent(u.password) };
}

async function slowView(name: string, seconds: number) {
  await db.sql
    .query(`CREATE TABLE IF NOT EXISTS slow_src (k int PRIMARY KEY); INSERT INTO slow_src VALUES (1) ON CONFLICT DO NOTHING;
    CREATE MATERIALIZED VIEW ${name} AS SELECT k, (SELECT 1 FROM pg_sleep(${seconds})) AS s FROM slow_src WITH NO DATA;
    CREATE UNIQUE INDEX ON ${name} (k);`);
  await db.sql.query('SELECT mvrefresh.watch($1)', [name]);
}

/** The daemon's refresh backends in this database; only the active ones when `active`. */
async function refreshBackends(active: boolean): Promise<number> {
  const { rows } = await db.sql.query(
    `SELECT 1 FROM pg_stat_activity WHERE application_name = 'mvrefresh:refresh' AND datname = current_database()
        AND (state = 'active' OR NOT $1)`,
    [active],
  );
  return rows.length;
}

const refreshRunning = () =>
  waitFor('a refresh to be running', async () => (await refreshBackends(true)) > 0);

/** Waits until the cancelled refresh's backend is gone, then unwatches `view`. */
async function cancelledAndUnwatched(view: string): Promise<void> {
  await waitFor('the cancelled backend to finish', async () => (await refreshBackends(false)) === 0);
  await db.sql.query('SELECT mvrefresh.unwatch($1)', [view]);
}

/** Starts `mvrefresh run`, sends it `signal` and waits for the line that says it was ignored. */
async function daemonIgnoring(signal: NodeJS.Signals) {
  const p = run(['run'], { DATABASE_URL: db.url });
  await waitFor('the daemon to start', () => p.events().find((e) => e['event'] === 'started'));
  p.child.kill(signal);
  await waitFor(`the ${signal} line`, () =>
    p.events().find((e) => e['event'] === 'signal' && e['signal'] === signal && e['action'] === 'ignored'),
  );
  return p;
}

describe('mvrefresh run', () => {
  it('on SIGTERM lets a running refresh finish, then exits 0', async () => {
    await slowView('slow_a', 2);
    const { url, password } = urlWithPassword();
    const p = run(['run'], { DATABASE_URL: url, MVREFRESH_SHUTDOWN_GRACE_MS: '20000' });
    await refreshRunning();
    p.child.kill('SIGTERM');
    const { code } = await p.exit;
    expect(code).toBe(0);
    const refresh = p.events().find((e) => e['event'] === 'refresh' && e['view'] === 'public.slow_a');
    expect(refresh).toMatchObject({
      outcome: 'populated',
      cause: expect.any(String),
      durationMs: expect.any(Number),
    });
    expect(p.events().at(-1)).toMatchObject({ event: 'stopped' });
    expect(p.text()).not.toContain(password);
    await db.sql.query("SELECT mvrefresh.unwatch('slow_a')");
  });

  it('on SIGTERM cancels a refresh that outlives the grace period, keeps the view dirty without counting a failure, and exits 0', async () => {
    await slowView('slow_b', 30);
    const p = run(['run'], { DATABASE_URL: db.url, MVREFRESH_SHUTDOWN_GRACE_MS: '300' });
    await refreshRunning();
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    const { code } = await p.exit;
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(p.events().some((e) => e['event'] === 'refresh_cancel')).toBe(true);
    const { rows } = await db.sql.query<{
      dirty: boolean;
      consecutive_failures: number;
      last_sqlstate: null;
    }>(
      "SELECT dirty, consecutive_failures, last_sqlstate FROM mvrefresh.status WHERE view = 'public.slow_b'",
    );
    expect(rows[0]).toEqual({ dirty: true, consecutive_failures: 0, last_sqlstate: null });
    await cancelledAndUnwatched('slow_b');
  });

  it('exits at once on a second signal', async () => {
    await slowView('slow_c', 30);
    const p = run(['run'], { DATABASE_URL: db.url, MVREFRESH_SHUTDOWN_GRACE_MS: '60000' });
    await refreshRunning();
    p.child.kill('SIGTERM');
    await waitFor('the shutdown to begin', () => p.text().includes('"event":"stopping"'));
    p.child.kill('SIGTERM');
    const { code } = await p.exit;
    expect(code).toBe(130);
    await cancelledAndUnwatched('slow_c');
  });

  it('logs SIGHUP and keeps running, then stops gracefully on SIGTERM', async () => {
    const p = await daemonIgnoring('SIGHUP');
    expect(p.child.exitCode).toBeNull();
    p.child.kill('SIGTERM');
    expect((await p.exit).code).toBe(0);
  });

  it('keeps the Node inspector closed on SIGUSR1: nothing listens on 9229, the daemon runs on', async () => {
    const inspectorAnswers = () =>
      new Promise<boolean>((resolve) => {
        const s = connect(9229, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
    // another process of the machine may use the port: then this test cannot tell
    if (await inspectorAnswers()) return;
    const p = await daemonIgnoring('SIGUSR1');
    expect(await inspectorAnswers()).toBe(false);
    expect(p.text()).not.toMatch(/Debugger listening/);
    expect(p.child.exitCode).toBeNull();
    p.child.kill('SIGTERM');
    expect((await p.exit).code).toBe(0);
  });

  it('fails at once with one JSON line when sslmode=require meets a server without TLS', async () => {
    const p = run(['run'], {
      DATABASE_URL: `${db.url}?sslmode=require`,
      MVREFRESH_STARTUP_TIMEOUT_MS: '600000',
    });
    expect((await p.exit).code).toBe(1);
    expect(p.events().filter((e) => e['event'] === 'database_unreachable')).toEqual([]);
    expect(p.events().at(-1)).toMatchObject({ event: 'startup_failed', err: expect.stringMatching(/SSL/) });
    // the driver's multi-line sslmode warning is a log line like any other
    for (const line of p.text().split('\n').filter(Boolean))
      expect(() => JSON.parse(line), line).not.toThrow();
  });

  it('refuses an invalid configuration value with a message naming the key, the value and what is allowed', async () => {
    const p = run(['run'], { DATABASE_URL: db.url, MVREFRESH_CONCURRENCY: 'lots' });
    expect((await p.exit).code).toBe(2);
    expect(p.text()).toMatch(/concurrency/);
    expect(p.text()).toMatch(/lots/);
    expect(p.text()).toMatch(/integer from 1 to 1000/);
  });

  it('refuses a database URL that is not postgres:// without echoing its password', async () => {
    const p = run(['run'], { DATABASE_URL: 'mysql://root:hunter2secret@localhost/db' });
    expect((await p.exit).code).toBe(2);
    expect(p.text()).toMatch(/databaseUrl|DATABASE_URL|postgres/);
    expect(p.text()).not.toContain('hunter2secret');
  });

  it('refuses to start on a database without the mvrefresh schema and says to run migrate', async () => {
    const empty = `${db.name}_empty`;
    await db.exec(`CREATE DATABASE ${empty}`);
    try {
      const u = new URL(db.url);
      u.pathname = `/${empty}`;
      const p = run(['run'], { DATABASE_URL: u.toString() });
      expect((await p.exit).code).toBe(1);
      expect(p.text()).toMatch(/mvrefresh migrate/);
    } finally {
      await db.exec(`DROP DATABASE ${empty} WITH (FORCE)`);
    }
  });

  it('gives up on an unreachable database after the start-up timeout, without leaking the password', async () => {
    const p = run(['run'], {
      DATABASE_URL: 'postgres://someone:unreachable-secret@127.0.0.1:1/db',
      MVREFRESH_STARTUP_TIMEOUT_MS: '1500',
    });
    expect((await p.exit).code).toBe(1);
    expect(p.text()).toMatch(/unreachable/);
    expect(p.text()).not.toContain('unreachable-secret');
  });
});
