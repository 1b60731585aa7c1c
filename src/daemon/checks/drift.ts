import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { sql } from '../../db/sql.js';
import { SqlState, describeError, isPgError } from '../../db/errors.js';
import { DRIFT_LOCK_TIMEOUT_MS, type DriftKind } from '../../db/protocol.js';
import { backoffDelay } from '../lib/backoff.js';
import type { Metrics } from '../metrics.js';
import type { DriftCheckReason } from '../../interfaces.js';

/** A check that could not take its locks (DDL or another session in the way) is retried this soon. */
const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 5000;

export interface Drift {
  viewId: number;
  view: string;
  changes: string[];
  /** The kind of each change (check_drift()'s kinds). */
  kinds: DriftKind[];
  /** false: a trigger could not be repaired within its lock timeout; a retry is scheduled. */
  triggersSynced: boolean;
}

export interface DriftCheckerEvents {
  /** Views whose sources changed or whose tables were written without a mark; they are marked dirty. */
  drift: [drifts: Drift[]];
}

export interface DriftCheckerOptions {
  pool: pg.Pool;
  logger: Logger;
  metrics: Metrics;
  intervalMs: number;
}

interface DriftRow {
  view_id: number;
  view: string;
  changes: string[];
  kinds: DriftKind[];
  triggers_synced: boolean;
}

/** Kinds that mean writes may have marked nothing: logged as warnings. */
const BYPASS_KINDS: ReadonlySet<DriftKind> = new Set<DriftKind>([
  'trigger',
  'foreign_trigger',
  'replica_trigger',
  'unmarked_writes',
  'unmarked_truncate',
]);

/**
 * Who must do what when the daemon's role may not create a trigger. It holds no TRIGGER privilege on
 * purpose: a role with TRIGGER on a table can make every writer of it run a function of its choosing.
 */
export function repairAction(view: string): string {
  return `run \`mvrefresh watch ${view}\` again as the DDL role of \`mvrefresh grants\` (it holds TRIGGER on the watched tables), which recreates the trigger; until then the view is refreshed at every drift check`;
}

/** How check_drift() words a source added and a missing trigger, each followed by the table's name. */
const ADDED = 'source added: ';
const MISSING = 'trigger missing on ';

/**
 * A partition lifecycle is routine (info): a source added, and the missing trigger of that new source
 * installed by the same check. A trigger found broken or bypassed on a known source, or one that could not
 * be repaired, is not (warn).
 */
export function driftLevel(d: Drift): 'info' | 'warn' {
  const added = new Set(
    d.changes.filter((_, i) => d.kinds[i] === 'source_added').map((c) => c.slice(ADDED.length)),
  );
  const routine = (change: string, i: number) => {
    const kind = d.kinds[i];
    if (kind === undefined || !BYPASS_KINDS.has(kind)) return true;
    return d.triggersSynced && change.startsWith(MISSING) && added.has(change.slice(MISSING.length));
  };
  return d.changes.every(routine) ? 'info' : 'warn';
}

/**
 * Compares the watched views' sources with the catalog (mvrefresh.check_drift(): the view's relations,
 * plain view definitions, trigger presence and state, write counters) every intervalMs, when check() is
 * called (after a reconnect, on the event trigger's notification), and again soon after a check that could
 * not take its locks. check_drift() marks the affected views itself, in its own transaction: a refresh
 * started after it covers what drifted. One check runs at a time; requests meanwhile make one more.
 */
export class DriftChecker extends EventEmitter<DriftCheckerEvents> {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again: DriftCheckReason | undefined;
  private stopped = true;
  private failures = 0;
  private lastError: string | undefined;
  /** Views whose trigger repair this role may not make, already named at error level. */
  private readonly forbiddenRepairs = new Set<number>();

  constructor(private readonly opts: DriftCheckerOptions) {
    super();
  }

  /** Runs the first check (drift that happened while no daemon ran) and arms the timer. Idempotent. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.opts.metrics.driftCheckLastSuccess.setToCurrentTime();
    this.check('start');
  }

  /** Idempotent; waits for a check in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** True while a check runs (tests wait for the daemon to be idle). */
  get checking(): boolean {
    return this.running !== undefined;
  }

  /** Checks now, or right after the check in progress. */
  check(reason: DriftCheckReason): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = reason;
      return;
    }
    clearTimeout(this.timer);
    this.running = this.run(reason).then((retry) => {
      this.running = undefined;
      if (this.stopped) return;
      const again = this.again;
      this.again = undefined;
      if (again) this.check(again);
      else
        this.timer = setTimeout(
          () => this.check(retry ? 'retry' : 'interval'),
          retry
            ? Math.min(this.opts.intervalMs, backoffDelay(this.failures, RETRY_BASE_MS, RETRY_MAX_MS))
            : this.opts.intervalMs,
        );
    });
  }

  /** Resolves to true when the check should be retried soon. */
  private async run(reason: DriftCheckReason): Promise<boolean> {
    const { metrics, logger } = this.opts;
    const end = metrics.driftCheckDuration.startTimer();
    try {
      const { rows } = await this.opts.pool.query<DriftRow>(sql.checkDrift, [DRIFT_LOCK_TIMEOUT_MS]);
      const drifts = rows.map((r) => ({
        viewId: r.view_id,
        view: r.view,
        changes: r.changes,
        kinds: r.kinds,
        triggersSynced: r.triggers_synced,
      }));
      for (const d of drifts) {
        for (const kind of d.kinds) metrics.sourceDrift.inc({ view: d.view, kind });
        const forbidden = d.changes.find((_, i) => d.kinds[i] === 'repair_forbidden');
        if (forbidden && !this.forbiddenRepairs.has(d.viewId)) {
          this.forbiddenRepairs.add(d.viewId);
          logger.error(
            {
              event: 'trigger_repair_forbidden',
              viewId: d.viewId,
              view: d.view,
              err: forbidden,
              action: repairAction(d.view),
            },
            `${d.view}: a trigger is missing and this role may not recreate it: ${repairAction(d.view)}`,
          );
        } else if (!forbidden) this.forbiddenRepairs.delete(d.viewId);
        // a partition lifecycle is routine (info); a trigger found broken or bypassed is not (warn), unless
        // its repair is forbidden and was named already: then every check would repeat the same line
        const level = forbidden ? 'debug' : driftLevel(d);
        logger[level](
          {
            event: 'source_drift',
            viewId: d.viewId,
            view: d.view,
            reason,
            changes: d.changes,
            triggersSynced: d.triggersSynced,
          },
          'the sources of a watched view changed or were written without a mark: repaired, view marked dirty',
        );
      }
      metrics.driftChecks.inc({ reason, result: 'ok' });
      metrics.driftCheckLastSuccess.setToCurrentTime();
      if (this.lastError) logger.info({ event: 'drift_check_recovered' }, 'drift check works again');
      this.lastError = undefined;
      if (drifts.length > 0) this.emit('drift', drifts);
      const retry = drifts.some((d) => !d.triggersSynced);
      this.failures = retry ? this.failures + 1 : 0;
      return retry;
    } catch (err) {
      const busy = isPgError(err) && err.code === SqlState.lockNotAvailable;
      metrics.driftChecks.inc({ reason, result: busy ? 'busy' : 'error' });
      const message = describeError(err);
      if (!busy && message !== this.lastError)
        logger.warn({ event: 'drift_check_failed', reason, err: message }, 'drift check failed');
      if (!busy) {
        this.lastError = message;
        await this.recordFailure(message);
      }
      this.failures += 1;
      return busy;
    } finally {
      end();
    }
  }

  /** For `doctor` (drift_check_state): the failed check rolled back, so it could not say so itself. */
  private async recordFailure(message: string): Promise<void> {
    try {
      await this.opts.pool.query(sql.recordDriftFailure, [message]);
    } catch (err) {
      this.opts.logger.debug(
        { event: 'drift_failure_not_recorded', err: describeError(err) },
        'could not record the drift check failure (the metrics count it)',
      );
    }
  }
}
