import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';

/** How long the daemon may take to stop after SIGTERM (its grace period is 30 s by default). */
const STOP_TIMEOUT_MS = 45_000;
const START_TIMEOUT_MS = 60_000;

export interface RefreshEvent {
  at: number;
  view: string;
  outcome: string;
  refreshMs?: number;
}

/**
 * The daemon as an operator runs it: `mvrefresh run` from the build, its defaults, its JSON log lines read
 * for refresh times, reconnects and warnings.
 */
export class DaemonProcess {
  readonly refreshes: RefreshEvent[] = [];
  readonly events: Record<string, unknown>[] = [];
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;

  constructor(
    databaseUrl: string,
    readonly port: number,
    settings: Record<string, string> = {},
  ) {
    this.child = spawn(process.execPath, [join(packageRoot, 'dist', 'src', 'bin.js'), 'run'], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        DATABASE_URL: databaseUrl,
        MVREFRESH_HTTP_PORT: String(port),
        MVREFRESH_HTTP_HOST: '127.0.0.1',
        ...settings,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
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
      this.refreshes.push({
        at: Date.now(),
        view: String(entry['view']),
        outcome: String(entry['outcome']),
        ...(typeof entry['refreshMs'] === 'number' ? { refreshMs: entry['refreshMs'] } : {}),
      });
      return;
    }
    this.events.push(entry);
  }

  async started(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!this.events.some((e) => e['event'] === 'started')) {
      if (this.child.exitCode !== null) throw new Error(`the daemon exited with ${this.child.exitCode}`);
      if (Date.now() > deadline) throw new Error('the daemon did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async metric(name: string): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${this.port}/metrics`);
    const text = await res.text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line ? Number(line.split(' ').at(-1)) : Number.NaN;
  }

  /** SIGTERM, then the exit code (SIGKILL after the timeout). */
  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
