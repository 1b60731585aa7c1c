/**
 * Where the machine's CPU goes while bench:incremental's writers run, by role: the writers' client
 * process and their backends, the daemon's process and its backends, autovacuum, the server's auxiliary
 * processes; the machine's idle share; and what the writers' backends wait for (pg_stat_activity's wait
 * events, or CPU when they wait for nothing; `idle`: waiting for their client).
 */
import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { cpuSeconds } from '../support/disturbance.js';

/** Jiffies per second of /proc/stat's CPU times (USER_HZ, 100 on Linux). */
const USER_HZ = 100;
/** pg_stat_activity is read this often for wait events, and every CPU_EVERY-th time for CPU times too. */
const WAIT_SAMPLE_MS = 100;
const CPU_EVERY = 5;

/** The machine's idle (I/O wait included) and I/O wait and total CPU seconds, all cores. */
function machineCpu(): { idle: number; ioWait: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
    .split(/\s+/)
    .slice(1)
    .map(Number)
    .filter((n) => Number.isFinite(n));
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return {
    idle: idle / USER_HZ,
    ioWait: (fields[4] ?? 0) / USER_HZ,
    total: fields.reduce((a, b) => a + b, 0) / USER_HZ,
  };
}

export interface RoleCpu {
  /** Share of one core per role, percent. */
  byRole: Record<string, number>;
  /** The machine's idle share, percent of one core (all cores: up to 100 x cores). */
  idle: number;
  /**
   * Of it, the time idle with I/O outstanding (/proc/stat's iowait): high when the writers wait for their
   * commits' flush rather than for a core, which changes what the daemon's CPU costs them (design 10.4).
   */
  ioWait: number;
  /** Share of the writers' backends' samples per wait (event type:event, CPU, idle), percent. */
  waits: [string, number][];
}

interface Row {
  pid: number;
  backend_type: string | null;
  application_name: string;
  state: string | null;
  wait_event_type: string | null;
  wait_event: string | null;
}

function roleOf(r: Row): string {
  if (r.backend_type !== 'client backend') return r.backend_type ?? 'other';
  if (r.application_name.startsWith('bench:writer')) return 'writers (backends)';
  if (r.application_name.startsWith('mvrefresh')) return 'daemon (backends)';
  return 'other clients';
}

/**
 * Samples until stop(): `c` reads pg_stat_activity (its own backend counts under "other clients");
 * `writerPid` is the writers' client process, `daemonPid` the daemon's (0: none).
 */
export function startRoleSampler(
  c: pg.ClientBase,
  writerPid: number,
  daemonPid: number,
): { stop: () => Promise<RoleCpu> } {
  const t0 = performance.now();
  const m0 = machineCpu();
  const own0 = Promise.all([cpuSeconds(writerPid), daemonPid ? cpuSeconds(daemonPid) : 0]);
  const seen = new Map<number, { role: string; first: number; last: number }>();
  const waits = new Map<string, number>();
  let stopped = false;
  const loop = (async () => {
    for (let i = 0; !stopped; i += 1) {
      const { rows } = await c.query<Row>(
        'SELECT pid, backend_type, application_name, state, wait_event_type, wait_event FROM pg_stat_activity',
      );
      for (const r of rows) {
        const role = roleOf(r);
        if (role === 'writers (backends)') {
          const wait =
            r.state === 'active'
              ? r.wait_event_type
                ? `${r.wait_event_type}:${r.wait_event}`
                : 'CPU'
              : 'idle';
          waits.set(wait, (waits.get(wait) ?? 0) + 1);
        }
        if (i % CPU_EVERY !== 0) continue;
        const cpu = await cpuSeconds(r.pid);
        if (Number.isNaN(cpu)) continue;
        const s = seen.get(r.pid);
        if (s) s.last = cpu;
        else seen.set(r.pid, { role, first: cpu, last: cpu });
      }
      await new Promise((r) => setTimeout(r, WAIT_SAMPLE_MS));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      const seconds = (performance.now() - t0) / 1000;
      const m1 = machineCpu();
      const [writer0, daemon0] = await own0;
      const secondsBy: Record<string, number> = {
        'writers (client)': (await cpuSeconds(writerPid)) - writer0,
      };
      if (daemonPid) secondsBy['daemon (process)'] = (await cpuSeconds(daemonPid)) - daemon0;
      for (const s of seen.values()) secondsBy[s.role] = (secondsBy[s.role] ?? 0) + (s.last - s.first);
      const byRole = Object.fromEntries(
        Object.entries(secondsBy).map(([role, s]) => [role, (100 * s) / seconds]),
      );
      const total = [...waits.values()].reduce((a, b) => a + b, 0);
      return {
        byRole,
        idle: (100 * (m1.idle - m0.idle)) / seconds,
        ioWait: (100 * (m1.ioWait - m0.ioWait)) / seconds,
        waits: [...waits.entries()]
          .sort((a, b) => b[1] - a[1])
          .map(([w, n]): [string, number] => [w, (100 * n) / total]),
      };
    },
  };
}
