import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { sql } from '../../db/sql.js';
import { describeError } from '../../db/errors.js';
import type { Metrics } from '../metrics.js';
import type { SweepReason } from '../../interfaces.js';
import type { SchemaCheck } from '../checks/schema.js';
import type { Scheduler } from './scheduler.js';
import type { ViewList } from './view-list.js';
import { SerialTask } from '../lib/serial-task.js';

/** A notification for an unknown view reloads the list at most this often (hostile floods stay cheap). */
const UNKNOWN_RELOAD_MIN_MS = 1000;
/** Periodic views are looked at at least this often, whatever the sweep interval. */
const MIN_TICK_MS = 1000;
/**
 * The next sweep is timed to the next periodic refresh's due time, so that the interval holds (a timer of
 * one interval misses a due time that the last refresh's end moved by a few ms, and waits one more
 * interval); not sooner than this after the previous sweep, so that tiny intervals cannot spin the sweep.
 */
const MIN_PERIODIC_DELAY_MS = 10;

export interface SweeperOptions {
  pool: pg.Pool;
  /** Each sweep first checks that the schema is still one this build understands. */
  schemaCheck: SchemaCheck;
  /** Loaded before a sweep that may follow a change of the views. */
  views: ViewList;
  scheduler: Scheduler;
  logger: Logger;
  metrics: Metrics;
  intervalMs: number;
}

interface PeriodicRow {
  id: number;
  refresh_interval_ms: number;
  /** null: never refreshed (due). */
  due_in_ms: number | null;
}

interface DueRow {
  view_id: number;
  reason: string;
  /** Age of the oldest write the view does not reflect (null: a periodic refresh of a clean view). */
  dirty_for_ms: number | null;
}

/**
 * The backstop for anything a notification missed: at start, after every (re)connect of the listener (the
 * composition root calls sweep()) and every intervalMs, reloads the watched views and hands every due view
 * (dirty flag, unfinished cycle, pending mark, periodic refresh) to the scheduler. Also reloads the list,
 * rate-limited, when a notification names a view the scheduler does not know (reloadForUnknown()).
 */
export class Sweeper {
  private readonly task = new SerialTask<SweepReason, void>(
    (reason) => this.run(reason),
    () => ({ reason: 'interval', afterMs: this.tickMs }),
  );
  /** The list of views was loaded at least once. */
  private loaded = false;
  private lastUnknownReload = 0;
  private unknownTimer: NodeJS.Timeout | undefined;
  private tickMs: number;
  private hasPeriodic = false;
  /** Hands out periodic refreshes at their due time, between sweeps (see periodic()). */
  private periodicTimer: NodeJS.Timeout | undefined;
  private periodicRun: Promise<void> | undefined;
  private stopped = true;
  private lastError: string | undefined;

  constructor(private readonly opts: SweeperOptions) {
    this.tickMs = opts.intervalMs;
  }

  /**
   * Runs the first sweep, which loads the list of views, and resolves when it is over (a failed sweep is
   * logged and retried by the timer, not thrown). Idempotent.
   */
  async start(): Promise<void> {
    if (this.task.start()) {
      this.stopped = false;
      this.sweep('start');
    }
    await this.task.current;
  }

  /** Idempotent; waits for a sweep in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.unknownTimer);
    clearTimeout(this.periodicTimer);
    await this.task.stop();
    await this.periodicRun;
  }

  /** Sweeps now (or right after the sweep in progress). */
  sweep(reason: SweepReason): void {
    this.task.request(reason);
  }

  private async run(reason: SweepReason): Promise<void> {
    const end = this.opts.metrics.sweepDuration.startTimer();
    try {
      // The first connection follows the start sweep's load: no second load. A view watched in between is
      // dirty (watch marks it), so due_views() names it, the scheduler reports it unknown, and the
      // new_view sweep loads it.
      if (!(await this.opts.schemaCheck.check())) return;
      if (reason !== 'connect' || !this.loaded) await this.reload();
      const { rows } = await this.opts.pool.query<DueRow>(sql.dueViews);
      // a clear drawn outside a refresh cycle (the drift check's trigger sync, a command whose own call
      // failed) leaves every writer probing until settled (routines/settle_clears.sql)
      await this.opts.pool.query(sql.settleClears);
      const now = Date.now();
      // the database's dirty_since keeps the staleness clock across restarts and missed notifications
      for (const r of rows)
        this.opts.scheduler.schedule(
          r.view_id,
          r.reason === 'interval' ? 'interval' : 'sweep',
          r.dirty_for_ms === null ? undefined : now - Math.max(0, r.dirty_for_ms),
        );
      // a failure here is the periodic check's, not the sweep's: the next sweep arms it again
      if (this.hasPeriodic)
        await this.armPeriodic(rows.filter((r) => r.reason === 'interval').map((r) => r.view_id)).catch(
          () => undefined,
        );
      this.opts.metrics.sweeps.inc({ reason, result: 'ok' });
      if (this.lastError) this.opts.logger.info({ event: 'sweep_recovered' }, 'sweep works again');
      this.lastError = undefined;
      this.opts.logger.debug({ event: 'sweep', reason, due: rows.length }, 'sweep');
    } catch (err) {
      this.opts.metrics.sweeps.inc({ reason, result: 'error' });
      const message = describeError(err);
      // one line per distinct failure, not one per interval, while the database is away
      if (message !== this.lastError)
        this.opts.logger.warn({ event: 'sweep_failed', reason, err: message }, 'sweep failed');
      this.lastError = message;
    } finally {
      end();
    }
  }

  /**
   * Arms the timer of the next periodic refresh due. A view just handed out for its interval is due again
   * an interval after that refresh starts, which may not have happened yet: looked at again an interval
   * from now.
   */
  private async armPeriodic(handedOut: number[], known?: PeriodicRow[]): Promise<void> {
    const rows = known ?? (await this.opts.pool.query<PeriodicRow>(sql.periodicDueIn)).rows;
    const now = new Set(handedOut);
    let next = Infinity;
    for (const r of rows) {
      const dueIn = now.has(r.id) ? r.refresh_interval_ms : (r.due_in_ms ?? Infinity);
      next = Math.min(next, Math.max(MIN_PERIODIC_DELAY_MS, Math.ceil(dueIn)));
    }
    clearTimeout(this.periodicTimer);
    if (this.stopped || next === Infinity) return;
    this.periodicTimer = setTimeout(() => {
      this.periodicRun = this.periodic().finally(() => (this.periodicRun = undefined));
    }, next);
  }

  /**
   * Hands every periodic view now due to the scheduler, without a sweep's reload, and arms the next: the
   * interval holds between starts (a sweep every interval would miss a due time that the last refresh moved
   * by a few ms, and wait one more interval). A failure is left to the sweep.
   */
  private async periodic(): Promise<void> {
    if (this.stopped) return;
    try {
      const { rows } = await this.opts.pool.query<PeriodicRow>(sql.periodicDueIn);
      const due = rows.filter((r) => r.due_in_ms === null || r.due_in_ms <= 0).map((r) => r.id);
      for (const id of due) this.opts.scheduler.schedule(id, 'interval');
      await this.armPeriodic(due, rows);
    } catch (err) {
      this.opts.logger.debug(
        { event: 'periodic_check_failed', err: describeError(err) },
        'periodic check failed',
      );
    }
  }

  /** Loads the watched views (view-list.ts) and times the sweeps to their shortest refresh interval. */
  private async reload(): Promise<void> {
    const shortest = await this.opts.views.load();
    this.hasPeriodic = shortest !== Infinity;
    this.tickMs = Math.max(MIN_TICK_MS, Math.min(this.opts.intervalMs, shortest));
    this.loaded = true;
  }

  /** A notification or a sweep named a view the scheduler does not know: sweep soon, rate-limited. */
  reloadForUnknown(): void {
    if (this.stopped || this.unknownTimer) return;
    const wait = Math.max(0, this.lastUnknownReload + UNKNOWN_RELOAD_MIN_MS - Date.now());
    this.unknownTimer = setTimeout(() => {
      this.unknownTimer = undefined;
      this.lastUnknownReload = Date.now();
      // a sweep reloads the list and then finds the new view dirty (watch marks it so)
      this.sweep('new_view');
    }, wait);
  }
}
