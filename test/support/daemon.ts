import { Writable } from 'node:stream';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { Daemon, type Running } from '../../src/daemon/daemon.js';
import type { RefreshReport } from '../../src/daemon/refresh/refresher.js';

export interface TestDaemon {
  daemon: Daemon;
  running: Running;
  reports: (RefreshReport & { at: number })[];
  logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

/** An in-process daemon on the test database, with fast settings and logs kept in memory. */
export async function startDaemon(url: string, overrides: Record<string, unknown> = {}): Promise<TestDaemon> {
  const config = loadConfig({
    env: {},
    overrides: {
      databaseUrl: url,
      'http.port': 0,
      'http.host': '127.0.0.1',
      logLevel: 'debug',
      maxStalenessMs: 200,
      // the budget spaces a view's cycles by cost / budget: a slow failing cycle on a loaded machine would
      // hold the next attempt back for seconds; test/budget.test.ts sets budgets per view
      refreshBudget: 1,
      sweepIntervalMs: 5000,
      backoffBaseMs: 200,
      backoffMaxMs: 2000,
      shutdownGraceMs: 5000,
      'listener.heartbeatIntervalMs': 1000,
      'listener.heartbeatTimeoutMs': 500,
      'listener.reconnectMaxDelayMs': 1000,
      ...overrides,
    },
  });
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const daemon = new Daemon(config, createLogger(config.logLevel, sink));
  const running = await daemon.start();
  const reports: (RefreshReport & { at: number })[] = [];
  running.refresher.on('report', (r) => reports.push({ ...r, at: Date.now() }));
  return { daemon, running, reports, logs, stop: () => daemon.stop() };
}
