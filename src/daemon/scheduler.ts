import { EventEmitter } from 'node:events';
import type { Logger } from '../logger.js';

/**
 * What made a view due: a notification, the sweep, an upstream refresh, an operator, a periodic interval,
 * a retry after a failure. (Not an SQL trigger: those only mark views dirty and notify.)
 */
export type Cause = 'notify' | 'sweep' | 'dependency' | 'manual' | 'interval' | 'retry';

export interface ViewSettings {
  id: number;
  name: string;
  debounceMs: number | null;
  maxWaitMs: number | null;
}

/** How a run ended, as far as scheduling cares. */
export type RunResult =
  | { kind: 'done' }
  /** failed: the refresh failed (not busy, not waiting for writers): a change of its sources may fix it. */
  | { kind: 'retry'; afterMs: number; failed?: boolean }
  | { kind: 'gone' };

export interface Job {
  viewId: number;
  name: string;
  cause: Cause;
  /** Refresh even when the view is clean (periodic and manual refreshes). */
  force: boolean;
}

/** What a job runs with: its cause and force when it starts, which may differ from those it was due with. */
export type Start = Pick<Job, 'cause' | 'force'>;

export interface SchedulerEvents {
  /** A view is due: run exactly one refresh for it, calling started() first and finished() after. */
  due: [job: Job];
  /** A notification named a view this process does not know (yet): reload the list of views. */
  unknown: [viewId: number];
}

export interface SchedulerOptions {
  logger: Logger;
  debounceMs: number;
  maxWaitMs: number;
}

/**
 * Per-view state machine. At most one job per view is queued or running at any time.
 *
 *   idle       --event-->            debouncing (first and last event times kept)
 *   debouncing --event-->            debouncing, timer = min(last + debounce, first + maxWait)
 *   debouncing --timer-->            queued   (emits `due`)
 *   queued     --event-->            queued   (the refresh has not started: it will see the write; a
 *                                    manual or interval event makes it forced, see started())
 *   queued     --started()-->        running
 *   running    --event-->            running, rerun noted (with the first and last such event's time)
 *   running    --finished(done)-->   idle, or debouncing from the end of the refresh (maxWait still counts
 *                                    from the first event seen while running)
 *   running    --finished(retry)-->  waiting (timer: the backoff the database chose)
 *   waiting    --event-->            waiting  (the retry will cover it; a failing view is not hammered),
 *                                    except after a failure: the first notification, dependency or manual
 *                                    event re-arms the timer for a debounce from now (the write may have
 *                                    fixed what failed, e.g. duplicate rows), unless the failed attempt was
 *                                    itself such an early retry. So a write stream at most doubles the
 *                                    attempts of the backoff schedule, and the backoff keeps growing.
 *   waiting    --timer-->            queued
 *   any        --finished(gone)-->   forgotten
 *
 * Immediate causes (sweep, dependency, manual, interval) skip the debounce of an idle or debouncing view.
 * maxWait bounds how long a stream of events can postpone a refresh. A rerun waits a debounce after the
 * refresh it followed, so that consecutive refreshes of a view start at least debounce + refresh time
 * apart: under a storm, refreshes per view stay within T / (debounce + refresh time) + 1.
 */
export class Scheduler extends EventEmitter<SchedulerEvents> {
  private readonly views = new Map<number, ViewSettings>();
  private readonly states = new Map<number, ViewState>();
  private stopped = false;

  constructor(private readonly opts: SchedulerOptions) {
    super();
  }

  /** Replaces the known views and their settings; views no longer watched are forgotten when idle. */
  setViews(list: readonly ViewSettings[]): void {
    const ids = new Set(list.map((v) => v.id));
    for (const v of list) this.views.set(v.id, v);
    for (const id of [...this.views.keys()]) {
      if (ids.has(id)) continue;
      this.views.delete(id);
      const st = this.states.get(id);
      if (st && (st.phase === 'debouncing' || st.phase === 'waiting')) this.clearState(id);
    }
  }

  knows(viewId: number): boolean {
    return this.views.has(viewId);
  }

  get viewCount(): number {
    return this.views.size;
  }

  /** Views debouncing or waiting to retry (not yet handed to the queue). */
  get waitingCount(): number {
    let n = 0;
    for (const st of this.states.values()) if (st.phase === 'debouncing' || st.phase === 'waiting') n += 1;
    return n;
  }

  /** A view needs a refresh. Unknown views are reported through `unknown` and otherwise ignored. */
  schedule(viewId: number, cause: Cause): void {
    if (this.stopped) return;
    const view = this.views.get(viewId);
    if (!view) {
      this.emit('unknown', viewId);
      return;
    }
    const now = Date.now();
    const immediate = cause !== 'notify';
    const force = cause === 'interval' || cause === 'manual';
    const st = this.states.get(viewId);
    if (!st) {
      const fresh: ViewState = { phase: 'debouncing', firstEventAt: now, lastEventAt: now, cause, force };
      this.states.set(viewId, fresh);
      this.arm(view, fresh, now, immediate);
      return;
    }
    st.force ||= force;
    switch (st.phase) {
      case 'debouncing':
        st.lastEventAt = now;
        if (immediate) st.cause = cause;
        this.arm(view, st, now, immediate);
        return;
      case 'queued':
        if (immediate) st.cause = cause;
        return;
      case 'running':
        st.rerun ??= { firstEventAt: now, lastEventAt: now, cause, force };
        st.rerun.lastEventAt = now;
        st.rerun.force ||= force;
        return;
      case 'waiting':
        if (st.failed && !st.afterEarly && cause !== 'sweep' && cause !== 'interval' && cause !== 'retry') {
          st.early = true;
          st.cause = cause;
          st.firstEventAt = now;
          st.lastEventAt = now;
          this.arm(view, st, now, cause !== 'notify');
        }
        return;
    }
  }

  /**
   * The queue started the view's job: returns the cause and force to run it with. The job was emitted with
   * the values of the time it became due; a manual or interval refresh that arrived while it was queued
   * must force it, or a clean view would answer `clean` to an operator who was told 202.
   */
  started(job: Job): Start {
    const st = this.states.get(job.viewId);
    if (st?.phase !== 'queued') return { cause: job.cause, force: job.force };
    st.phase = 'running';
    return { cause: st.cause, force: st.force };
  }

  /** The view's job ended. */
  finished(viewId: number, result: RunResult): void {
    const st = this.states.get(viewId);
    if (!st) return;
    if (this.stopped || result.kind === 'gone') {
      this.clearState(viewId);
      if (result.kind === 'gone') this.views.delete(viewId);
      return;
    }
    const view = this.views.get(viewId);
    if (!view) {
      this.clearState(viewId);
      return;
    }
    if (result.kind === 'retry') {
      const force = st.force || Boolean(st.rerun?.force);
      const now = Date.now();
      const waiting: ViewState = {
        phase: 'waiting',
        firstEventAt: now,
        lastEventAt: now,
        cause: 'retry',
        force,
        failed: result.failed ?? false,
        afterEarly: Boolean(st.early),
      };
      waiting.timer = setTimeout(() => this.enqueue(view, waiting), result.afterMs);
      this.states.set(viewId, waiting);
      return;
    }
    if (!st.rerun) {
      this.states.delete(viewId);
      return;
    }
    const next: ViewState = { phase: 'debouncing', ...st.rerun, lastEventAt: Date.now() };
    this.states.set(viewId, next);
    this.arm(view, next, Date.now(), next.cause !== 'notify');
  }

  /** Drops every timer; no more `due` events. Idempotent. */
  stop(): void {
    this.stopped = true;
    for (const id of [...this.states.keys()]) this.clearState(id);
  }

  private arm(view: ViewSettings, st: ViewState, now: number, immediate: boolean): void {
    clearTimeout(st.timer);
    const debounce = view.debounceMs ?? this.opts.debounceMs;
    const maxWait = Math.max(view.maxWaitMs ?? this.opts.maxWaitMs, debounce);
    const at = immediate ? now : Math.min(st.lastEventAt + debounce, st.firstEventAt + maxWait);
    st.timer = setTimeout(() => this.enqueue(view, st), Math.max(0, at - now));
  }

  private enqueue(view: ViewSettings, st: ViewState): void {
    clearTimeout(st.timer);
    if (this.stopped || this.states.get(view.id) !== st) return;
    st.phase = 'queued';
    this.emit('due', { viewId: view.id, name: view.name, cause: st.cause, force: st.force });
  }

  private clearState(viewId: number): void {
    const st = this.states.get(viewId);
    if (st) clearTimeout(st.timer);
    this.states.delete(viewId);
  }
}

interface ViewState {
  phase: 'debouncing' | 'queued' | 'running' | 'waiting';
  firstEventAt: number;
  lastEventAt: number;
  cause: Cause;
  force: boolean;
  timer?: NodeJS.Timeout;
  rerun?: { firstEventAt: number; lastEventAt: number; cause: Cause; force: boolean };
  /** waiting: the attempt before failed (a change of the sources may fix it). */
  failed?: boolean;
  /** This attempt was moved ahead of its backoff by an event. */
  early?: boolean;
  /** waiting: the failed attempt was an early one: no early retry this time. */
  afterEarly?: boolean;
}
