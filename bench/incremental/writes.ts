/**
 * The write path of bench:incremental: single-row INSERT TPS on comments with no trigger, with the
 * triggers of 1 and of 20 watched views (today's mark trigger, then incremental capture), and the time of
 * a COPY of BENCH_COPY_ROWS comments without and with those triggers; after the COPY with the capture of
 * 20 incremental views, the daemon's catch-up and each view against its query. No daemon runs during the
 * INSERT rounds and the COPYs: they measure what the writers pay, not what the applies take from them.
 */
import pg from 'pg';
import { DaemonProcess } from '../support/daemon.js';
import { numberEnv } from '../support/report.js';
import type { OtherWork } from './others.js';
import { cliOk, difference, dropView, waitClean, watchAll, type Difference, type Watched } from './views.js';
import { COMMENTS, COPY_COLUMNS, SMALL_VIEWS, WriterLoad, copyFileSql, createViewSql } from './workload.js';

export const COPY_ROWS = numberEnv('BENCH_COPY_ROWS', 1_000_000);
export const INSERT_SECONDS = numberEnv('BENCH_INSERT_SECONDS', 20);

export interface InsertRound {
  label: string;
  /** Undefined when the round could not run (incremental views not available). */
  tps?: number;
  errors: number;
  /** Share of the machine's CPU other processes used during the round. */
  othersCpu?: number;
}

export interface CopyRound {
  label: string;
  seconds?: number;
  othersCpu?: number;
}

export interface CatchUp {
  /** Seconds from the daemon's start until every view was clean; undefined when some never were. */
  seconds?: number;
  dirty: string[];
  differences: Map<string, Difference>;
}

export interface WritePathResult {
  inserts: InsertRound[];
  copies: CopyRound[];
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
  warmupMs: number;
  others: OtherWork;
  catchUpLimitMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function maxCommentId(db: pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ id: string | null }>('SELECT max(id) AS id FROM public.comments');
  return Number(rows[0]?.id ?? COMMENTS);
}

async function insertRound(ctx: WritePathContext, label: string): Promise<InsertRound> {
  await ctx.db.query('CHECKPOINT');
  await ctx.others.waitQuiet();
  const load = new WriterLoad(ctx.url, ctx.writers, 'inserts', COMMENTS);
  await load.start();
  await sleep(ctx.warmupMs);
  const others = ctx.others.watch();
  load.count();
  await sleep(INSERT_SECONDS * 1000);
  await load.stop();
  const othersCpu = await others.stop();
  process.stderr.write(`incremental: inserts, ${label}: ${load.tps.toFixed(0)} TPS\n`);
  return { label, tps: load.tps, errors: load.counts.errors, othersCpu };
}

/** One COPY of the prepared file in its own transaction; seconds, commit included. */
async function copyRound(ctx: WritePathContext, label: string): Promise<CopyRound> {
  await ctx.db.query('CHECKPOINT');
  await ctx.others.waitQuiet();
  const others = ctx.others.watch();
  const t0 = performance.now();
  await ctx.db.query(
    `COPY public.comments ${COPY_COLUMNS} FROM ${pg.escapeLiteral(ctx.copyFile)} (FORMAT csv)`,
  );
  const seconds = (performance.now() - t0) / 1000;
  const othersCpu = await others.stop();
  process.stderr.write(`incremental: COPY ${COPY_ROWS} rows, ${label}: ${seconds.toFixed(2)} s\n`);
  return { label, seconds, othersCpu };
}

/** Removes the copied rows (every view unwatched: no trigger sees it), so that each COPY starts alike. */
async function removeCopied(db: pg.ClientBase, before: number): Promise<void> {
  await db.query('DELETE FROM public.comments WHERE id > $1', [before]);
  await db.query('VACUUM ANALYZE public.comments');
}

export async function measureWritePath(ctx: WritePathContext): Promise<WritePathResult> {
  const { db, url } = ctx;
  for (const v of SMALL_VIEWS) await db.query(createViewSql(v));
  await db.query(copyFileSql(ctx.copyFile, COPY_ROWS));
  await db.query('VACUUM ANALYZE');
  const first = SMALL_VIEWS.slice(0, 1);
  const rest = SMALL_VIEWS.slice(1);
  const inserts: InsertRound[] = [];
  const copies: CopyRound[] = [];

  inserts.push(await insertRound(ctx, 'no trigger'));
  let before = await maxCommentId(db);
  copies.push(await copyRound(ctx, 'no trigger'));
  await removeCopied(db, before);

  await watchAll(url, first, false);
  inserts.push(await insertRound(ctx, '1 view, full (mark trigger)'));
  await watchAll(url, rest, false);
  inserts.push(await insertRound(ctx, '20 views, full (mark trigger)'));
  before = await maxCommentId(db);
  copies.push(await copyRound(ctx, '20 views, full (mark trigger)'));
  await cliOk(url, 'unwatch', '--all');
  await removeCopied(db, before);

  const one = await watchAll(url, first, true);
  if (!one) {
    inserts.push({ label: '1 incremental view', errors: 0 }, { label: '20 incremental views', errors: 0 });
    copies.push({ label: '20 incremental views' });
    for (const v of SMALL_VIEWS) await dropView(db, v);
    return { inserts, copies, refused: [], incrementalAvailable: false };
  }
  inserts.push(await insertRound(ctx, '1 incremental view'));
  const twenty = [...one, ...((await watchAll(url, rest, true)) ?? [])];
  inserts.push(await insertRound(ctx, '20 incremental views'));
  copies.push(await copyRound(ctx, '20 incremental views'));
  const catchUp = await catchUpAndCheck(ctx);
  await cliOk(url, 'unwatch', '--all');
  for (const v of SMALL_VIEWS) await dropView(db, v);
  return {
    inserts,
    copies,
    refused: twenty.filter((w) => w.refused !== undefined),
    catchUp,
    incrementalAvailable: true,
  };
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
