import { EventEmitter } from 'node:events';
import PQueue from 'p-queue';
import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { sql } from '../../db/sql.js';
import { LockWaitMeter } from './lock-wait.js';
import { SqlState, describeError, isConnectionError, isPgError } from '../../db/errors.js';
import { backoffDelay } from '../lib/backoff.js';
import { AppName } from '../../db/connect.js';
import { withTimeout } from '../lib/timers.js';
import { CLEAR_LOCK, type LockHolder, clearLockHolders, describeHolders } from '../../db/lock-holders.js';
import { RETRY_MS, isSuccess } from '../../db/protocol.js';
import type { Job, Outcome, RunResult } from '../../interfaces.js';
import type { Scheduler } from './scheduler.js';
import type { Metrics } from '../metrics.js';
import type { SchemaCheck } from '../checks/schema.js';
import { GONE_SQLSTATES } from '../../db/status.js';
import type { ViewModes } from './view-modes.js';

/** Errors of a CALL that a schema changed under a running daemon explains. */
const SCHEMA_CHANGE_STATES: ReadonlySet<string> = new Set([
  SqlState.undefinedFunction,
  SqlState.undefinedColumn,
  SqlState.undefinedTable,
]);

/** The sqlstate label of a failure whose error carried none (a lost connection, a timeout of the client). */
const NO_SQLSTATE = 'none';
/** How long terminating the running refreshes, and their ending after it, may take at stop. */
const TERMINATE_TIMEOUT_MS = 5000;

/** One row of mvrefresh.refresh_view(): what a cycle did. */
export interface CallRow {
  outcome: Outcome;
  duration_ms: number | null;
  err_sqlstate: string | null;
  err_message: string | null;
  retry_in_ms: number | null;
  dependants: number[] | null;
  wait_ms: number | null;
  cycle_ms: number | null;
}

/** What an incremental view's apply did (mvrefresh.incremental, sql.lastApply). */
interface ApplyRow {
  kind: string | null;
  keys: number | null;
  ms: number | null;
}

/** How an incremental view's last apply wrote 'full: <reason>'. */
const FULL_PREFIX = 'full: ';

export interface RefresherOptions {
  /** Connections for refresh cycles (statement_timeout etc. set at connect). */
  pool: pg.Pool;
  /** A separate pool for terminating running refreshes and recording failures. */
  controlPool: pg.Pool;
  /** Hands out the jobs (its `due` event) and hears of each job's start and end. */
  scheduler: Scheduler;
  logger: Logger;
  metrics: Metrics;
  concurrency: number;
  writerWaitMs: number;
  lockTimeoutMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Asked before recording a failure that a schema change can explain (an undefined routine or column). */
  schemaCheck: SchemaCheck;
  /** How each view is kept: an incremental view's successful cycle reads what its apply did. */
  modes: ViewModes;
}

export interface RefreshReport {
  viewId: number;
  view: string;
  cause: Job['cause'];
  outcome: Outcome;
  /** The whole cycle as the daemon saw it: queue to result, round trip included. */
  durationMs: number;
  /** The REFRESH statement. */
  refreshMs?: number;
  /** Waiting for writers that were running when the cycle cleared the view's marks. */
  waitMs?: number;
  /** The cycle's time in the server (the CALL), of which refreshMs and waitMs are parts. */
  serverMs?: number;
  /** How long the cycle's backend was seen waiting for locks (LockWaitMeter): not counted in its cost. */
  lockWaitMs?: number;
  sqlstate?: string;
  error?: string;
  /** A cycle that failed on its lock timeout: who held the lock it waited for. */
  holders?: LockHolder[];
  /** How the view is kept: 'incremental', 'full', or 'full: <clause>' (mvrefresh.status.mode). */
  mode?: string;
  /** An incremental view's applied cycle: 'keys' (recomputed by key), 'delta' or 'full: <reason>'. */
  applyKind?: string;
  /** The keys that apply recomputed. */
  keys?: number;
  /** The apply's own time (apply_view()), within refreshMs. */
  applyMs?: number;
}

export interface RefresherEvents {
  /** Every finished cycle, after the scheduler was told (tests, the demo, benchmarks). */
  report: [report: RefreshReport];
}

/**
 * Runs the refresh cycles the scheduler hands out, at most `concurrency` at once (p-queue), each as one
 * CALL of mvrefresh.refresh_view() on a pooled connection: the clear / wait / REFRESH protocol lives in
 * SQL, so the daemon and refresh_dirty() cannot disagree. The flow is one way: the refresher takes the
 * scheduler's `due` jobs and calls its started() and finished(); the scheduler knows no refresher.
 * Dependants of a refreshed view are not scheduled here: the procedure marks them and notifies their ids
 * in the refresh's transaction, which reaches every daemon replica (and follows refresh_dirty() too).
 */
export class Refresher extends EventEmitter<RefresherEvents> {
  private readonly queue: PQueue;
  /**
   * Long jobs (Job.long) pass through here first, holding one of concurrency - 1 places until they end: at
   * least one slot of the queue is always free of them. None with a concurrency of 1.
   */
  private readonly longGate: PQueue | undefined;
  private readonly running = new Map<number, { pid: number; view: string }>();
  private readonly connectionFailures = new Map<number, number>();
  /** Views found gone (dropped or renamed), said once each until they refresh again. */
  private readonly gone = new Set<number>();
  private accepting = true;

  constructor(private readonly opts: RefresherOptions) {
    super();
    this.queue = new PQueue({ concurrency: opts.concurrency });
    this.longGate = opts.concurrency > 1 ? new PQueue({ concurrency: opts.concurrency - 1 }) : undefined;
    opts.scheduler.on('due', (job) => this.enqueue(job));
  }

  get queued(): number {
    return this.queue.size + (this.longGate?.size ?? 0);
  }

  get active(): number {
    return this.queue.pending;
  }

  /** Queues the job of a view the scheduler found due; the scheduler hears of its start and its end. */
  private enqueue(job: Job): void {
    if (!this.accepting) {
      this.opts.scheduler.finished(job.viewId, { kind: 'done', refreshed: false, durationMs: 0 });
      return;
    }
    const add = () => this.queue.add(() => this.run(job));
    void (job.long && this.longGate ? this.longGate.add(add) : add());
  }

  private async run(due: Job): Promise<void> {
    if (!this.accepting) {
      this.opts.scheduler.finished(due.viewId, { kind: 'done', refreshed: false, durationMs: 0 });
      return;
    }
    const job: Job = { ...due, ...this.opts.scheduler.started(due) };
    const t0 = performance.now();
    let report: RefreshReport;
    let result: RunResult;
    const waited = { lockWaitMs: 0 };
    const mode = this.opts.modes.modeOf(job.viewId);
    try {
      const { row, apply } = await this.call(job, waited);
      this.connectionFailures.delete(job.viewId);
      const gone = row.outcome === 'failed' && GONE_SQLSTATES.has(row.err_sqlstate ?? '');
      report = {
        viewId: job.viewId,
        view: job.name,
        cause: job.cause,
        outcome: gone ? 'gone' : row.outcome,
        ...(mode !== undefined ? { mode } : {}),
        ...(apply?.kind ? { applyKind: apply.kind } : {}),
        ...(apply?.keys !== null && apply?.keys !== undefined ? { keys: apply.keys } : {}),
        ...(apply?.ms !== null && apply?.ms !== undefined ? { applyMs: round(apply.ms) } : {}),
        durationMs: round(performance.now() - t0),
        ...(row.duration_ms !== null ? { refreshMs: round(row.duration_ms) } : {}),
        ...(row.wait_ms !== null ? { waitMs: round(row.wait_ms) } : {}),
        ...(row.cycle_ms !== null ? { serverMs: round(row.cycle_ms) } : {}),
        ...(waited.lockWaitMs > 0 ? { lockWaitMs: round(waited.lockWaitMs) } : {}),
        ...(row.err_sqlstate ? { sqlstate: row.err_sqlstate } : {}),
        ...(row.err_message ? { error: row.err_message } : {}),
      };
      // the cost the budget counts: the cycle without its waits for writers and for locks
      result = this.resultOf(
        row,
        Math.max(0, performance.now() - t0 - (row.wait_ms ?? 0) - waited.lockWaitMs),
      );
      if (isSuccess(row.outcome) && row.duration_ms !== null)
        this.opts.metrics.refreshDuration.observe({ view: job.name }, row.duration_ms / 1000);
      if (apply) this.countApply(job.name, apply);
      if (result.kind === 'done' && apply?.kind?.startsWith(FULL_PREFIX))
        result = { ...result, oneOff: true };
      else if (result.kind === 'done' && apply?.kind) result = { ...result, proportional: true };
    } catch (err) {
      ({ report, result } = await this.failed(job, err, performance.now() - t0));
      if (mode !== undefined) report = { ...report, mode };
      if ('durationMs' in result)
        result = { ...result, durationMs: Math.max(0, result.durationMs - waited.lockWaitMs) };
    }
    this.opts.metrics.refreshes.inc({ view: job.name, outcome: report.outcome, cause: job.cause });
    if (report.outcome === 'failed' || report.outcome === 'error')
      this.opts.metrics.refreshFailures.inc({
        view: job.name,
        outcome: report.outcome,
        sqlstate: report.sqlstate || NO_SQLSTATE,
      });
    this.log(report);
    this.opts.scheduler.finished(job.viewId, result);
    this.emit('report', report);
  }

  private countApply(view: string, apply: ApplyRow): void {
    if (apply.keys !== null) this.opts.metrics.applyKeys.observe({ view }, apply.keys);
    if (apply.kind?.startsWith(FULL_PREFIX))
      this.opts.metrics.incrementalFull.inc({ view, reason: apply.kind.slice(FULL_PREFIX.length) });
  }

  private async call(
    job: Job,
    waited: { lockWaitMs: number },
  ): Promise<{ row: CallRow; apply: ApplyRow | undefined }> {
    const client = await this.opts.pool.connect();
    let broken: Error | undefined;
    // A checked-out client has no pool error listener: a connection that drops without an ErrorResponse
    // (server crash, immediate shutdown, network reset) emits 'error' on it, which would be uncaught and
    // end the process. The query rejects as well; this only keeps the client from being reused.
    const onError = (err: Error) => {
      broken ??= err;
    };
    client.on('error', onError);
    const pid = (client as unknown as { processID: number }).processID;
    this.running.set(job.viewId, { pid, view: job.name });
    const meter = new LockWaitMeter(this.opts.controlPool, pid);
    try {
      // the unnamed statement, parsed with each cycle (microseconds): a named one lives in one server session,
      // which a transaction pooler does not give the next cycle ("prepared statement ... does not exist")
      const { rows } = await client.query<CallRow>(sql.refreshView, [
        job.viewId,
        job.force,
        this.opts.writerWaitMs,
        this.opts.lockTimeoutMs,
        this.opts.backoffBaseMs,
        this.opts.backoffMaxMs,
      ]);
      const row = rows[0];
      if (!row) throw new Error('mvrefresh.refresh_view() returned no row');
      const apply =
        isSuccess(row.outcome) && this.opts.modes.isIncremental(job.viewId)
          ? await this.lastApply(client, job.viewId)
          : undefined;
      return { row, apply };
    } catch (err) {
      // a read-only session (default_transaction_read_only, a standby) stays read-only until it ends: a
      // new session is the only way to see the database writable again
      if (isConnectionError(err) || (isPgError(err) && err.code === SqlState.readOnlySqlTransaction))
        broken ??= err as Error;
      throw err;
    } finally {
      waited.lockWaitMs = meter.stop();
      this.running.delete(job.viewId);
      client.off('error', onError);
      client.release(broken);
    }
  }

  /**
   * What the cycle's apply did, read on its connection right after it (another replica's apply in between
   * would be read instead: the log line is then one apply off, never wrong about the view). A failed read
   * costs the log line its apply fields, not the cycle.
   */
  private async lastApply(client: pg.PoolClient, viewId: number): Promise<ApplyRow | undefined> {
    try {
      return (await client.query<ApplyRow>(sql.lastApply, [viewId])).rows[0];
    } catch {
      return undefined;
    }
  }

  private resultOf(row: CallRow, durationMs: number): RunResult {
    switch (row.outcome) {
      case 'unwatched':
        return { kind: 'gone' };
      case 'paused':
        return { kind: 'paused' };
      case 'busy':
        // another session holds the view's lock: look again soon, after its refresh is likely over
        return { kind: 'retry', afterMs: RETRY_MS, durationMs };
      case 'waiting':
      case 'failed':
        return {
          kind: 'retry',
          afterMs: row.retry_in_ms ?? this.opts.backoffBaseMs,
          durationMs,
          failed: true,
        };
      default:
        // a refresh that left writers still running keeps the view due: look again when they may be done
        return row.retry_in_ms !== null
          ? { kind: 'retry', afterMs: row.retry_in_ms, durationMs }
          : { kind: 'done', refreshed: isSuccess(row.outcome), durationMs };
    }
  }

  /**
   * The CALL itself failed. A PostgreSQL error (statement_timeout during the wait, a cancel) is recorded on
   * the view with the database's backoff; a lost connection is retried with a local backoff, since the
   * database cannot record anything.
   */
  private async failed(
    job: Job,
    err: unknown,
    elapsed: number,
  ): Promise<{ report: RefreshReport; result: RunResult }> {
    const base = { viewId: job.viewId, view: job.name, cause: job.cause, durationMs: round(elapsed) };
    if (isPgError(err) && err.code && SCHEMA_CHANGE_STATES.has(err.code)) {
      // the daemon stops when migrate moved the schema past this build; the view did nothing wrong
      if (!(await this.opts.schemaCheck.check()))
        return {
          report: { ...base, outcome: 'error', sqlstate: err.code, error: err.message },
          result: { kind: 'done', refreshed: false, durationMs: elapsed },
        };
    }
    if (isPgError(err) && !isConnectionError(err)) {
      try {
        const holders = err.code === SqlState.lockNotAvailable ? await this.clearLockHolders() : [];
        const message =
          holders.length > 0
            ? `${err.message}: the ${CLEAR_LOCK} is held by ${describeHolders(holders)}`
            : err.message;
        const { rows } = await this.opts.controlPool.query<{ retry_in_ms: number | null }>(
          sql.recordFailure,
          [job.viewId, err.code, message, elapsed, this.opts.backoffBaseMs, this.opts.backoffMaxMs],
        );
        const retry = rows[0]?.retry_in_ms;
        return {
          report: {
            ...base,
            outcome: 'failed',
            sqlstate: err.code ?? '',
            error: message,
            ...(holders.length > 0 ? { holders } : {}),
          },
          result:
            retry === null || retry === undefined
              ? { kind: 'gone' }
              : { kind: 'retry', afterMs: retry, durationMs: elapsed, failed: true },
        };
      } catch {
        // counted for the alert: the database holds no record of this failure (read-only, privileges)
        this.opts.metrics.failureRecordsFailed.inc({ view: job.name });
        // fall through: treat as unreachable
      }
    }
    const failures = (this.connectionFailures.get(job.viewId) ?? 0) + 1;
    this.connectionFailures.set(job.viewId, failures);
    return {
      report: {
        ...base,
        outcome: 'error',
        error: describeError(err),
        ...(isPgError(err) && err.code ? { sqlstate: err.code } : {}),
      },
      result: {
        kind: 'retry',
        afterMs: backoffDelay(failures, this.opts.backoffBaseMs, this.opts.backoffMaxMs),
        durationMs: elapsed,
      },
    };
  }

  /**
   * A CALL that fails on a lock timeout outside the REFRESH (which records its own failures) waited, as a
   * rule, for the clear lock, which begin_clear() takes shared: only a session holding it exclusively makes
   * it wait, and settle_clears() holds it so for microseconds. Empty when none holds it now or the lookup
   * fails: the failure is then recorded as it came.
   */
  private async clearLockHolders(): Promise<LockHolder[]> {
    return clearLockHolders(this.opts.controlPool);
  }

  private log(r: RefreshReport): void {
    const fields = { event: 'refresh', ...r };
    if (r.outcome === 'gone') {
      // not a failure to page about: said once, with what to do; the view is still looked at with the
      // failure backoff (and at once after a write), so that one re-created by a migration is refreshed
      if (this.gone.has(r.viewId)) this.opts.logger.debug(fields, `${r.view} is still gone`);
      else
        this.opts.logger.warn(
          { ...fields, event: 'view_gone' },
          `${r.view} no longer exists (dropped or renamed): it is refreshed again if it is re-created; ` +
            `if it is not coming back, run: mvrefresh unwatch ${r.view}`,
        );
      this.gone.add(r.viewId);
      return;
    }
    if (isSuccess(r.outcome) && this.gone.delete(r.viewId))
      this.opts.logger.info({ event: 'view_back', view: r.view }, `${r.view} exists again`);
    if (isSuccess(r.outcome)) this.opts.logger.info(fields, `refreshed ${r.view}`);
    else if (r.outcome === 'failed' || r.outcome === 'error')
      this.opts.logger.warn(fields, `refresh of ${r.view} failed`);
    else this.opts.logger.debug(fields, `refresh of ${r.view}: ${r.outcome}`);
  }

  /**
   * Stops taking work, lets running cycles finish within graceMs, then terminates their backends
   * (terminateRunning()) and waits for the queue to settle. Idempotent.
   */
  async drain(graceMs: number): Promise<void> {
    this.accepting = false;
    this.longGate?.clear();
    this.queue.clear();
    try {
      await withTimeout(this.queue.onIdle(), Math.max(graceMs, 1), 'running refreshes');
      return;
    } catch {
      // grace period over
    }
    await this.terminateRunning();
    await withTimeout(this.queue.onIdle(), TERMINATE_TIMEOUT_MS, 'terminated refreshes').catch(
      () => undefined,
    );
  }

  /**
   * Ends every running refresh now (second signal, or grace period over). The backend is terminated, not
   * cancelled: refresh_view() records a cancelled REFRESH (57014) as the view's failure, with backoff,
   * whereas a terminated session rolls back and leaves the cycle unfinished (started_gen > done_gen), so
   * the view stays due for the next daemon without counting as a failure. Behind a pooler the pid is the
   * pooler's, no backend is ended, and the refresh runs to its end on the server.
   */
  async terminateRunning(): Promise<void> {
    const running = [...this.running.values()];
    if (running.length === 0) return;
    this.opts.logger.warn(
      { event: 'refresh_cancel', views: running.map((r) => r.view) },
      'terminating running refreshes',
    );
    await withTimeout(
      Promise.all(
        running.map((r) =>
          this.opts.controlPool.query(sql.terminateBackend, [r.pid, AppName.refresh]).catch(() => undefined),
        ),
      ),
      TERMINATE_TIMEOUT_MS,
      'pg_terminate_backend',
    ).catch(() => undefined);
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
