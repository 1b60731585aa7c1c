import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { describeError } from '../../db/errors.js';
import { sql } from '../../db/sql.js';
import { SerialTask } from '../lib/serial-task.js';
import type { Metrics } from '../metrics.js';

/**
 * A log with fewer dead rows is left to autovacuum (the logs' own autovacuum threshold, capture.ts: 1 000).
 */
export const LOG_VACUUM_MIN_DEAD = 1000;

export interface LogVacuumOptions {
  pool: pg.Pool;
  logger: Logger;
  metrics: Metrics;
  intervalMs: number;
}

/**
 * Keeps the change logs of incremental views small. Every write adds log rows and the apply of the view
 * furthest behind deletes them, so a log at 1 000 writes/s leaves about 1 200 dead rows a second; its
 * free space is reused only once VACUUM has run, and autovacuum visits a database once per
 * autovacuum_naptime (a minute by default): the log grew to 500 pages, most of them dead rows, which every
 * apply's copy of its batch and every prune read whole (no index: writers would pay for it). Every
 * intervalMs the statistics (no table is read) name the logs with more dead rows than live ones, and each
 * is vacuumed with SKIP_LOCKED: a replica's or autovacuum's VACUUM in progress is not waited for.
 * A log this role may not vacuum is logged once (log_vacuum_forbidden, info: nothing is wrong, only slower)
 * and left to autovacuum; a failed look or VACUUM is logged at debug only (the refreshes report a database
 * that is away).
 */
export class LogVacuum {
  private readonly task = new SerialTask<'look', void>(
    () => this.look(),
    () => ({ reason: 'look', afterMs: this.opts.intervalMs }),
  );
  private readonly forbidden = new Set<string>();

  constructor(private readonly opts: LogVacuumOptions) {}

  /** Looks every intervalMs (never with 0). Idempotent. */
  start(): void {
    if (this.opts.intervalMs <= 0 || !this.task.start()) return;
    this.task.requestAfter('look', this.opts.intervalMs);
  }

  /** Idempotent; waits for a look or VACUUM in progress. */
  stop(): Promise<void> {
    return this.task.stop();
  }

  private async look(): Promise<void> {
    const { pool, logger, metrics } = this.opts;
    let logs;
    try {
      ({ rows: logs } = await pool.query<{ log: string; dead: number; live: number; allowed: boolean }>(
        sql.logVacuumCandidates,
        [LOG_VACUUM_MIN_DEAD],
      ));
    } catch (err) {
      logger.debug({ event: 'log_vacuum_failed', err: describeError(err) }, 'log vacuum look failed');
      return;
    }
    for (const l of logs) {
      if (this.task.stopped) return;
      if (!l.allowed) {
        if (!this.forbidden.has(l.log))
          logger.info(
            { event: 'log_vacuum_forbidden', table: l.log, deadRows: l.dead },
            `${l.log} may not be vacuumed by this role (MAINTAIN from PostgreSQL 17, else the rights of its owner, the DDL role): autovacuum alone keeps it, and applies read its dead rows until its next visit (autovacuum_naptime); see docs/operations.md`,
          );
        this.forbidden.add(l.log);
        continue;
      }
      const t0 = performance.now();
      try {
        // l.log is format('%I.%I') of the catalog's names
        await pool.query(`VACUUM (SKIP_LOCKED) ${l.log}`);
      } catch (err) {
        logger.debug(
          { event: 'log_vacuum_failed', table: l.log, err: describeError(err) },
          'log vacuum failed',
        );
        continue;
      }
      metrics.logVacuums.inc({ table: l.log });
      logger.debug(
        {
          event: 'log_vacuum',
          table: l.log,
          deadRows: l.dead,
          liveRows: l.live,
          durationMs: performance.now() - t0,
        },
        `vacuumed ${l.log}`,
      );
    }
  }
}
