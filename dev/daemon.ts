import type { DestinationStream } from 'pino';
import { loadConfig, type Config, type LogLevel } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { Daemon, type Running } from '../src/daemon/daemon.js';
import type { RefreshReport } from '../src/daemon/refresh/refresher.js';

export interface LocalDaemon {
  daemon: Daemon;
  running: Running;
  config: Config;
  /** Every refresh report, in order, with the time it arrived. */
  reports: (RefreshReport & { at: number })[];
  stop(): Promise<void>;
}

export interface LocalDaemonOptions {
  /** Settings (config keys) beyond the URL, the HTTP listener and the log level; they win over those. */
  overrides?: Record<string, unknown>;
  /** The environment whose MVREFRESH_* variables apply; none by default. */
  env?: NodeJS.ProcessEnv;
  /** warn by default. */
  logLevel?: LogLevel;
  /** Where the JSON log lines go; stdout by default. */
  log?: DestinationStream;
}

/**
 * The daemon in this process, as the tests, the demo and the benches run it: on `url`, its HTTP endpoints
 * on free ports of 127.0.0.1, its refresh reports collected.
 */
export async function startLocalDaemon(url: string, opts: LocalDaemonOptions = {}): Promise<LocalDaemon> {
  const config = loadConfig({
    env: opts.env ?? {},
    overrides: {
      databaseUrl: url,
      'http.port': 0,
      'http.host': '127.0.0.1',
      logLevel: opts.logLevel ?? 'warn',
      ...opts.overrides,
    },
  });
  const daemon = new Daemon(config, createLogger(config.logLevel, opts.log));
  const running = await daemon.start();
  const reports: LocalDaemon['reports'] = [];
  running.refresher.on('report', (r) => reports.push({ ...r, at: Date.now() }));
  return { daemon, running, config, reports, stop: () => daemon.stop() };
}
