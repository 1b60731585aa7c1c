import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/paths.js';
import { useTestDatabase } from './support/db.js';

const db = useTestDatabase('cli_texts');
const BIN = join(packageRoot, 'dist', 'src', 'bin.js');
const run = promisify(execFile);

/**
 * Runs a shell pipeline in which $MVREFRESH is the built CLI, as a user types it; returns the CLI's exit code
 * and what the pipeline printed on stdout and stderr. `$MVREFRESH` must come first: its exit code is told on
 * stderr by the subshell that runs it, past the pipe.
 */
async function shell(pipeline: string): Promise<{ cliCode: number; stdout: string; stderr: string }> {
  const [first, ...rest] = pipeline.split(' | ');
  const { stdout, stderr } = await run(
    '/bin/sh',
    ['-c', [`( ${first}; echo "cli exit $?" >&2 )`, ...rest].join(' | ')],
    {
      env: { PATH: process.env['PATH'] ?? '', DATABASE_URL: db.url, MVREFRESH: `${process.execPath} ${BIN}` },
    },
  );
  const code = /cli exit (\d+)\n$/.exec(stderr);
  return { cliCode: Number(code?.[1]), stdout, stderr: stderr.replace(/cli exit \d+\n$/, '') };
}

beforeAll(async () => {
  await db.sql.query(`
    CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE statuses (id int PRIMARY KEY, account_id int NOT NULL, created_at timestamptz NOT NULL);
    INSERT INTO accounts VALUES (1, 'a'), (2, 'b');
    INSERT INTO statuses VALUES (1, 1, now()), (2, 2, now());
    CREATE MATERIALIZED VIEW account_summaries AS SELECT id, name FROM accounts;
    CREATE UNIQUE INDEX ON account_summaries (id);
    CREATE MATERIALIZED VIEW global_follow_recommendations AS
      SELECT s.account_id AS id, count(*) AS n FROM statuses s JOIN account_summaries a ON a.id = s.account_id
       WHERE s.created_at > now() - interval '30 days' GROUP BY s.account_id;
    CREATE UNIQUE INDEX ON global_follow_recommendations (id);`);
});

describe('the CLI piped into a reader that goes away', () => {
  it('status | head -1 and watch | head -n 0 end quietly: exit 0, no stack trace', async () => {
    await db.sql.query(`CREATE MATERIALIZED VIEW pipe_view AS SELECT id FROM accounts;
      CREATE UNIQUE INDEX ON pipe_view (id)`);
    const watch = await shell('$MVREFRESH watch pipe_view | head -n 0');
    expect(watch).toMatchObject({ cliCode: 0, stderr: '' });
    const status = await shell('$MVREFRESH status | head -1');
    expect(status.cliCode).toBe(0);
    expect(status.stderr).toBe('');
    expect(status.stdout.split('\n')[0]).toMatch(/^VIEW\s+STATE/);
  });
});

describe('what the CLI says', () => {
  it('keeps a refusal and its hint apart as two sentences', async () => {
    const r = await shell('$MVREFRESH watch global_follow_recommendations');
    expect(r.cliCode).toBe(1);
    expect(r.stderr).toContain(
      'reads materialized view public.account_summaries, which is not watched. Hint: Watch it first',
    );
  });

  it('watch --with-dependencies names the dependencies it watched and the tables their triggers went on, warnings first', async () => {
    const r = await shell('$MVREFRESH watch global_follow_recommendations --with-dependencies 2>&1');
    expect(r.cliCode).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toContain('watching dependency public.account_summaries; triggers on: public.accounts');
    const warning = lines.findIndex((l) => l.startsWith('warning: ') && l.includes('clock'));
    const watching = lines.findIndex((l) => l.startsWith('watching public.global_follow_recommendations'));
    expect(warning).toBeGreaterThanOrEqual(0);
    expect(watching).toBeGreaterThan(warning);
    expect(lines[watching + 1]).toBe('  triggers on: public.statuses');
  });

  it('status marks a view with a blind spot in the table, and MISSES reads as a count and the last miss', async () => {
    await db.sql.query(`SELECT mvrefresh.record_target_miss(v.id, 12000) FROM mvrefresh.view_state v
                         WHERE v.view_name = 'global_follow_recommendations'`);
    const r = await shell('$MVREFRESH status');
    expect(r.cliCode).toBe(0);
    const [header, ...rows] = r.stdout.split('\n');
    const cols = header!.split(/\s{2,}/);
    const cells = (view: string) => rows.find((l) => l.startsWith(view))!.split(/\s{2,}/);
    const recommendations = cells('public.global_follow_recommendations');
    expect(recommendations[cols.indexOf('BLIND SPOTS')]).toBe('clock');
    expect(recommendations[cols.indexOf('MISSES')]).toBe('1, last 12 s stale');
    expect(cells('public.account_summaries')[cols.indexOf('BLIND SPOTS')]).toBe('-');
  });

  it('refuses the retired watch options naming what replaces them', async () => {
    for (const flag of ['--debounce-ms', '--max-wait-ms']) {
      const r = await shell(`$MVREFRESH watch account_summaries ${flag} 0`);
      expect(r.cliCode, flag).toBe(2);
      expect(r.stderr, flag).toContain(`${flag} is retired`);
      expect(r.stderr, flag).toContain('use --max-staleness');
    }
  });
});
