/**
 * What else runs while the benchmark measures: CPU used and bytes written by processes that are not part
 * of it (another pgbench, a test suite, a second PostgreSQL server), transactions in other databases of the server, and
 * checkpoints (CREATE and DROP DATABASE force one; the benchmark's own come before each round). Benchmark
 * rounds wait until the machine is quiet and are repeated when something else ran during them.
 *
 * Linux only (/proc); elsewhere the meter reads 0. A process counts as the benchmark's when it is this
 * process or its child (pgbench), or a process of the benchmarked server (its postmaster's children) that
 * is not a backend of another database. Kernel threads are ignored. Processes are sampled every second, so
 * one that lives less than a second between two samples goes unseen.
 */
import { readdir, readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on every Linux architecture we run on). */
const USER_HZ = 100;
const KTHREADD_PID = 2;
/** Positions of fields in /proc/<pid>/stat after the command name (the state is at 0). */
const STAT_FIELD = { ppid: 1, utime: 11, stime: 12 } as const;
/** The meter's samples while a bench waits or measures are this far apart. */
const SAMPLE_PERIOD_MS = 1000;

interface Proc {
  ppid: number;
  ticks: number;
  /** Bytes it caused to be written to storage (0 when /proc/<pid>/io is not readable: another user's). */
  written: number;
}

async function readWritten(pid: number): Promise<number> {
  try {
    const io = await readFile(`/proc/${pid}/io`, 'utf8');
    return Number(/^write_bytes: (\d+)/m.exec(io)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

async function readProc(pid: number): Promise<Proc | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // the command name is in parentheses and may itself contain spaces and parentheses
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {
      ppid: Number(fields[STAT_FIELD.ppid]),
      ticks: Number(fields[STAT_FIELD.utime]) + Number(fields[STAT_FIELD.stime]),
      written: await readWritten(pid),
    };
  } catch {
    return undefined; // gone meanwhile
  }
}

/** CPU seconds (user and system) a process has used, NaN when it is gone. */
export async function cpuSeconds(pid: number): Promise<number> {
  const proc = await readProc(pid);
  return proc ? proc.ticks / USER_HZ : Number.NaN;
}

async function readProcs(): Promise<Map<number, Proc>> {
  const procs = new Map<number, Proc>();
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  for (const pid of pids) {
    const proc = await readProc(pid);
    if (proc) procs.set(pid, proc);
  }
  return procs;
}

export interface Activity {
  /** CPU ticks of other processes. */
  ticks: number;
  /** Bytes other processes wrote to storage (fsync latency is shared by every committing transaction). */
  written: number;
  /** Transactions ended in other databases (not counting the admin connection's database). */
  xacts: number;
  checkpoints: number;
}

export const NO_ACTIVITY: Activity = { ticks: 0, written: 0, xacts: 0, checkpoints: 0 };

export function addActivity(a: Activity, b: Activity): Activity {
  return {
    ticks: a.ticks + b.ticks,
    written: a.written + b.written,
    xacts: a.xacts + b.xacts,
    checkpoints: a.checkpoints + b.checkpoints,
  };
}

interface Counters {
  xacts: number;
  checkpoints: number;
}

export class DisturbanceMeter {
  private postmaster: number | undefined;
  private previous: Map<number, Proc> | undefined;
  private counters: Counters | undefined;
  private readonly procfs = process.platform === 'linux';

  /**
   * @param admin a superuser connection to the benchmarked server
   * @param ours the benchmark's databases: their backends are part of the benchmark
   */
  constructor(
    private readonly admin: pg.Client,
    private readonly ours: readonly string[],
  ) {}

  async start(): Promise<void> {
    if (this.procfs) {
      const { rows } = await this.admin.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      // a remote server has no process here: then every local PostgreSQL process is someone else's
      this.postmaster = rows[0] ? (await readProc(rows[0].pid))?.ppid : undefined;
      this.previous = await readProcs();
    }
    this.counters = await this.readCounters();
  }

  /** What other processes and sessions did since the last call (or start()). */
  async sample(): Promise<Activity> {
    const counters = await this.readCounters();
    const before = this.counters ?? counters;
    this.counters = counters;
    return {
      ...(await this.sampleProcs()),
      // a dropped database takes its counts with it
      xacts: Math.max(0, counters.xacts - before.xacts),
      checkpoints: counters.checkpoints - before.checkpoints,
    };
  }

  private async readCounters(): Promise<Counters> {
    const { rows } = await this.admin.query<Counters>(
      `SELECT (SELECT COALESCE(sum(xact_commit + xact_rollback), 0)::float8 FROM pg_stat_database
                WHERE datname IS NOT NULL AND datname <> ALL ($1::text[]) AND datname <> current_database()) AS xacts,
              (SELECT (checkpoints_timed + checkpoints_req)::float8 FROM pg_stat_bgwriter) AS checkpoints`,
      [this.ours],
    );
    return rows[0] ?? { xacts: 0, checkpoints: 0 };
  }

  private async sampleProcs(): Promise<Pick<Activity, 'ticks' | 'written'>> {
    if (!this.procfs || !this.previous) return { ticks: 0, written: 0 };
    const { rows } = await this.admin.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname IS NOT NULL AND datname <> ALL ($1::text[])`,
      [this.ours],
    );
    const foreignBackends = new Set(rows.map((r) => r.pid));
    const current = await readProcs();
    let ticks = 0;
    let written = 0;
    for (const [pid, proc] of current) {
      if (this.isOurs(pid, proc, foreignBackends)) continue;
      // a process seen for the first time started since the last sample: all it did is new
      const before = this.previous.get(pid);
      ticks += Math.max(0, proc.ticks - (before?.ticks ?? 0));
      written += Math.max(0, proc.written - (before?.written ?? 0));
    }
    this.previous = current;
    return { ticks, written };
  }

  private isOurs(pid: number, proc: Proc, foreignBackends: ReadonlySet<number>): boolean {
    if (pid === KTHREADD_PID || proc.ppid === KTHREADD_PID) return true; // kernel threads: not a workload
    if (pid === process.pid || proc.ppid === process.pid) return true;
    if (this.postmaster !== undefined && (pid === this.postmaster || proc.ppid === this.postmaster))
      return !foreignBackends.has(pid);
    return false;
  }

  /** Ticks as a share of the machine's CPU over a period. */
  static share(ticks: number, seconds: number): number {
    return ticks / (USER_HZ * seconds * availableParallelism());
  }
}

/** Seconds elapsed since a performance.now() reading. */
export const secondsSince = (t0: number): number => (performance.now() - t0) / 1000;

export interface QuietWait {
  /** Give up after this long. */
  maxSeconds: number;
  /** Whether what others did during a sample of `seconds` leaves the machine quiet enough. */
  isQuiet: (activity: Activity, seconds: number) => boolean;
  /** Quiet samples in a row needed (2 by default). */
  samples?: number;
}

/**
 * Waits until the machine has been quiet (`isQuiet`) for `samples` seconds in a row, or for at most
 * maxSeconds; true if the last second was quiet. Says once on stderr that it waits.
 */
export async function waitForQuiet(meter: DisturbanceMeter, wait: QuietWait): Promise<boolean> {
  const needed = wait.samples ?? 2;
  const t0 = performance.now();
  let quiet = 0;
  let announced = false;
  await meter.sample();
  for (;;) {
    const t = performance.now();
    await sleep(SAMPLE_PERIOD_MS);
    if (wait.isQuiet(await meter.sample(), secondsSince(t))) {
      quiet += 1;
      if (quiet >= needed) return true;
    } else {
      quiet = 0;
      if (!announced) process.stderr.write('  something else is running: waiting\n');
      announced = true;
    }
    if (secondsSince(t0) >= wait.maxSeconds) return quiet > 0;
  }
}

/** Samples what others do while a bench measures; stop() returns all of it and the seconds it covers. */
export function startMonitor(meter: DisturbanceMeter): {
  stop: () => Promise<{ activity: Activity; seconds: number }>;
} {
  const t0 = performance.now();
  let activity = NO_ACTIVITY;
  let stopped = false;
  const loop = (async () => {
    await meter.sample();
    while (!stopped) {
      await sleep(SAMPLE_PERIOD_MS);
      activity = addActivity(activity, await meter.sample());
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return { activity, seconds: secondsSince(t0) };
    },
  };
}
