import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { describeError } from '../../db/errors.js';
import { describeBloat, isBloated, vacuumHealth } from '../../db/vacuum.js';
import { SerialTask } from '../lib/serial-task.js';
import type { Metrics } from '../metrics.js';

export interface VacuumCheckOptions {
  pool: pg.Pool;
  logger: Logger;
  metrics: Metrics;
  intervalMs: number;
}

/**
 * Every intervalMs, one cheap look at the statistics (no table is read): whether autovacuum runs, and the
 * dead rows and size of the catalogs that REFRESH ... CONCURRENTLY churns and of mvrefresh's own tables,
 * as gauges. Logs autovacuum off once (again only after it was seen on), and a table once each time it
 * turns bloated, and when it recovers; a failed look is logged at debug only, since the sweep and the
 * refreshes already report a database that is away.
 */
export class VacuumCheck {
  private readonly task = new SerialTask<'look', void>(
    () => this.check(),
    () => ({ reason: 'look', afterMs: this.opts.intervalMs }),
  );
  private autovacuumOff = false;
  private readonly bloated = new Set<string>();

  constructor(private readonly opts: VacuumCheckOptions) {}

  /** Looks at once, then every intervalMs. Idempotent. */
  start(): void {
    if (this.task.start()) this.task.request('look');
  }

  /** Idempotent; waits for a look in progress. */
  stop(): Promise<void> {
    return this.task.stop();
  }

  private async check(): Promise<void> {
    const { logger, metrics } = this.opts;
    let health;
    try {
      health = await vacuumHealth(this.opts.pool);
    } catch (err) {
      logger.debug({ event: 'vacuum_check_failed', err: describeError(err) }, 'vacuum check failed');
      return;
    }
    const on = health.autovacuum && health.trackCounts;
    metrics.autovacuumEnabled.set(on ? 1 : 0);
    if (!on && !this.autovacuumOff)
      logger.warn(
        { event: 'autovacuum_off', autovacuum: health.autovacuum, trackCounts: health.trackCounts },
        'autovacuum is off: every REFRESH ... CONCURRENTLY leaves dead rows in the catalogs (pg_attribute, pg_class, pg_depend, pg_statistic, pg_type) that nothing removes; see docs/operations.md',
      );
    this.autovacuumOff = !on;
    for (const t of health.tables) {
      metrics.tableDeadRows.set({ table: t.table }, t.dead);
      metrics.tableBytes.set({ table: t.table }, t.bytes);
      const fields = { table: t.table, deadRows: t.dead, liveRows: t.live, bytes: t.bytes };
      if (isBloated(t)) {
        if (!this.bloated.has(t.table))
          logger.warn({ event: 'table_bloat', ...fields }, `${describeBloat(t)}: vacuum is not keeping up`);
        this.bloated.add(t.table);
      } else if (this.bloated.delete(t.table))
        logger.info({ event: 'table_bloat_cleared', ...fields }, `${t.table} is vacuumed again`);
    }
  }
}
