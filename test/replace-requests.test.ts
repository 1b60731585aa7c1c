import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPLACE_LOCK_NAMESPACE } from '../src/db/protocol.js';
import { STEPS, PAUSE_ENV, execute, type Step } from '../src/replace/executor.js';
import { ReplaceWorker } from '../src/replace/worker.js';
import { createLogger } from '../src/logger.js';
import { claim, recordCliRequest, release } from '../src/replace/requests.js';
import { prepareAdminSession } from '../src/db/connect.js';
import { runCli } from './support/cli.js';
import { startDaemon } from './support/daemon.js';
import { useTestDatabase } from './support/db.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('replace_requests');

async function rows<T>(text: string, values: unknown[] = []): Promise<T[]> {
  return (await db.sql.query<T & object>(text, values)).rows;
}

async function viewOid(name = 'sales'): Promise<string | null> {
  return (await rows<{ oid: string | null }>('SELECT to_regclass($1)::oid::text AS oid', [name]))[0]!.oid;
}

async function halfBuilt(): Promise<string[]> {
  return (
    await rows<{ relname: string }>(`SELECT relname FROM pg_class WHERE relname LIKE '%\\_\\_mvr\\_new\\_%'`)
  ).map((r) => r.relname);
}

async function request(definition: string, view = 'sales'): Promise<string> {
  return (
    await rows<{ id: string }>('SELECT mvrefresh.request_replace($1, $2) AS id', [view, definition])
  )[0]!.id;
}

async function waitReplace(id: string, timeout: string): Promise<string | null> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    await c.query('CALL mvrefresh.wait_replace($1, $2)', [id, timeout]);
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE items (id serial PRIMARY KEY, kind int NOT NULL, price numeric NOT NULL);
    INSERT INTO items (kind, price) SELECT g % 7, g FROM generate_series(1, 5000) g;
    CREATE MATERIALIZED VIEW sales AS SELECT kind, sum(price) AS total FROM items GROUP BY kind;
    CREATE UNIQUE INDEX sales_kind ON sales (kind);
    CREATE VIEW sales_report AS SELECT kind, total FROM sales;
  `);
  await db.sql.query(`SELECT mvrefresh.watch('sales')`);
});

describe('the SQL entry point', () => {
  it('wait_replace names a request nobody carries out when its timeout passes, and the request stays', async () => {
    const id = await request('SELECT kind, sum(price) AS total, 1 AS v FROM items GROUP BY kind');
    try {
      expect(await waitReplace(id, '300 milliseconds')).toMatch(/still pending .*after/);
      const second = await db.sql
        .query(`SELECT mvrefresh.request_replace('sales', 'SELECT 1')`)
        .catch((e: Error) => e.message);
      expect(second).toBe(`a replacement of public.sales is already requested (request ${id})`);
    } finally {
      await db.sql.query(`UPDATE mvrefresh.replace_requests SET status = 'failed' WHERE id = $1`, [id]);
    }
  });

  it('a daemon carries out request_replace() after the commit, and wait_replace returns when it is done', async () => {
    const daemon = await startDaemon(db.url);
    try {
      const oid = await viewOid();
      const id = await request('SELECT kind, sum(price) AS total, count(*) AS n FROM items GROUP BY kind');
      expect(await waitReplace(id, '60 seconds')).toBeNull();
      expect(await viewOid()).not.toBe(oid);
      expect(await rows('SELECT kind, n FROM sales WHERE kind = 3')).toEqual([{ kind: 3, n: '714' }]);
      expect(await rows(`SELECT count(*)::int AS n FROM sales_report`)).toEqual([{ n: 7 }]);
      // a failing one: wait_replace raises its error
      const bad = await request('SELECT kind, total FROM no_such_table');
      expect(await waitReplace(bad, '60 seconds')).toMatch(
        /replacing public.sales failed: the new definition fails: .*no_such_table/,
      );
      expect(daemon.logs.some((l) => l['event'] === 'replace_finished' && l['outcome'] === 'done')).toBe(
        true,
      );
    } finally {
      await daemon.stop();
    }
    expect(await halfBuilt()).toEqual([]);
  });
});

describe('freshness across the swap', () => {
  it('a write committed during the build is in the view after the swap: the daemon refreshes it at once', async () => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    await prepareAdminSession(c);
    const daemon = await startDaemon(db.url);
    try {
      const id = await recordCliRequest(
        c,
        'sales',
        'SELECT kind, sum(price) AS total, count(*) AS n FROM items GROUP BY kind',
        'public',
        undefined,
      );
      const request = (await claim(c, { id }, 'test'))!;
      const outcome = await execute(c, request, {
        atStep: async (step) => {
          // after the new version's contents were computed: only the marks can carry this write over
          if (step !== 'indexes') return;
          await db.exec('INSERT INTO items (kind, price) VALUES (100, 1)');
          // the daemon refreshes the live view, which consumes the write's mark before the swap
          await waitFor(
            'the write in the live view',
            async () => (await rows('SELECT 1 FROM sales WHERE kind = 100')).length === 1,
          );
        },
      });
      expect(outcome.status).toBe('done');
      await waitFor(
        'the write of the build in the view',
        async () => (await rows('SELECT n FROM sales WHERE kind = 100')).length === 1,
      );
    } finally {
      await daemon.stop();
      await c.end();
    }
  });
});

describe('several executors', () => {
  it('exactly one of two racing executors claims a request; the other finds nothing', async () => {
    const id = await request('SELECT kind, sum(price) AS total, count(*) AS n FROM items GROUP BY kind');
    const clients = [
      new pg.Client({ connectionString: db.url }),
      new pg.Client({ connectionString: db.url }),
    ];
    await Promise.all(clients.map((c) => c.connect()));
    try {
      const claims = await Promise.all(clients.map((c, i) => claim(c, { origins: ['sql'] }, `test:${i}`)));
      expect(claims.filter((c) => c?.id === id)).toHaveLength(1);
      expect(claims.filter((c) => c === null)).toHaveLength(1);
      // the winner dies: its lock goes with its session, and the other one takes the request over
      const winner = claims.findIndex((c) => c !== null);
      await clients[winner]!.end();
      const other = clients[1 - winner]!;
      const taken = await waitFor('the abandoned request claimable', () =>
        claim(other, { origins: ['sql'] }, 'test:other'),
      );
      expect(taken.id).toBe(id);
      expect(taken.status).toBe('running');
      await release(other, id);
      await other.query(`UPDATE mvrefresh.replace_requests SET status = 'failed' WHERE id = $1`, [id]);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
  });

  it('two daemons: exactly one carries out a request', async () => {
    const daemons = [await startDaemon(db.url), await startDaemon(db.url)];
    try {
      const id = await request(
        'SELECT kind, sum(price) AS total, count(*) AS n, min(price) AS low FROM items GROUP BY kind',
      );
      expect(await waitReplace(id, '60 seconds')).toBeNull();
      const started = daemons.map((d) => d.logs.filter((l) => l['event'] === 'replace_started').length);
      expect(started.reduce((a, b) => a + b)).toBe(1);
    } finally {
      await Promise.all(daemons.map((d) => d.stop()));
    }
    // the sessions of stopped daemons leave the server a moment after their sockets close
    await waitFor(
      'no replace lock held',
      async () =>
        (
          await rows(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid::int8 = $1`, [
            REPLACE_LOCK_NAMESPACE,
          ])
        ).length === 0,
    );
  });
});

describe('an interrupted replacement', () => {
  it('a daemon stopping during the build drops the new version and leaves the request pending for another', async () => {
    const worker = (pauseAt?: Step) =>
      new ReplaceWorker({
        databaseUrl: db.url,
        listenUrl: db.url,
        logger: createLogger('silent'),
        intervalMs: 60_000,
        sessionUsable: () => true,
        pauseAt,
      });
    const stopping = worker('populate');
    stopping.start();
    const oid = await viewOid();
    const id = await request('SELECT kind, sum(price) AS total, 3 AS handed_over FROM items GROUP BY kind');
    await waitFor('the build under way', async () => (await halfBuilt()).length === 1);
    await stopping.stop();
    expect(
      await rows('SELECT status, temp_name FROM mvrefresh.replace_requests WHERE id = $1', [id]),
    ).toEqual([{ status: 'pending', temp_name: null }]);
    expect(await halfBuilt()).toEqual([]);
    expect(await viewOid()).toBe(oid);
    const next = worker();
    next.start();
    try {
      expect(await waitReplace(id, '60 seconds')).toBeNull();
    } finally {
      await next.stop();
    }
    expect(await rows('SELECT DISTINCT handed_over FROM sales')).toEqual([{ handed_over: 3 }]);
  });

  for (const step of STEPS)
    it(`killed at step ${step}: the live view is untouched, doctor drops the half-built version, a later replace succeeds`, async () => {
      const oid = await viewOid();
      const contents = await rows('SELECT * FROM sales ORDER BY kind');
      const report = await rows('SELECT * FROM sales_report ORDER BY kind');
      const p = runCli(
        [
          'replace',
          'sales',
          '--query',
          'SELECT kind, sum(price) AS total, 2 AS killed FROM items GROUP BY kind',
        ],
        {
          DATABASE_URL: db.url,
          [PAUSE_ENV]: step,
        },
      );
      await waitFor(`the CLI paused at ${step}`, () => {
        if (p.child.exitCode !== null) throw new Error(`the CLI ended: ${p.text()}`);
        return p.text().includes(`paused at ${step}`);
      });
      p.child.kill('SIGKILL');
      await p.exit;
      // the server ends the session (and its transaction) when it reads the closed socket
      await waitFor(
        'the session of the killed CLI gone',
        async () =>
          (
            await rows(
              `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid::int8 = $1 AND granted`,
              [REPLACE_LOCK_NAMESPACE],
            )
          ).length === 0,
      );
      expect(await viewOid()).toBe(oid);
      expect(await rows('SELECT * FROM sales ORDER BY kind')).toEqual(contents);
      expect(await rows('SELECT * FROM sales_report ORDER BY kind')).toEqual(report);
      if (step !== 'plan' && step !== 'create') expect(await halfBuilt()).toHaveLength(1);
      const doctor = runCli(['doctor'], { DATABASE_URL: db.url });
      await doctor.exit;
      expect(doctor.text()).toMatch(/replace: request \d+ to replace public.sales was interrupted/);
      expect(await halfBuilt()).toEqual([]);
      const again = runCli(
        [
          'replace',
          'sales',
          '--query',
          `SELECT kind, sum(price) AS total, '${step}' AS done FROM items GROUP BY kind`,
        ],
        {
          DATABASE_URL: db.url,
        },
      );
      expect((await again.exit).code).toBe(0);
      expect(await rows('SELECT DISTINCT done FROM sales')).toEqual([{ done: step }]);
    });

  it('Ctrl-C during the build: the CLI drops the new version, marks the request failed and exits 1', async () => {
    const oid = await viewOid();
    const p = runCli(
      ['replace', 'sales', '--query', 'SELECT kind, sum(price) AS total FROM items GROUP BY kind'],
      {
        DATABASE_URL: db.url,
        [PAUSE_ENV]: 'indexes',
      },
    );
    await waitFor('the CLI paused at indexes', () => p.text().includes('paused at indexes'));
    expect(await halfBuilt()).toHaveLength(1);
    p.child.kill('SIGINT');
    expect((await p.exit).code).toBe(1);
    expect(p.text()).toContain('interrupted at step indexes; the live view is unchanged');
    expect(await halfBuilt()).toEqual([]);
    expect(await viewOid()).toBe(oid);
    expect(await rows(`SELECT status FROM mvrefresh.replace_requests ORDER BY id DESC LIMIT 1`)).toEqual([
      { status: 'failed' },
    ]);
  });
});
