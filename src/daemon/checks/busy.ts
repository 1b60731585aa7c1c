import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { describeError } from '../../db/errors.js';
import { describeHolders, lockHolders } from '../../db/lock-holders.js';
import type { Metrics } from '../metrics.js';
import type { RefreshReport } from '../refresh/refresher.js';

export interface BusyCheckOptions {
  /** The control pool: a query per warning, at most once per warnAfterMs and view. */
  pool: pg.Pool;
  logger: Logger;
  metrics: Metrics;
  /** A view found busy (its advisory lock held elsewhere) for this long gets a warning naming the holder. */
  warnAfterMs: number;
}

/**
 * Advisory lock keys are database-wide: any role that can connect can take a view's key and keep it from
 * being refreshed, which the refresh cycle sees only as 'busy' (another replica refreshing). A view busy
 * for longer than any refresh should take is named at warn level with the sessions holding its lock (pid,
 * role, application), and mvrefresh_view_lock_held_seconds shows how long; status and /views list the
 * holders (lock_holders).
 */
export class BusyCheck {
  private readonly busySince = new Map<number, number>();
  private readonly lastWarned = new Map<number, number>();

  constructor(private readonly opts: BusyCheckOptions) {}

  /** Every finished cycle (the composition root subscribes it to the refresher's reports). */
  observe(report: RefreshReport): void {
    const { viewId, view } = report;
    if (report.outcome !== 'busy') {
      if (this.busySince.delete(viewId)) this.opts.metrics.lockHeldSeconds.remove({ view });
      this.lastWarned.delete(viewId);
      return;
    }
    const now = Date.now();
    const since = this.busySince.get(viewId) ?? now;
    this.busySince.set(viewId, since);
    const heldMs = now - since;
    this.opts.metrics.lockHeldSeconds.set({ view }, heldMs / 1000);
    if (heldMs < this.opts.warnAfterMs) return;
    const last = this.lastWarned.get(viewId);
    if (last !== undefined && now - last < this.opts.warnAfterMs) return;
    this.lastWarned.set(viewId, now);
    void this.warn(viewId, view, heldMs);
  }

  private async warn(viewId: number, view: string, heldMs: number): Promise<void> {
    try {
      const holders = await lockHolders(this.opts.pool, viewId);
      // another replica's long refresh is expected; anything else keeps the view stale
      const foreign = holders.length === 0 || holders.some((h) => !h.ours);
      this.opts.logger[foreign ? 'warn' : 'info'](
        { event: 'view_lock_held', viewId, view, heldMs, holders },
        `${view} is not refreshed: its lock is held by ${describeHolders(holders) || 'a session that just ended'}`,
      );
    } catch (err) {
      this.opts.logger.warn(
        { event: 'view_lock_held', viewId, view, heldMs, err: describeError(err) },
        `${view} is not refreshed: its lock is held elsewhere`,
      );
    }
  }
}
