import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../dev/embedded.js';
import { packageRoot } from '../../src/paths.js';
import { useTestDatabase } from '../support/db.js';
import { INSERT_ORDER, SHOP_QUERY, SHOP_SQL, viewMatches } from '../support/shop.js';
import { waitFor } from '../support/wait.js';
import { docker, imagePresent, requireDocker } from './docker.js';

/**
 * `npm run test:image`: the image built from the Dockerfile and run as a sidecar against the suite's
 * PostgreSQL (host networking), the way deploy/kubernetes/deployment.yaml runs it: `migrate` as an init
 * step, then `run` as the image's non-root user on a read-only root filesystem without capabilities.
 *
 * Base images (MVREFRESH_IMAGE_BASE): `public` builds from the Dockerfile's defaults; `local` from the
 * stand-ins scripts/base-images.sh makes (made when missing); unset: the stand-ins when they are present.
 */

const db = useTestDatabase('sidecar');
const run = promisify(execFile);
const IMAGE = process.env['MVREFRESH_IMAGE_TAG'] || 'mvrefresh:test-image';
const CONTAINER = `mvrefresh-sidecar-test-${process.pid}`;
const VIEW = 'public.monthly_product_sales';
/** The size the image should stay under. */
const SIZE_GOAL_MB = 150;
/** The daemon's own grace for running refreshes, and docker stop's longer one (as terminationGracePeriod). */
const SHUTDOWN_GRACE_MS = 10_000;
const DOCKER_STOP_GRACE_S = 20;
/** The image's HEALTHCHECK probes every 15 s: the first healthy state comes after one interval. */
const HEALTHY_TIMEOUT_MS = 120_000;
const HEALTH_POLL_MS = 250;
const BUILD_TIMEOUT_MS = 900_000;

async function buildArgs(): Promise<{ args: string[]; base: string }> {
  const script = join(packageRoot, 'scripts', 'base-images.sh');
  const wanted = process.env['MVREFRESH_IMAGE_BASE'];
  if (wanted && !['public', 'local'].includes(wanted))
    throw new Error(`MVREFRESH_IMAGE_BASE=${wanted}: use public or local`);
  const { stdout } = await run(script, ['--print-build-args']);
  const args = stdout.trim().split(/\s+/);
  const images = args.filter((a) => a.includes('=')).map((a) => a.split('=')[1]!);
  const present = (await Promise.all(images.map(imagePresent))).every(Boolean);
  if (wanted === 'public' || (!wanted && !present)) return { args: [], base: 'public (Dockerfile defaults)' };
  if (!present) await run(script, [], { timeout: BUILD_TIMEOUT_MS });
  return { args, base: `local stand-ins (${images.join(', ')})` };
}

/** Runs a one-off command of the image, as an init container would; resolves with its output. */
async function oneOff(args: string[]): Promise<string> {
  return docker([
    'run',
    '--rm',
    '--network',
    'host',
    '--read-only',
    '--cap-drop',
    'ALL',
    '--security-opt',
    'no-new-privileges',
    '-e',
    `DATABASE_URL=${db.url}`,
    IMAGE,
    ...args,
  ]);
}

async function health(): Promise<string> {
  return docker(['inspect', '--format', '{{if .State.Health}}{{.State.Health.Status}}{{end}}', CONTAINER]);
}

describe('the image, built and run as a sidecar', () => {
  let sizeMb = 0;

  beforeAll(async () => {
    await requireDocker();
    const { args, base } = await buildArgs();
    const started = Date.now();
    await docker(['build', '--network', 'host', '-t', IMAGE, ...args, packageRoot]);
    sizeMb = Number(await docker(['image', 'inspect', '--format', '{{.Size}}', IMAGE])) / 1e6;
    process.stderr.write(
      `image: ${IMAGE} built in ${Math.round((Date.now() - started) / 1000)} s from ${base}; size ${sizeMb.toFixed(1)} MB (goal <= ${SIZE_GOAL_MB} MB)\n`,
    );
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await docker(['rm', '-f', CONTAINER]).catch(() => undefined);
    if (!process.env['MVREFRESH_IMAGE_KEEP']) await docker(['image', 'rm', IMAGE]).catch(() => undefined);
  });

  it('is at most 150 MB and runs as a non-root user', async () => {
    expect(sizeMb).toBeGreaterThan(0);
    expect(sizeMb).toBeLessThanOrEqual(SIZE_GOAL_MB);
    const user = await docker(['image', 'inspect', '--format', '{{.Config.User}}', IMAGE]);
    expect(user).not.toMatch(/^(|root|0)(:.*)?$/);
    expect(await oneOff(['--help'])).toMatch(/Usage: mvrefresh/);
  });

  it(
    'installs the schema with its own migrate, watches a view, then reports healthy, refreshes after a write, logs JSON and stops with 0 within the grace period on docker stop',
    { timeout: 300_000 },
    async () => {
      await db.sql.query('DROP SCHEMA mvrefresh CASCADE');
      await db.sql.query(SHOP_SQL);
      await oneOff(['migrate']);
      await oneOff(['watch', VIEW]);
      const { rows } = await db.sql.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM mvrefresh.view_state',
      );
      expect(rows[0]?.n).toBe(1);

      const port = await freePort();
      await docker([
        'run',
        '-d',
        '--name',
        CONTAINER,
        '--network',
        'host',
        '--read-only',
        '--cap-drop',
        'ALL',
        '--security-opt',
        'no-new-privileges',
        '-e',
        `DATABASE_URL=${db.url}`,
        '-e',
        `MVREFRESH_HTTP_PORT=${port}`,
        '-e',
        'MVREFRESH_HTTP_HOST=127.0.0.1',
        '-e',
        'MVREFRESH_DEBOUNCE_MS=100',
        '-e',
        `MVREFRESH_SHUTDOWN_GRACE_MS=${SHUTDOWN_GRACE_MS}`,
        IMAGE,
      ]);

      const states: string[] = [];
      await waitFor(
        'the container to report healthy',
        async () => {
          const state = await health();
          if (states.at(-1) !== state) states.push(state);
          expect(state).not.toBe('unhealthy');
          expect(await docker(['inspect', '--format', '{{.State.Running}}', CONTAINER])).toBe('true');
          return state === 'healthy';
        },
        { timeoutMs: HEALTHY_TIMEOUT_MS, intervalMs: HEALTH_POLL_MS },
      );
      expect(states[0]).toBe('starting');
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

      const written = Date.now();
      await db.exec(INSERT_ORDER);
      await waitFor('the view to reflect the write', () => viewMatches(db.sql, VIEW, SHOP_QUERY), {
        timeoutMs: 60_000,
      });
      const refreshedMs = Date.now() - written;

      const stopStarted = Date.now();
      await docker(['stop', '-t', String(DOCKER_STOP_GRACE_S), CONTAINER]);
      const stopMs = Date.now() - stopStarted;
      const exitCode = Number(await docker(['inspect', '--format', '{{.State.ExitCode}}', CONTAINER]));
      const { stdout } = await run('docker', ['logs', CONTAINER], { maxBuffer: 16 * 1024 * 1024 });
      const lines = stdout.split('\n').filter((l) => l.trim() !== '');
      const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      process.stderr.write(
        `image: health states ${states.join(' -> ')}; view refreshed ${refreshedMs} ms after the write; ` +
          `docker stop took ${stopMs} ms, exit code ${exitCode}; ${lines.length} JSON log lines\n`,
      );

      expect(exitCode).toBe(0);
      expect(stopMs).toBeLessThan(DOCKER_STOP_GRACE_S * 1000);
      expect(events.map((e) => e['event'])).toEqual(expect.arrayContaining(['started', 'stopped']));
      expect(events).toContainEqual(
        expect.objectContaining({ event: 'refresh', view: VIEW, outcome: 'refreshed' }),
      );
      expect(stdout).not.toContain('mvrefresh-test');
    },
  );
});
