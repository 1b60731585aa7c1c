import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';

export interface SoakOptions {
  minutes: number;
  views: number;
  /** Writing transactions per second, spread over the tables. */
  tps: number;
  sampleSeconds: number;
  /** Rows of the report: the run cut into windows of this many minutes. */
  windowMinutes: number;
  autovacuum: boolean;
  /** autovacuum_naptime of the cluster (production default 1min; a short CI run uses less). */
  naptime: string;
  /** Terminate the daemon's LISTEN backend this often (0: never), as an operator's fault. */
  killListenerMinutes: number;
  /** Where soak.md, soak.svg and soak.csv go. */
  out: string;
  /** The daemon's refreshConnectionMaxUses (undefined: its default); a short run recycles sooner. */
  maxUses: number | undefined;
  /** Fail (exit 1) when a trend check fails. */
  check: boolean;
  /** The largest growth of the median refresh time, last window against the first. */
  refreshTolerance: number;
}

const USAGE = `npm run soak -- [options]
  --minutes N               duration (default 30)
  --views N                 watched views (default 20)
  --tps N                   writing transactions per second (default 100)
  --sample-seconds N        sampling period (default 10)
  --window-minutes N        report rows (default: the run in 6 windows)
  --autovacuum on|off       (default on)
  --naptime D               autovacuum_naptime (default 1min, PostgreSQL's)
  --kill-listener-minutes N terminate the LISTEN backend this often (default 0: never)
  --max-uses N              the daemon's refreshConnectionMaxUses (default: its default)
  --out DIR                 soak.md, soak.svg, soak.csv (default docs/)
  --check                   exit 1 when a trend check fails
  --refresh-tolerance X     growth of the median refresh time allowed by the check (default 0.2)`;

function num(raw: string | undefined, name: string, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min)
    throw new Error(`--${name} must be a number of at least ${min}\n${USAGE}`);
  return n;
}

/** Every option but --check takes a value. */
const VALUED = [
  'minutes',
  'views',
  'tps',
  'sample-seconds',
  'window-minutes',
  'autovacuum',
  'naptime',
  'kill-listener-minutes',
  'max-uses',
  'out',
  'refresh-tolerance',
] as const;
const OPTIONS = {
  ...(Object.fromEntries(VALUED.map((name) => [name, { type: 'string' }])) as Record<
    (typeof VALUED)[number],
    { type: 'string' }
  >),
  check: { type: 'boolean' as const },
};

export function parseOptions(argv: string[]): SoakOptions {
  const { values } = parseArgs({ args: argv, options: OPTIONS });
  const minutes = num(values.minutes, 'minutes', 30, 0.5);
  const autovacuum = values.autovacuum ?? 'on';
  if (autovacuum !== 'on' && autovacuum !== 'off')
    throw new Error(`--autovacuum must be on or off\n${USAGE}`);
  return {
    minutes,
    views: num(values.views, 'views', 20, 1),
    tps: num(values.tps, 'tps', 100, 1),
    sampleSeconds: num(values['sample-seconds'], 'sample-seconds', 10, 1),
    windowMinutes: num(values['window-minutes'], 'window-minutes', minutes / 6, 0.1),
    autovacuum: autovacuum === 'on',
    naptime: values.naptime ?? '1min',
    killListenerMinutes: num(values['kill-listener-minutes'], 'kill-listener-minutes', 0, 0),
    maxUses: values['max-uses'] === undefined ? undefined : num(values['max-uses'], 'max-uses', 0, 1),
    out: values.out ?? join(packageRoot, 'docs'),
    check: values.check ?? false,
    refreshTolerance: num(values['refresh-tolerance'], 'refresh-tolerance', 0.2, 0),
  };
}
