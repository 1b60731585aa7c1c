import { Writable } from 'node:stream';
import { startLocalDaemon, type LocalDaemon } from '../../dev/daemon.js';

export interface TestDaemon extends LocalDaemon {
  logs: Record<string, unknown>[];
}

/** An in-process daemon on the test database, with fast settings and logs kept in memory. */
export async function startDaemon(url: string, overrides: Record<string, unknown> = {}): Promise<TestDaemon> {
  const logs: Record<string, unknown>[] = [];
  const log = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const local = await startLocalDaemon(url, {
    logLevel: 'debug',
    log,
    overrides: {
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
  return { ...local, logs };
}
