import type pg from 'pg';
import { sql } from '../../db/sql.js';

/** How often a running cycle's backend is looked at; also the resolution of the measured wait. */
export const LOCK_WAIT_POLL_MS = 250;

/**
 * Measures how long a backend waits for locks while a refresh cycle runs on it, by looking at its
 * pg_stat_activity wait event every LOCK_WAIT_POLL_MS (one query of the control pool at a time; nothing
 * for cycles shorter than that). Waiting is no work of the database: the scheduler's cost estimate, which
 * spaces the view's refreshes by cost / budget, must not count it (a cycle that waited 42 s behind DDL
 * would space a 5 ms view's refreshes by minutes).
 */
export class LockWaitMeter {
  private waitedMs = 0;
  private lastAt: number;
  private readonly timer: NodeJS.Timeout;
  private looking = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly pid: number,
  ) {
    this.lastAt = performance.now();
    this.timer = setInterval(() => void this.look(), LOCK_WAIT_POLL_MS);
    this.timer.unref();
  }

  /** Stops looking; the time the backend was seen waiting for a lock, in ms. */
  stop(): number {
    clearInterval(this.timer);
    return this.waitedMs;
  }

  private async look(): Promise<void> {
    if (this.looking) return;
    this.looking = true;
    try {
      const { rows } = await this.pool.query<{ waiting: boolean }>(sql.backendWaitsOnLock, [this.pid]);
      const now = performance.now();
      // the interval since the last look is counted as waiting when the backend waits now
      if (rows[0]?.waiting) this.waitedMs += now - this.lastAt;
      this.lastAt = now;
    } catch {
      // no measurement: the cycle counts in full, as before
    } finally {
      this.looking = false;
    }
  }
}
