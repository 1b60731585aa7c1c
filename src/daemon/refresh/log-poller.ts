import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { describeError } from '../../db/errors.js';
import { sql } from '../../db/sql.js';
import { SerialTask } from '../lib/serial-task.js';
import type { Scheduler } from './scheduler.js';
import type { ViewModes } from './view-modes.js';

export interface LogPollerOptions {
  pool: pg.Pool;
  scheduler: Scheduler;
  /** Which views are incremental (loaded with the list of views). */
  modes: ViewModes;
  logger: Logger;
  intervalMs: number;
}

interface DueRow {
  view_id: number;
  dirty_for_ms: number;
}

/**
 * How incremental views become due from writes to tables that only incremental views read: those tables
 * have no mark trigger and send no notification (routines/capture_logs.sql, docs/design/incremental.md
 * 10.1). Every intervalMs, the incremental views this daemon holds no job for are looked up in their logs
 * (mvrefresh.log_due()); each one behind is handed to the scheduler with the start of its oldest unshown
 * write as its staleness clock. A view with a job planned, queued or running is left out: its job covers
 * what is logged before its apply's snapshot, and the first look after it ends finds the rest (a look
 * during the apply would find the rows that apply is consuming). The sweep (due_views()) reads the same
 * logs, so a failed look loses nothing; it is logged once per distinct failure, at debug (the sweep and
 * the refreshes report a database that is away).
 */
export class LogPoller {
  private readonly task = new SerialTask<'poll', void>(
    () => this.poll(),
    () => ({ reason: 'poll', afterMs: this.opts.intervalMs }),
  );
  private lastError: string | undefined;

  constructor(private readonly opts: LogPollerOptions) {}

  /** Looks every intervalMs. Idempotent. */
  start(): void {
    if (!this.task.start()) return;
    this.task.requestAfter('poll', this.opts.intervalMs);
  }

  /** Idempotent; waits for a look in progress. */
  stop(): Promise<void> {
    return this.task.stop();
  }

  private async poll(): Promise<void> {
    const { pool, scheduler, modes, logger } = this.opts;
    const ids = modes.incrementalIds().filter((id) => scheduler.isIdle(id));
    if (ids.length === 0) return;
    try {
      const { rows } = await pool.query<DueRow>(sql.logDue, [ids]);
      const now = Date.now();
      for (const r of rows) scheduler.schedule(r.view_id, 'log', now - Math.max(0, r.dirty_for_ms));
      this.lastError = undefined;
    } catch (err) {
      const message = describeError(err);
      if (message !== this.lastError)
        logger.debug({ event: 'log_poll_failed', err: message }, 'log poll failed');
      this.lastError = message;
    }
  }
}
