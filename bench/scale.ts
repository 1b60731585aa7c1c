/**
 * Scale: many watched views. BENCH_SCALE_VIEWS tables (default 1000), one small materialized view on
 * each, all watched; the daemon (the built CLI, a separate process) runs while writers dirty
 * BENCH_SCALE_RATE views per second (200) for BENCH_SCALE_SECONDS (30). Measured: the daemon's RSS and
 * CPU (from /proc), the sweep query's time with every view clean and with many dirty, the notification
 * queue's usage, and that every view ends equal to its query.
 *
 * Environment: BENCH_URL (superuser URL; default the local server), BENCH_OUT (docs/benchmarks.md).
 */
import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import { migrate } from '../src/db/migrate.js';
import { DaemonProcess } from './support/daemon.js';
import { cpuSeconds } from './support/disturbance.js';
import { connect, recreateDatabase, dropDatabase } from './support/db.js';
import { numberEnv, writeSection } from './support/report.js';

const VIEWS = numberEnv('BENCH_SCALE_VIEWS', 1000);
const RATE = numberEnv('BENCH_SCALE_RATE', 200);
const SECONDS = numberEnv('BENCH_SCALE_SECONDS', 30);
const DB = 'mvrefresh_bench_scale';
const SWEEP_SAMPLES = 50;
const PAGE_KB = 4;

/** Resident memory (MiB) and CPU seconds (user + system) of a process, from /proc. */
async function proc(pid: number): Promise<{ rssMiB: number; cpuSeconds: number }> {
  const statm = (await readFile(`/proc/${pid}/statm`, 'utf8')).split(' ');
  return { rssMiB: (Number(statm[1]) * PAGE_KB) / 1024, cpuSeconds: await cpuSeconds(pid) };
}

async function sweepMs(c: pg.Client): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < SWEEP_SAMPLES; i += 1) await c.query('SELECT count(*) FROM mvrefresh.due_views()');
  return (performance.now() - t0) / SWEEP_SAMPLES;
}

async function main() {
  const url = await recreateDatabase(DB);
  const c = await connect(url);
  await migrate(c);
  const t0 = performance.now();
  for (let i = 1; i <= VIEWS; i += 1) {
    await c.query(`CREATE TABLE t${i} (id int PRIMARY KEY, v int);
      INSERT INTO t${i} SELECT g, g FROM generate_series(1, 10) g;
      CREATE MATERIALIZED VIEW mv${i} AS SELECT id, v FROM t${i};
      CREATE UNIQUE INDEX ON mv${i} (id);`);
    await c.query('SELECT mvrefresh.watch($1)', [`mv${i}`]);
  }
  const watchSeconds = (performance.now() - t0) / 1000;
  await c.query('CALL mvrefresh.refresh_dirty()');
  const sweepClean = await sweepMs(c);

  const daemon = new DaemonProcess(url, { settings: { MVREFRESH_LOG_LEVEL: 'warn' } });
  await new Promise((r) => setTimeout(r, 2000));
  const start = await proc(daemon.pid);
  let maxRss = start.rssMiB;
  let maxQueue = 0;
  let sweepDirty = 0;
  const writer = await connect(url);
  const wallStart = performance.now();
  let writes = 0;
  while (performance.now() - wallStart < SECONDS * 1000) {
    const tick = performance.now();
    for (let k = 0; k < RATE; k += 1) {
      const i = 1 + Math.floor(Math.random() * VIEWS);
      await writer.query(`UPDATE t${i} SET v = v + 1 WHERE id = 1 + (random() * 9)::int`);
      writes += 1;
    }
    const p = await proc(daemon.pid);
    maxRss = Math.max(maxRss, p.rssMiB);
    const q = await c.query<{ u: number }>('SELECT pg_notification_queue_usage() AS u');
    maxQueue = Math.max(maxQueue, q.rows[0]!.u);
    if (sweepDirty === 0) sweepDirty = await sweepMs(c);
    const wait = 1000 - (performance.now() - tick);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  const wall = (performance.now() - wallStart) / 1000;
  const end = await proc(daemon.pid);
  // every view converges
  const convergeStart = performance.now();
  for (;;) {
    const { rows } = await c.query<{ n: string }>('SELECT count(*) AS n FROM mvrefresh.status WHERE dirty');
    if (rows[0]?.n === '0') break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const convergeMs = performance.now() - convergeStart;
  let stale = 0;
  for (let i = 1; i <= VIEWS; i += 1) {
    const { rows } = await c.query<{ n: string }>(
      `SELECT count(*) AS n FROM ((TABLE mv${i} EXCEPT TABLE t${i}) UNION ALL (TABLE t${i} EXCEPT TABLE mv${i})) d`,
    );
    if (rows[0]?.n !== '0') stale += 1;
  }
  await daemon.stop();
  await writer.end();
  await c.end();
  const cpuPercent = ((end.cpuSeconds - start.cpuSeconds) / wall) * 100;

  const section = [
    '## Scale',
    '',
    `Measured ${new Date().toISOString()} by \`npm run bench:scale\` (bench/scale.ts): ${VIEWS} tables, one watched`,
    `materialized view on each (watching all of them took ${watchSeconds.toFixed(1)} s); the daemon (default settings, a`,
    `separate process) ran while one writer updated ${RATE} random tables per second for ${SECONDS} s (${writes} writes).`,
    '',
    '| measure | value | goal |',
    '| --- | --- | --- |',
    `| daemon RSS, max | ${maxRss.toFixed(0)} MiB | < 150 MiB |`,
    `| daemon CPU | ${cpuPercent.toFixed(1)} % of a core | < 10 % |`,
    `| sweep query, all ${VIEWS} views clean | ${sweepClean.toFixed(2)} ms | independent of clean views |`,
    `| sweep query, during the write load | ${sweepDirty.toFixed(2)} ms | |`,
    `| notification queue usage, max | ${(maxQueue * 100).toFixed(4)} % | |`,
    `| time for every view to be clean after the writes stopped | ${Math.round(convergeMs)} ms | |`,
    `| views not equal to their query at the end | ${stale} | 0 |`,
    '',
  ].join('\n');
  console.log(section);
  await writeSection('## Scale', section);
  await dropDatabase(DB);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
