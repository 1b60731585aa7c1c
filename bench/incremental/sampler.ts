/**
 * While the writers run: each view's staleness as mvrefresh.status reports it (the age of the oldest write
 * the view does not show yet, as bench/tpcb.ts samples it), and the CPU the daemon uses, in its own
 * process and in its backends (where REFRESH and the apply run).
 */
import type pg from 'pg';
import { cpuSeconds } from '../support/disturbance.js';

/** The daemon's connections carry application_name mvrefresh:<kind> (src/db/connect.ts). */
const DAEMON_APP_PATTERN = 'mvrefresh:%';

export interface Samples {
  /** Staleness samples per view name, seconds. */
  staleness: Map<string, number[]>;
  /** CPU seconds of the daemon's process during the sampling. */
  daemonCpu: number;
  /**
   * CPU seconds of the daemon's backends during the sampling: each backend from its first sample to its
   * last (a backend that ends between two samples loses at most one period).
   */
  backendCpu: number;
  seconds: number;
}

/** Samples every periodMs until stop(). */
export function startSampler(
  c: pg.ClientBase,
  daemonPid: number,
  periodMs: number,
): { stop: () => Promise<Samples> } {
  const t0 = performance.now();
  const staleness = new Map<string, number[]>();
  const backends = new Map<number, { first: number; last: number }>();
  let stopped = false;
  const daemonStart = cpuSeconds(daemonPid);
  const loop = (async () => {
    while (!stopped) {
      const { rows } = await c.query<{ view: string; staleness: number }>(
        'SELECT view_name AS view, staleness_seconds AS staleness FROM mvrefresh.status',
      );
      for (const r of rows) {
        const xs = staleness.get(r.view) ?? [];
        xs.push(r.staleness);
        staleness.set(r.view, xs);
      }
      const { rows: pids } = await c.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE $1`,
        [DAEMON_APP_PATTERN],
      );
      for (const { pid } of pids) {
        const cpu = await cpuSeconds(pid);
        if (Number.isNaN(cpu)) continue;
        const seen = backends.get(pid);
        if (seen) seen.last = cpu;
        else backends.set(pid, { first: cpu, last: cpu });
      }
      await new Promise((r) => setTimeout(r, periodMs));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      const daemonEnd = await cpuSeconds(daemonPid);
      let backendCpu = 0;
      for (const b of backends.values()) backendCpu += b.last - b.first;
      return {
        staleness,
        daemonCpu: daemonEnd - (await daemonStart),
        backendCpu,
        seconds: (performance.now() - t0) / 1000,
      };
    },
  };
}
