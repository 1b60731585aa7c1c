import { readdir, readFile } from 'node:fs/promises';
import type pg from 'pg';
import type { DaemonProcess } from '../support/daemon.js';

const MIB = 1024 * 1024;
export const CATALOGS = ['pg_class', 'pg_attribute', 'pg_depend', 'pg_statistic', 'pg_type', 'pg_index'];

export interface Sample {
  /** Seconds since the load started. */
  t: number;
  daemonRssMiB: number;
  heapMiB: number;
  fds: number;
  connections: number;
  /** Private memory (RssAnon) of the largest refresh backend, and of all the daemon's backends together. */
  refreshBackendMiB: number;
  backendsMiB: number;
  stalenessS: number;
  mvrefreshKiB: number;
  catalogsMiB: number;
  catalogDeadRows: number;
  catalogAutovacuums: number;
}

const DB_SQL = `
  SELECT (SELECT COALESCE(max(staleness_seconds), 0) FROM mvrefresh.status)::float8 AS staleness,
         (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'mvrefresh' AND c.relkind = 'r')::float8 AS mvrefresh_bytes,
         (SELECT sum(pg_total_relation_size(c)) FROM unnest($1::regclass[]) c)::float8 AS catalog_bytes,
         (SELECT sum(n_dead_tup) FROM pg_stat_sys_tables WHERE relid = ANY ($1::regclass[]))::float8 AS catalog_dead,
         (SELECT sum(autovacuum_count) FROM pg_stat_sys_tables WHERE relid = ANY ($1::regclass[]))::float8 AS autovacuums`;
const BACKENDS_SQL = `
  SELECT pid, application_name AS app FROM pg_stat_activity
   WHERE datname = current_database() AND application_name LIKE 'mvrefresh:%'`;

/** A line of /proc/<pid>/status in MiB (kB there), NaN when unreadable (the backend just ended). */
async function procStatusMiB(pid: number, field: string): Promise<number> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m?.[1] ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

export async function takeSample(t: number, db: pg.ClientBase, daemon: DaemonProcess): Promise<Sample> {
  const [{ rows }, backends] = await Promise.all([
    db.query<{
      staleness: number;
      mvrefresh_bytes: number;
      catalog_bytes: number;
      catalog_dead: number;
      autovacuums: number;
    }>(DB_SQL, [CATALOGS]),
    db.query<{ pid: number; app: string }>(BACKENDS_SQL),
  ]);
  const mem = await Promise.all(
    backends.rows.map(async (b) => ({ app: b.app, mib: await procStatusMiB(b.pid, 'RssAnon') })),
  );
  const known = mem.filter((m) => Number.isFinite(m.mib));
  const refresh = known.filter((m) => m.app === 'mvrefresh:refresh').map((m) => m.mib);
  const r = rows[0]!;
  return {
    t,
    daemonRssMiB: await procStatusMiB(daemon.pid, 'VmRSS'),
    heapMiB: (await daemon.metric('mvrefresh_nodejs_heap_size_used_bytes').catch(() => Number.NaN)) / MIB,
    fds: await readdir(`/proc/${daemon.pid}/fd`).then(
      (f) => f.length,
      () => Number.NaN,
    ),
    connections: backends.rows.length,
    refreshBackendMiB: refresh.length > 0 ? Math.max(...refresh) : 0,
    backendsMiB: known.reduce((a, m) => a + m.mib, 0),
    stalenessS: r.staleness,
    mvrefreshKiB: r.mvrefresh_bytes / 1024,
    catalogsMiB: r.catalog_bytes / MIB,
    catalogDeadRows: r.catalog_dead,
    catalogAutovacuums: r.autovacuums,
  };
}
