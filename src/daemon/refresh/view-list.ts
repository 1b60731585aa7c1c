import type pg from 'pg';
import { sql } from '../../db/sql.js';
import type { Metrics } from '../metrics.js';
import type { Scheduler, ViewSettings } from './scheduler.js';
import type { SourceMap } from './sources.js';
import { INCREMENTAL, type ViewModes } from './view-modes.js';

interface ViewRow {
  id: number;
  view: string;
  max_staleness_ms: number | null;
  refresh_budget: number | null;
  paused: boolean;
  refresh_interval_ms: number | null;
  source_relids: string[];
  last_duration_ms: number | null;
  refreshed_ago_ms: number | null;
  mode: string;
}

export interface ViewListOptions {
  pool: pg.Pool;
  /** Receives the views and their settings (targets, budgets, paused, the last refresh's cost). */
  scheduler: Scheduler;
  /** Receives which views read which tables: table notifications are mapped through it. */
  sources: SourceMap;
  /** Starts the per-view counters of every watched view at 0. */
  metrics: Metrics;
  /** Receives how each view is kept (full or incremental). */
  modes: ViewModes;
}

/**
 * The list of watched views (mvrefresh.views and view_state), loaded whole: into the scheduler, the map of
 * the views' sources and the metrics. The sweeper loads it before each sweep that may follow a change
 * (watch, unwatch, drift, an unknown view, a reconnect).
 */
export class ViewList {
  constructor(private readonly opts: ViewListOptions) {}

  /** Loads the list; resolves with the shortest periodic refresh interval among the views (Infinity: none). */
  async load(): Promise<number> {
    const { rows } = await this.opts.pool.query<ViewRow>(sql.listViews);
    const views: ViewSettings[] = rows.map((r) => ({
      id: r.id,
      name: r.view,
      maxStalenessMs: r.max_staleness_ms,
      refreshBudget: r.refresh_budget,
      paused: r.paused,
      lastDurationMs: r.last_duration_ms,
      lastRefreshedAgoMs: r.refreshed_ago_ms === null ? null : Math.max(0, r.refreshed_ago_ms),
    }));
    this.opts.scheduler.setViews(views);
    this.opts.metrics.knowViews(views.map((v) => v.name));
    this.opts.modes.replace(rows);
    this.opts.metrics.knowIncrementalViews(rows.filter((r) => r.mode === INCREMENTAL).map((r) => r.view));
    this.opts.sources.replace(rows.map((r) => ({ id: r.id, sourceRelids: r.source_relids.map(Number) })));
    return Math.min(...rows.map((r) => r.refresh_interval_ms ?? Infinity));
  }
}
