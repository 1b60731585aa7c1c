import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { sql } from '../../db/sql.js';
import { AppName } from '../../db/connect.js';
import { SqlState, describeError, isConnectionError, isPgError } from '../../db/errors.js';
import { IncrementalRefused } from '../../incremental/convert.js';
import { verifyView, type VerifyReport } from '../../incremental/verify.js';
import { SerialTask } from '../lib/serial-task.js';
import { withTimeout } from '../lib/timers.js';
import type { Metrics } from '../metrics.js';

/** The longest the background verify waits for the view's lock (a refresh cycle holds it). */
const VERIFY_LOCK_WAIT_MS = 1000;
/** How long stop() waits for the verify it ended (its backend terminated) to settle. */
const STOP_TIMEOUT_MS = 5000;

export interface IncrementalVerifierOptions {
  /** The verify's own connection (one): a verify evaluates a whole definition, for as long as a refresh may take. */
  pool: pg.Pool;
  /** Ends a verify in progress at stop. */
  controlPool: pg.Pool;
  logger: Logger;
  metrics: Metrics;
  /** One incremental view is verified per interval (the one verified longest ago); 0: never. */
  intervalMs: number;
  /** Told what a verify cost, so that it counts against the view's refresh budget. */
  charge: (viewId: number, durationMs: number) => void;
}

interface NextRow {
  view_id: number;
  schema: string;
  name: string;
  view: string;
  /** How long ago any incremental view was last verified (or, never verified, made incremental). */
  since_ms: number | null;
}

/** How a run ended: the delay until the next one. */
type RunResult = number;

/**
 * Verifies the incremental views now and then (src/incremental/verify.ts: EXCEPT ALL both ways as the
 * owner, and a repair of what differs): every intervalMs, the active view verified longest ago. When it is
 * due is read from the database (incremental.last_verify_at), so that restarts do not postpone it forever
 * and replicas share the rate. A view whose lock is held (a refresh, `mvrefresh verify`) beyond the
 * verify's lock timeout is skipped until the next interval. A difference is an error: the capture missed a
 * write (a disabled trigger, a bug); counts only are logged, as row values can be sensitive.
 */
export class IncrementalVerifier {
  private readonly task = new SerialTask<'start' | 'interval', RunResult>(
    () => this.run(),
    (afterMs) => ({ reason: 'interval', afterMs }),
  );
  /** The backend of the verify in progress, ended at stop. */
  private pid: number | undefined;

  constructor(private readonly opts: IncrementalVerifierOptions) {}

  /** Looks at once whether a verify is due, then every interval. Nothing when the interval is 0. Idempotent. */
  start(): void {
    if (this.opts.intervalMs === 0 || !this.task.start()) return;
    this.task.request('start');
  }

  /** Idempotent; ends a verify in progress (its transaction rolls back: nothing recorded). */
  async stop(): Promise<void> {
    const running = this.task.stop();
    if (this.pid !== undefined)
      await this.opts.controlPool
        .query(sql.terminateBackend, [this.pid, AppName.verify])
        .catch(() => undefined);
    await withTimeout(running, STOP_TIMEOUT_MS, 'the incremental verify').catch(() => undefined);
  }

  /** True while a verify runs (tests wait for the daemon to be idle). */
  get verifying(): boolean {
    return this.task.current !== undefined;
  }

  private async run(): Promise<RunResult> {
    const { intervalMs, logger } = this.opts;
    let next: NextRow | undefined;
    try {
      next = (await this.opts.pool.query<NextRow>(sql.nextVerify)).rows[0];
    } catch (err) {
      logger.warn(
        { event: 'incremental_verify_failed', err: describeError(err) },
        'cannot find the incremental view to verify',
      );
      return intervalMs;
    }
    if (!next) return intervalMs;
    const sinceMs = next.since_ms ?? Infinity;
    if (sinceMs < intervalMs) return Math.max(1, intervalMs - sinceMs);
    await this.verify(next);
    return intervalMs;
  }

  private async verify(next: NextRow): Promise<void> {
    const { logger, metrics } = this.opts;
    const view = next.view;
    const t0 = performance.now();
    let client: pg.PoolClient | undefined;
    let broken: Error | undefined;
    // a verify that ran (found a difference or none, or failed on the way) costs a full evaluation
    let ran = true;
    try {
      client = await this.opts.pool.connect();
      this.pid = (client as unknown as { processID: number }).processID;
      // behind a refresh cycle of the view: skipped (busy) soon rather than charged the wait
      const report = await verifyView(client, next.schema, next.name, true, VERIFY_LOCK_WAIT_MS);
      this.reported(next, report);
    } catch (err) {
      if (isConnectionError(err)) broken = err as Error;
      if (err instanceof IncrementalRefused || (isPgError(err) && err.code === SqlState.lockNotAvailable))
        ran = false;
      if (err instanceof IncrementalRefused) {
        // unwatched, made a materialized view again or dropped since it was picked
        logger.debug({ event: 'incremental_verify_skipped', view, reason: err.message }, err.message);
      } else if (isPgError(err) && err.code === SqlState.lockNotAvailable) {
        metrics.incrementalVerifies.inc({ view, result: 'busy' });
        logger.info(
          { event: 'incremental_verify_busy', view },
          `${view}: its lock is held; verified at a later interval`,
        );
      } else {
        // the transaction may still be open on the connection: it is not reused
        broken ??= err instanceof Error ? err : new Error(describeError(err));
        metrics.incrementalVerifies.inc({ view, result: 'error' });
        logger.warn(
          { event: 'incremental_verify_failed', view, err: describeError(err) },
          `verify of ${view} failed`,
        );
      }
    } finally {
      this.pid = undefined;
      client?.release(broken);
      if (ran) this.opts.charge(next.view_id, performance.now() - t0);
    }
  }

  private reported(next: NextRow, r: VerifyReport): void {
    const { logger, metrics } = this.opts;
    // the view as the status and the other metrics name it (format %I.%I)
    const view = next.view;
    const fields = { view, extra: r.extra, missing: r.missing, durationMs: Math.round(r.durationMs) };
    if (r.extra + r.missing === 0) {
      metrics.incrementalVerifies.inc({ view, result: 'ok' });
      logger.info({ event: 'incremental_verify', ...fields, outcome: 'verified' }, `verified ${view}`);
      return;
    }
    metrics.incrementalVerifies.inc({ view, result: 'mismatch' });
    metrics.incrementalVerifyMismatch.inc({ view });
    if (r.repaired) metrics.incrementalFull.inc({ view, reason: 'verify' });
    logger.error(
      {
        event: 'incremental_verify_mismatch',
        viewId: next.view_id,
        ...fields,
        repaired: r.repaired,
        outcome: 'verify_mismatch',
      },
      `${view} differed from its definition (${r.extra} extra, ${r.missing} missing rows): a write escaped ` +
        `the capture (a disabled trigger?); ${r.repaired ? 'repaired' : 'not repaired'}`,
    );
  }
}
