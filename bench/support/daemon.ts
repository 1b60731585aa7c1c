import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { stopChild } from '../../dev/child-stop.js';
import { packageRoot } from '../../src/paths.js';

/**
 * How long the daemon may take to start (looked at this often) and to stop after SIGTERM (its own grace
 * period is 30 s by default).
 */
const WAIT_MS = { start: 60_000, startPoll: 100, stop: 45_000 } as const;

export interface RefreshEvent {
  at: number;
  view: string;
  outcome: string;
  /** The REFRESH statement alone. */
  refreshMs?: number;
  /** The whole cycle. */
  durationMs?: number;
}

export interface DaemonProcessOptions {
  /** The HTTP port (0, the default: any free port; metric() needs a known one). */
  port?: number;
  /** MVREFRESH_* variables beyond the URL and the port, e.g. MVREFRESH_LOG_LEVEL. */
  settings?: Record<string, string>;
  /**
   * Start from the bench's own environment (its MVREFRESH_* variables apply) instead of PATH alone.
   */
  inheritEnv?: boolean;
}

/**
 * The daemon as an operator runs it: `mvrefresh run` from the build, on 127.0.0.1, its JSON log lines read
 * for refresh times, reconnects and warnings (at the default log level, info; refreshes and the start are
 * logged at info, so a lower level leaves `refreshes` empty and started() waiting).
 */
export class DaemonProcess {
  readonly refreshes: RefreshEvent[] = [];
  readonly events: Record<string, unknown>[] = [];
  readonly port: number;
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  constructor(databaseUrl: string, opts: DaemonProcessOptions = {}) {
    this.port = opts.port ?? 0;
    this.child = spawn(process.execPath, [join(packageRoot, 'dist', 'src', 'bin.js'), 'run'], {
      env: {
        ...(opts.inheritEnv ? process.env : { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }),
        DATABASE_URL: databaseUrl,
        MVREFRESH_HTTP_PORT: String(this.port),
        // any free port: "auto" is the HTTP port + 1, which another process may hold (the soak's start
        // failed on it in CI: a free port was found for the HTTP port only)
        MVREFRESH_PROBE_PORT: '0',
        MVREFRESH_HTTP_HOST: '127.0.0.1',
        ...opts.settings,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.onLine(line));
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  private onLine(line: string): void {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (entry['event'] === 'refresh') {
      const { refreshMs, durationMs } = entry;
      this.refreshes.push({
        at: Date.now(),
        view: String(entry['view']),
        outcome: String(entry['outcome']),
        ...(typeof refreshMs === 'number' ? { refreshMs } : {}),
        ...(typeof durationMs === 'number' ? { durationMs } : {}),
      });
      return;
    }
    this.events.push(entry);
  }

  /** Resolves once the daemon has logged its start; rejects when it exits before or takes too long. */
  async started(): Promise<void> {
    const deadline = Date.now() + WAIT_MS.start;
    while (!this.events.some((e) => e['event'] === 'started')) {
      // its last log lines say why (a start that fails logs its reason as JSON on stdout)
      if (this.child.exitCode !== null)
        throw new Error(
          `the daemon exited with ${this.child.exitCode}: ${this.events
            .slice(-3)
            .map((e) => JSON.stringify(e))
            .join(' ')}`,
        );
      if (Date.now() > deadline) throw new Error('the daemon did not start');
      await new Promise((r) => setTimeout(r, WAIT_MS.startPoll));
    }
  }

  async metric(name: string): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${this.port}/metrics`);
    const text = await res.text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line ? Number(line.split(' ').at(-1)) : Number.NaN;
  }

  /** SIGTERM (SIGKILL after a timeout); the exit code, null when a signal ended it. */
  async stop(): Promise<number | null> {
    await stopChild(this.child, this.exited, WAIT_MS.stop);
    return this.child.exitCode;
  }
}
