/** bench:incremental's settings (environment variables), shared by the run and its report. */
import { numberEnv } from '../support/report.js';

export const SECONDS = numberEnv('BENCH_SECONDS', 60);
export const WARMUP_S = numberEnv('BENCH_WARMUP_SECONDS', 10);
export const WRITERS = numberEnv('BENCH_WRITERS', 8);
/** How long the daemon may take to make every view clean (before a mode, and after its writers stop). */
export const CATCH_UP_LIMIT_MS = numberEnv('BENCH_CATCH_UP_SECONDS', 300) * 1000;
export const SAMPLE_MS = 200;
/**
 * After the measured seconds with no pause, each watched mode runs BENCH_PACED_SECONDS at this total write
 * rate (the CPU goal is stated at 1 000 writes/s); 0: no such phase.
 */
export const PACED_RATE = numberEnv('BENCH_PACED_RATE', 1000);
export const PACED_SECONDS = numberEnv('BENCH_PACED_SECONDS', 30);
/**
 * The fixed-rate phase's warm-up (BENCH_PACED_WARMUP_SECONDS; BENCH_WARMUP_SECONDS by default). The phase
 * comes right after the views were watched: a longer warm-up measures the views' steady state rather than
 * their first minute (freshly written tables: every page full, none touched since the conversion).
 */
export const PACED_WARMUP_S = numberEnv('BENCH_PACED_WARMUP_SECONDS', WARMUP_S);
export const TITLE = '## Incremental views: `npm run bench:incremental`';
/**
 * The rounds, in order (BENCH_MODES, comma-separated): no-view rounds between the watched ones, so that each
 * watched round is compared with the no-view rounds right before and after it (the data grows and ages
 * over a run: the no-view rounds of one run differed by a third).
 */
export const MODES = (process.env['BENCH_MODES'] ?? 'none,full,incremental,none,incremental,full,none')
  .split(',')
  .map((m) => m.trim())
  .filter((m): m is 'none' | 'full' | 'incremental' => {
    if (m === 'none' || m === 'full' || m === 'incremental') return true;
    throw new Error(`BENCH_MODES: unknown mode ${JSON.stringify(m)} (none, full, incremental)`);
  });
