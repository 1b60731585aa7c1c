/**
 * The write path of bench:incremental: single-row INSERT TPS on comments with the triggers of 1 and of 20
 * watched views (today's mark trigger, then incremental capture), and the time of a COPY of
 * BENCH_COPY_ROWS comments with the triggers of the 20 views; each against the same on comments_plain, a
 * twin of comments that no view reads, in paired rounds (alternating which goes first), so that a slow
 * moment of a shared machine shows in both sides of a pair. After the COPY with the capture of 20
 * incremental views: the daemon's catch-up and each view against its query. No daemon runs during the
 * INSERT rounds and the COPYs: they measure what the writers pay, not what the applies take from them.
 */
import pg from 'pg';
import { DaemonProcess } from '../support/daemon.js';
import { median, numberEnv } from '../support/report.js';
import type { OtherWork } from './others.js';
import { cliOk, difference, dropView, waitClean, watchAll, type Difference, type Watched } from './views.js';
import {
  COMMENTS,
  COPY_COLUMNS,
  PLAIN_TWIN_SQL,
  SMALL_VIEWS,
  WriterLoad,
  copyFileSql,
  createViewSql,
  type Target,
} from './workload.js';

export const COPY_ROWS = numberEnv('BENCH_COPY_ROWS', 1_000_000);
export const INSERT_SECONDS = numberEnv('BENCH_INSERT_SECONDS', 15);
export const INSERT_ROUNDS = numberEnv('BENCH_INSERT_ROUNDS', 3);
/** Each INSERT round's warm-up (connections open, statements prepared, caches warm). */
export const INSERT_WARMUP_S = numberEnv('BENCH_INSERT_WARMUP_SECONDS', 3);

/** The triggers on comments during a configuration's rounds. */
export type Config =
  | '1 view, full (mark trigger)'
  | '20 views, full (mark trigger)'
  | '1 incremental view'
  | '20 incremental views';

export interface InsertPairs {
  config: Config;
  /** Per round: TPS on comments (with the triggers) and on comments_plain; empty when not available. */
  withTriggers: number[];
  plain: number[];
  errors: number;
  /** Share of the machine's CPU other processes used, per round (both sides). */
  othersCpu: number[];
}

export interface CopyPair {
  config: Config;
  /** Seconds of the COPY into comments (with the triggers) and into comments_plain just before. */
  withTriggers?: number;
  plain?: number;
  othersCpu: number[];
}

export interface CatchUp {
  /** Seconds from the daemon's start until every view was clean; undefined when some never were. */
  seconds?: number;
  dirty: string[];
  differences: Map<string, Difference>;
}

export interface WritePathResult {
  inserts: InsertPairs[];
  copies: CopyPair[];
  /** Views asked to be incremental that the CLI watched in full instead, with its reason. */
  refused: Watched[];
  /** Undefined when incremental views are not available. */
  catchUp?: CatchUp;
  incrementalAvailable: boolean;
}

export interface WritePathContext {
  url: string;
  db: pg.Client;
  /** A file the server can write and read (in the private cluster's directory). */
  copyFile: string;
  writers: number;
  catchUpLimitMs: number;
  others: OtherWork;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ratio = (a: readonly number[], b: readonly number[]) =>
  median(a.map((x, i) => x / (b[i] ?? Number.NaN)));
/** The median of the paired rounds' ratios (with triggers over without). */
export const insertRatio = (p: InsertPairs): number => ratio(p.withTriggers, p.plain);

async function maxId(db: pg.ClientBase, table: Target): Promise<number> {
  const { rows } = await db.query<{ id: string | null }>(
    `SELECT max(id) AS id FROM public.${pg.escapeIdentifier(table)}`,
  );
  return Number(rows[0]?.id ?? COMMENTS);
}

/** One round of single-row INSERTs on `table`: TPS, errors, others' CPU share. */
async function insertRound(ctx: WritePathContext, table: Target) {
  await ctx.others.waitQuiet();
  const load = new WriterLoad(ctx.url, ctx.writers, 'inserts', { firstMaxId: COMMENTS, table });
  await load.start();
  await sleep(INSERT_WARMUP_S * 1000);
  const others = ctx.others.watch();
  load.count();
  await sleep(INSERT_SECONDS * 1000);
  await load.stop();
  return { tps: load.tps, errors: load.counts.errors, othersCpu: await others.stop() };
}

/** INSERT_ROUNDS pairs, comments and comments_plain, the first of a pair alternating. */
async function insertPairs(ctx: WritePathContext, config: Config): Promise<InsertPairs> {
  const out: InsertPairs = { config, withTriggers: [], plain: [], errors: 0, othersCpu: [] };
  await ctx.db.query('CHECKPOINT');
  for (let i = 0; i < INSERT_ROUNDS; i += 1) {
    const order: Target[] = i % 2 === 0 ? ['comments', 'comments_plain'] : ['comments_plain', 'comments'];
    for (const table of order) {
      const r = await insertRound(ctx, table);
      (table === 'comments' ? out.withTriggers : out.plain).push(r.tps);
      out.errors += r.errors;
      out.othersCpu.push(r.othersCpu);
    }
  }
  process.stderr.write(
    `incremental: inserts, ${config}: ${out.withTriggers.map((t) => t.toFixed(0)).join(', ')} TPS; ` +
      `no trigger ${out.plain.map((t) => t.toFixed(0)).join(', ')}; ratio ${insertRatio(out).toFixed(2)}\n`,
  );
  return out;
}

/** One COPY of the prepared file into `table` in its own transaction; seconds, commit included. */
async function copyInto(
  ctx: WritePathContext,
  table: Target,
): Promise<{ seconds: number; othersCpu: number }> {
  await ctx.db.query('CHECKPOINT');
  await ctx.others.waitQuiet();
  const others = ctx.others.watch();
  const t0 = performance.now();
  await ctx.db.query(
    `COPY public.${pg.escapeIdentifier(table)} ${COPY_COLUMNS} FROM ${pg.escapeLiteral(ctx.copyFile)} (FORMAT csv)`,
  );
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, othersCpu: await others.stop() };
}

/** Removes rows copied into `table` (no view reads comments_plain; comments only with every view unwatched). */
async function removeCopied(db: pg.ClientBase, table: Target, above: number): Promise<void> {
  const t = `public.${pg.escapeIdentifier(table)}`;
  await db.query(`DELETE FROM ${t} WHERE id > $1`, [above]);
  await db.query(`VACUUM ANALYZE ${t}`);
}

/** A COPY into comments_plain, then the same into comments (which keeps its rows). */
async function copyPair(ctx: WritePathContext, config: Config): Promise<CopyPair> {
  const plainAbove = await maxId(ctx.db, 'comments_plain');
  const plain = await copyInto(ctx, 'comments_plain');
  await removeCopied(ctx.db, 'comments_plain', plainAbove);
  const withTriggers = await copyInto(ctx, 'comments');
  process.stderr.write(
    `incremental: COPY ${COPY_ROWS} rows, ${config}: ${withTriggers.seconds.toFixed(2)} s, no trigger ${plain.seconds.toFixed(2)} s\n`,
  );
  return {
    config,
    withTriggers: withTriggers.seconds,
    plain: plain.seconds,
    othersCpu: [plain.othersCpu, withTriggers.othersCpu],
  };
}

const notRun = (config: Config): InsertPairs => ({
  config,
  withTriggers: [],
  plain: [],
  errors: 0,
  othersCpu: [],
});

export async function measureWritePath(ctx: WritePathContext): Promise<WritePathResult> {
  const { db, url } = ctx;
  for (const v of SMALL_VIEWS) await db.query(createViewSql(v));
  await db.query(PLAIN_TWIN_SQL);
  await db.query(copyFileSql(ctx.copyFile, COPY_ROWS));
  await db.query('VACUUM ANALYZE public.comments, public.comments_plain');
  const first = SMALL_VIEWS.slice(0, 1);
  const rest = SMALL_VIEWS.slice(1);
  const inserts: InsertPairs[] = [];
  const copies: CopyPair[] = [];

  await watchAll(url, first, false);
  inserts.push(await insertPairs(ctx, '1 view, full (mark trigger)'));
  await watchAll(url, rest, false);
  inserts.push(await insertPairs(ctx, '20 views, full (mark trigger)'));
  const above = await maxId(db, 'comments');
  copies.push(await copyPair(ctx, '20 views, full (mark trigger)'));
  await cliOk(url, 'unwatch', '--all');
  await removeCopied(db, 'comments', above);

  const one = await watchAll(url, first, true);
  let result: WritePathResult;
  if (!one) {
    inserts.push(notRun('1 incremental view'), notRun('20 incremental views'));
    copies.push({ config: '20 incremental views', othersCpu: [] });
    result = { inserts, copies, refused: [], incrementalAvailable: false };
  } else {
    inserts.push(await insertPairs(ctx, '1 incremental view'));
    const twenty = [...one, ...((await watchAll(url, rest, true)) ?? [])];
    inserts.push(await insertPairs(ctx, '20 incremental views'));
    copies.push(await copyPair(ctx, '20 incremental views'));
    const catchUp = await catchUpAndCheck(ctx);
    await cliOk(url, 'unwatch', '--all');
    result = {
      inserts,
      copies,
      refused: twenty.filter((w) => w.refused !== undefined),
      catchUp,
      incrementalAvailable: true,
    };
  }
  for (const v of SMALL_VIEWS) await dropView(db, v);
  await db.query('DROP TABLE public.comments_plain');
  return result;
}

/** The daemon applies what the INSERT rounds and the COPY left; then each view against its query. */
async function catchUpAndCheck(ctx: WritePathContext): Promise<CatchUp> {
  const names = SMALL_VIEWS.map((v) => v.name);
  const daemon = new DaemonProcess(ctx.url, { inheritEnv: true, settings: { MVREFRESH_LOG_LEVEL: 'info' } });
  const t0 = performance.now();
  let clean: Map<string, number>;
  try {
    await daemon.started();
    clean = await waitClean(ctx.db, names, ctx.catchUpLimitMs);
  } finally {
    await daemon.stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  const differences = new Map<string, Difference>();
  for (const v of SMALL_VIEWS) differences.set(v.name, await difference(ctx.db, v));
  const dirty = names.filter((n) => !clean.has(n));
  return { ...(dirty.length === 0 ? { seconds } : {}), dirty, differences };
}
