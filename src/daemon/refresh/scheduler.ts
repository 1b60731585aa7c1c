import { EventEmitter } from 'node:events';
import type { Logger } from '../../logger.js';
import { isWriteCause, type Cause, type Job, type RunResult } from '../../interfaces.js';
import { BUDGET_WINDOW_MS, DurationEstimate, LONG_REFRESH_SHARE, planRefresh, type Plan } from './plan.js';
import { EARLY_RETRY_MS } from '../../db/protocol.js';

/** The longest delay a Node timer waits (2^31 - 1 ms); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ViewSettings {
  id: number;
  name: string;
  /** Staleness target; null: the daemon's default. */
  maxStalenessMs: number | null;
  /** Share of time this view may keep the database busy refreshing; null: the daemon's default. */
  refreshBudget: number | null;
  paused: boolean;
  /** From view_state, so that a restarted daemon knows the cost and the last start of each view. */
  lastDurationMs: number | null;
  /** How long ago the last refresh ended (null: never). */
  lastRefreshedAgoMs: number | null;
}

/** What a job runs with: its cause and force when it starts, which may differ from those it was due with. */
export type Start = Pick<Job, 'cause' | 'force'>;

/** A refresh that ended later than the view's target, with the numbers that explain it. */
export interface Miss {
  viewId: number;
  view: string;
  stalenessMs: number;
  targetMs: number;
  budget: number;
  expectedMs: number;
  /** The mean cost of a refresh, which the budget counts. */
  costMs: number;
  minIntervalMs: number;
}

/** A view's budget stopped (met: false) or started again (met: true) allowing its staleness target. */
export interface TargetChange extends Omit<Miss, 'stalenessMs'> {
  met: boolean;
  achievableMs: number;
}

export interface SchedulerEvents {
  /** A view is due: run exactly one refresh for it, calling started() first and finished() after. */
  due: [job: Job];
  /** A notification named a view this process does not know (yet): reload the list of views. */
  unknown: [viewId: number];
  /** A refresh ended later than the view's target (counted in view_state by whoever listens). */
  miss: [miss: Miss];
  /** Whether the view's budget allows its target changed. */
  target: [change: TargetChange];
}

export interface SchedulerOptions {
  logger: Logger;
  /** Defaults for views without settings of their own. */
  maxStalenessMs: number;
  refreshBudget: number;
  now?: () => number;
}

/** What /views and the metrics show about a view's schedule. */
export interface ViewSchedule {
  targetMs: number;
  budget: number;
  expectedMs: number;
  costMs: number;
  minIntervalMs: number;
  achievableMs: number;
  targetMet: boolean;
  /** Refresh time over the last minute (or since start), as a share of that time. */
  budgetInUse: number;
  paused: boolean;
  phase: 'idle' | JobState['phase'];
  nextRefreshAt: number | undefined;
}

/**
 * Decides when each view is refreshed; the refresher (refresher.ts), built with this scheduler, runs what
 * it announces through `due` and reports back through started() and finished(). The scheduler knows no
 * refresher.
 *
 * Per-view state machine; at most one job per view is planned, queued or running at any time. Every
 * planned time comes from planRefresh() (plan.ts): as late as the staleness target allows, never earlier
 * than the budget allows after the previous start, whatever the cause (also the first refresh after a
 * restart and a retry after a failure).
 *
 *   idle    --event(d)-->            planned (dirtySince = d; timer at the plan)
 *   planned --event(d)-->            planned (dirtySince = min; re-planned; a retry is re-planned only by a
 *                                    manual refresh)
 *   planned --timer-->               queued   (emits `due`)
 *   queued  --event-->               queued   (the refresh has not started: it will see the write; a
 *                                    manual or interval event makes it forced, see started())
 *   queued  --started()-->           running  (the start counts in the budget)
 *   running --event(d)-->            running, rerun noted with the earliest d
 *   running --finished(done)-->      idle, or planned from the rerun's d; a refresh that ended later than
 *                                    dirtySince + target emits `miss`
 *   running --finished(retry)-->     planned (retry: at max(now + backoff, budget); dirtySince kept)
 *   running --finished(paused)-->    idle (the view keeps its marks; resuming notifies)
 *   any     --finished(gone)-->      forgotten
 *
 * d is when the oldest unreflected write was noticed: the notification's arrival, or the database's
 * dirty_since for a view found by the sweep (so that a restart does not reset the clock). A manual refresh
 * runs at once; a periodic one follows the budget only. Under a stream of writes the next refresh is due
 * at most max(target, (expected / budget) + expected) after the last one: a stream never postpones it.
 */
export class Scheduler extends EventEmitter<SchedulerEvents> {
  private readonly views = new Map<number, ViewSettings>();
  private readonly states = new Map<number, JobState>();
  private readonly stats = new Map<number, ViewStats>();
  private readonly now: () => number;
  private stopped = false;
  /** The shortest staleness target among the views (setViews()). */
  private shortestTargetMs = Infinity;
  /**
   * Writes from before this (no daemon ran: a view watched before the daemon started, whose first refresh
   * covers its watch) count no target miss: the target is what the daemon keeps while it runs.
   */
  private readonly startedAt: number;

  constructor(private readonly opts: SchedulerOptions) {
    super();
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
  }

  /** Replaces the known views and their settings; views no longer watched are forgotten when idle. */
  setViews(list: readonly ViewSettings[]): void {
    const ids = new Set(list.map((v) => v.id));
    const now = this.now();
    for (const v of list) {
      this.views.set(v.id, v);
      let stats = this.stats.get(v.id);
      if (!stats) {
        stats = {
          estimate: new DurationEstimate(v.lastDurationMs),
          recent: [],
          conflict: false,
          since: now,
          paused: v.paused,
        };
        // the previous process's last start, as far as view_state tells: the budget holds across restarts
        if (v.lastRefreshedAgoMs !== null)
          stats.lastStartAt = now - v.lastRefreshedAgoMs - (v.lastDurationMs ?? 0);
        this.stats.set(v.id, stats);
      }
      stats.paused = v.paused;
      const st = this.states.get(v.id);
      if (st?.phase === 'planned') this.arm(v, st);
    }
    for (const id of [...this.views.keys()]) {
      if (ids.has(id)) continue;
      this.views.delete(id);
      this.stats.delete(id);
      if (this.states.get(id)?.phase === 'planned') this.clearState(id);
    }
    this.shortestTargetMs = Infinity;
    for (const v of this.views.values())
      this.shortestTargetMs = Math.min(this.shortestTargetMs, this.targetOf(v));
  }

  knows(viewId: number): boolean {
    return this.views.has(viewId);
  }

  /** The view's qualified name, as watched. */
  nameOf(viewId: number): string | undefined {
    return this.views.get(viewId)?.name;
  }

  get viewCount(): number {
    return this.views.size;
  }

  /** Whether the view is known and has no job planned, queued or running. */
  isIdle(viewId: number): boolean {
    return this.views.has(viewId) && !this.states.has(viewId);
  }

  /** Views planned (waiting for their time or a retry), not yet handed to the queue. */
  get waitingCount(): number {
    let n = 0;
    for (const st of this.states.values()) if (st.phase === 'planned') n += 1;
    return n;
  }

  /**
   * A view needs a refresh. dirtySince: when its oldest unreflected write happened, if known better than
   * "now" (the sweep reads it from the database). Unknown views are reported through `unknown`.
   */
  schedule(viewId: number, cause: Cause, dirtySince?: number): void {
    if (this.stopped) return;
    const view = this.views.get(viewId);
    if (!view) {
      this.emit('unknown', viewId);
      return;
    }
    const now = this.now();
    const since = Math.min(dirtySince ?? now, now);
    const force = cause === 'interval' || cause === 'manual';
    const st = this.states.get(viewId);
    if (!st) {
      const fresh: JobState = { phase: 'planned', dirtySince: since, cause, force, retryAt: undefined };
      this.states.set(viewId, fresh);
      this.arm(view, fresh);
      return;
    }
    switch (st.phase) {
      case 'planned':
        st.force ||= force;
        st.dirtySince = Math.min(st.dirtySince, since);
        if (cause === 'manual') {
          st.cause = 'manual';
          st.retryAt = undefined;
        } else if (st.retryAt !== undefined) {
          // after a failure, the first write may have fixed it (duplicate rows removed): retry soon
          // instead of when the backoff ends, once per failed attempt and never after an attempt that was
          // itself such an early one, so writes at most double the attempts
          if (!st.failed || st.afterEarly || st.early || !isWriteCause(cause)) return;
          st.early = true;
          st.retryAt = Math.min(st.retryAt, now + EARLY_RETRY_MS);
        } else if (!isWriteCause(cause)) st.cause = cause;
        this.arm(view, st);
        return;
      case 'queued':
        st.force ||= force;
        if (!isWriteCause(cause)) st.cause = cause;
        return;
      case 'running':
        st.rerun ??= { dirtySince: since, cause, force };
        st.rerun.dirtySince = Math.min(st.rerun.dirtySince, since);
        st.rerun.force ||= force;
        if (cause === 'manual') st.rerun.cause = 'manual';
        return;
    }
  }

  /**
   * The queue started the view's job: returns the cause and force to run it with. The job was emitted with
   * the values of the time it became due; a manual or interval refresh that arrived while it was queued
   * must force it, or a clean view would answer `clean` to an operator who was told 202. The start counts
   * in the view's budget.
   */
  started(job: Job): Start {
    const st = this.states.get(job.viewId);
    if (st?.phase !== 'queued') return { cause: job.cause, force: job.force };
    st.phase = 'running';
    st.startedAt = this.now();
    const stats = this.stats.get(job.viewId);
    if (stats) stats.lastStartAt = st.startedAt;
    return { cause: st.cause, force: st.force };
  }

  /** The view's job ended. */
  finished(viewId: number, result: RunResult): void {
    const st = this.states.get(viewId);
    if (!st) return;
    const now = this.now();
    const view = this.views.get(viewId);
    const stats = this.stats.get(viewId);
    if (this.stopped || result.kind === 'gone' || !view || !stats) {
      this.clearState(viewId);
      if (result.kind === 'gone') {
        this.views.delete(viewId);
        this.stats.delete(viewId);
      }
      return;
    }
    if (result.kind === 'done' || result.kind === 'retry') {
      stats.lastCostMs = result.durationMs;
      this.addBusy(stats, st.startedAt ?? now, result.durationMs, now);
    }
    if (result.kind === 'paused') {
      stats.paused = true;
      this.states.delete(viewId);
      return;
    }
    stats.paused = false;
    if (result.kind === 'retry') {
      const force = st.force || Boolean(st.rerun?.force);
      const dirtySince = Math.min(st.dirtySince, st.rerun?.dirtySince ?? Infinity);
      const next: JobState = {
        phase: 'planned',
        dirtySince,
        cause: 'retry',
        force,
        retryAt: now + result.afterMs,
        failed: result.failed === true,
        afterEarly: Boolean(st.early),
      };
      this.states.set(viewId, next);
      this.arm(view, next);
      return;
    }
    if (result.refreshed) {
      // a one-off full recompute spaces the next start once (lastCostMs), never the estimate of the
      // applies after it (20 of them would otherwise plan against it)
      if (!result.oneOff) stats.estimate.add(result.durationMs);
      stats.proportional = result.proportional === true;
      this.checkConflict(view, stats);
      const targetMs = this.targetOf(view);
      const stalenessMs = now - st.dirtySince;
      if (
        stalenessMs > targetMs &&
        st.dirtySince >= this.startedAt &&
        st.cause !== 'interval' &&
        st.cause !== 'manual'
      ) {
        const budget = this.budgetOf(view);
        const costMs = stats.estimate.meanMs;
        this.emit('miss', {
          viewId,
          view: view.name,
          stalenessMs,
          targetMs,
          budget,
          expectedMs: stats.estimate.expectedMs,
          costMs,
          minIntervalMs: costMs / budget,
        });
      }
    }
    if (!st.rerun) {
      this.states.delete(viewId);
      return;
    }
    const next: JobState = { phase: 'planned', ...st.rerun, retryAt: undefined };
    this.states.set(viewId, next);
    this.arm(view, next);
  }

  /**
   * Work on the view outside its refresh cycles that just ended (a verify of an incremental view, which
   * evaluates its whole definition) counts against its budget like a cycle: in the budget in use, and as
   * the last start and cost that space the next refresh (cost / budget). Not in the estimate of a refresh's
   * duration, which plans against the target. A job already planned is planned again.
   */
  charge(viewId: number, durationMs: number): void {
    const stats = this.stats.get(viewId);
    const view = this.views.get(viewId);
    if (!stats || !view || this.stopped) return;
    const now = this.now();
    const startedAt = now - durationMs;
    this.addBusy(stats, startedAt, durationMs, now);
    // cycles that started meanwhile found the view's lock held (busy) and cost next to nothing
    stats.lastStartAt = Math.max(stats.lastStartAt ?? startedAt, startedAt);
    stats.lastCostMs = durationMs;
    const st = this.states.get(viewId);
    if (st?.phase === 'planned') this.arm(view, st);
  }

  /** The view's targets, budget and what its refreshes cost, for /views and the metrics. */
  describe(viewId: number): ViewSchedule | undefined {
    const view = this.views.get(viewId);
    const stats = this.stats.get(viewId);
    if (!view || !stats) return undefined;
    const now = this.now();
    const plan = this.plan(view, stats, undefined, now);
    const st = this.states.get(viewId);
    const window = Math.min(BUDGET_WINDOW_MS, Math.max(1000, now - stats.since));
    const busy = this.busyMs(stats, now, window);
    return {
      targetMs: this.targetOf(view),
      budget: this.budgetOf(view),
      expectedMs: stats.estimate.expectedMs,
      costMs: stats.estimate.meanMs,
      minIntervalMs: plan.minIntervalMs,
      achievableMs: plan.achievableMs,
      targetMet: !plan.conflict,
      budgetInUse: busy / window,
      paused: stats.paused,
      phase: st?.phase ?? 'idle',
      nextRefreshAt: st?.phase === 'planned' ? st.at : undefined,
    };
  }

  /** describe() of every known view, by its name. */
  describeAll(): Map<string, ViewSchedule> {
    const out = new Map<string, ViewSchedule>();
    for (const [id, v] of this.views) {
      const d = this.describe(id);
      if (d) out.set(v.name, d);
    }
    return out;
  }

  /** Drops every timer; no more `due` events. Idempotent. */
  stop(): void {
    this.stopped = true;
    for (const id of [...this.states.keys()]) this.clearState(id);
  }

  private targetOf(view: ViewSettings): number {
    return view.maxStalenessMs ?? this.opts.maxStalenessMs;
  }

  private budgetOf(view: ViewSettings): number {
    return view.refreshBudget ?? this.opts.refreshBudget;
  }

  private plan(view: ViewSettings, stats: ViewStats, dirtySince: number | undefined, now: number): Plan {
    return planRefresh({
      now,
      dirtySince,
      targetMs: this.targetOf(view),
      budget: this.budgetOf(view),
      expectedMs: stats.estimate.expectedMs,
      costMs: stats.estimate.meanMs,
      lastStartAt: stats.lastStartAt,
      lastCostMs: stats.lastCostMs,
      windowBusyMs: stats.proportional ? this.busyMs(stats, now, BUDGET_WINDOW_MS) : undefined,
    });
  }

  /** Records a cycle (or charged work) in the budget in use, forgetting what left the window. */
  private addBusy(stats: ViewStats, at: number, ms: number, now: number): void {
    stats.recent.push({ at, ms });
    while (stats.recent.length > 0 && stats.recent[0]!.at < now - BUDGET_WINDOW_MS) stats.recent.shift();
  }

  /** The view's cycle time (and charged work) that started within the last windowMs. */
  private busyMs(stats: ViewStats, now: number, windowMs: number): number {
    return stats.recent.filter((r) => r.at >= now - windowMs).reduce((sum, r) => sum + r.ms, 0);
  }

  private checkConflict(view: ViewSettings, stats: ViewStats): void {
    const plan = this.plan(view, stats, undefined, this.now());
    if (plan.conflict === stats.conflict) return;
    stats.conflict = plan.conflict;
    const budget = this.budgetOf(view);
    this.emit('target', {
      viewId: view.id,
      view: view.name,
      met: !plan.conflict,
      targetMs: this.targetOf(view),
      budget,
      expectedMs: stats.estimate.expectedMs,
      costMs: stats.estimate.meanMs,
      minIntervalMs: plan.minIntervalMs,
      achievableMs: plan.achievableMs,
    });
  }

  private arm(view: ViewSettings, st: JobState): void {
    clearTimeout(st.timer);
    const stats = this.stats.get(view.id);
    const now = this.now();
    if (!stats) return;
    // a manual refresh is an operator's decision: at once; a periodic one has no write to be fresh for
    const at =
      st.cause === 'manual'
        ? now
        : Math.max(
            this.plan(view, stats, st.cause === 'interval' ? undefined : st.dirtySince, now).at,
            st.retryAt ?? now,
          );
    st.at = at;
    // Node fires a longer timer at once (TimeoutOverflowWarning): wait the most it can, then plan again
    const delay = Math.max(0, at - now);
    st.timer =
      delay > MAX_TIMER_MS
        ? setTimeout(() => this.arm(view, st), MAX_TIMER_MS)
        : setTimeout(() => this.enqueue(view, st), delay);
  }

  private enqueue(view: ViewSettings, st: JobState): void {
    clearTimeout(st.timer);
    if (this.stopped || this.states.get(view.id) !== st) return;
    st.phase = 'queued';
    this.emit('due', {
      viewId: view.id,
      name: view.name,
      cause: st.cause,
      force: st.force,
      ...(this.isLong(view.id) ? { long: true } : {}),
    });
  }

  /**
   * Whether the view's refresh is long (its mean cost above LONG_REFRESH_SHARE of the shortest target,
   * paused views' too: they come back; the mean, so that a cheap view's rare slow refresh does not make it
   * a heavy one) and another view, quicker than that and not paused, could be kept waiting by it. Scans the
   * views only for a long one: heavy views refresh rarely.
   */
  private isLong(viewId: number): boolean {
    const threshold = LONG_REFRESH_SHARE * this.shortestTargetMs;
    if (!((this.stats.get(viewId)?.estimate.meanMs ?? 0) > threshold)) return false;
    for (const [id, st] of this.stats)
      if (id !== viewId && !st.paused && st.estimate.meanMs <= threshold) return true;
    return false;
  }

  private clearState(viewId: number): void {
    const st = this.states.get(viewId);
    if (st) clearTimeout(st.timer);
    this.states.delete(viewId);
  }
}

/**
 * The job of one view while it is planned, queued or running (the process's memory, not the view_state
 * table: that is the database's record of cycles and failures).
 */
interface JobState {
  phase: 'planned' | 'queued' | 'running';
  /** When the oldest write this job must cover was noticed. */
  dirtySince: number;
  cause: Cause;
  force: boolean;
  /** Set for a retry after a failure: not before this time. */
  retryAt: number | undefined;
  /** planned retry: the attempt before failed (a change of the sources may fix it). */
  failed?: boolean;
  /** This attempt was moved ahead of its backoff by an event. */
  early?: boolean;
  /** The failed attempt was an early one: no early retry this time. */
  afterEarly?: boolean;
  at?: number;
  startedAt?: number;
  timer?: NodeJS.Timeout;
  rerun?: { dirtySince: number; cause: Cause; force: boolean };
}

interface ViewStats {
  estimate: DurationEstimate;
  lastStartAt?: number;
  lastCostMs?: number;
  /** Cycles started within the last BUDGET_WINDOW_MS: the budget in use. */
  recent: { at: number; ms: number }[];
  /** The last cycle applied changes: its cost grows with the writes it covered (plan.ts). */
  proportional?: boolean;
  /** The budget does not allow the target (the last `target` event said met: false). */
  conflict: boolean;
  since: number;
  paused: boolean;
}
