import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { printable } from '../src/commands/admin.js';
import { MIN_REFRESH_BUDGET } from '../src/duration.js';
import { Scheduler } from '../src/daemon/refresh/scheduler.js';
import type { Job } from '../src/interfaces.js';
import { main } from '../src/cli.js';

const DB = 'postgres://u@127.0.0.1:5432/db';

describe('a tiny refresh budget', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('is refused with a clear configuration error below 0.1%', () => {
    for (const budget of ['0.000000001', '0.0001', '0.01%'])
      expect(() => loadConfig({ env: { DATABASE_URL: DB, MVREFRESH_REFRESH_BUDGET: budget } })).toThrow(
        /refreshBudget: must be a share of time from 0\.001 \(0\.1%\) to 1/,
      );
    expect(loadConfig({ env: { DATABASE_URL: DB, MVREFRESH_REFRESH_BUDGET: '0.1%' } }).refreshBudget).toBe(
      MIN_REFRESH_BUDGET,
    );
    expect(() => loadConfig({ env: { DATABASE_URL: DB, MVREFRESH_REFRESH_BUDGET: '0' } })).toThrow(
      ConfigError,
    );
  });

  it('is refused by watch --refresh-budget before anything is connected', async () => {
    const err: string[] = [];
    const code = await main(['watch', 'v', '--refresh-budget', '0.000000001'], {
      out: () => undefined,
      err: (s: string) => err.push(s),
      env: { DATABASE_URL: DB },
    });
    expect(code).not.toBe(0);
    expect(err.join('\n')).toMatch(/--refresh-budget must be a share from 0\.001 \(0\.1%\) to 1/);
  });

  it("one already stored (older versions accepted any) cannot overflow the scheduler's timer into refreshing at once", () => {
    vi.useFakeTimers({ now: 100_000 });
    const s = new Scheduler({ logger: createLogger('silent'), maxStalenessMs: 1000, refreshBudget: 0.2 });
    s.setViews([
      {
        id: 1,
        name: 'public.v1',
        maxStalenessMs: null,
        refreshBudget: 1e-9,
        paused: false,
        lastDurationMs: null,
        lastRefreshedAgoMs: null,
      },
    ]);
    const due: Job[] = [];
    s.on('due', (job) => due.push(job));
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(2000);
    expect(due).toHaveLength(1);
    s.started(due[0]!);
    vi.advanceTimersByTime(5);
    s.finished(1, { kind: 'done', refreshed: true, durationMs: 5 });
    // 5 ms / 1e-9 is 58 days: beyond the 2^31 - 1 ms a Node timer can wait
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(10_000);
    expect(due).toHaveLength(1);
    s.stop();
  });
});

describe('printable()', () => {
  it('escapes bidirectional overrides and isolates, other format characters, controls and line separators', () => {
    const hostile =
      'public.\u202Egnp.exe\u202C \u2066x\u2069 \u200B\u200F\u061C\uFEFF\u2028\u2029\u0007\u001b[2J\u009b';
    const shown = printable(hostile);
    expect(shown).not.toMatch(
      // eslint-disable-next-line no-control-regex
      /[\u202A-\u202E\u2066-\u2069\u200B-\u200F\u061C\uFEFF\u2028\u2029\u0000-\u001f\u007f-\u009f]/,
    );
    expect(shown).toContain('\\u202e');
    expect(shown).toContain('\\u2066');
    expect(printable('\u{E0041}')).toBe('\\u{e0041}');
    expect(printable('public.ventes_été 売上')).toBe('public.ventes_été 売上');
  });
});
