import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../dev/embedded.js';
import { packageRoot } from '../../src/paths.js';
import { SHOP_QUERY, viewMatches } from '../support/shop.js';
import { waitFor } from '../support/wait.js';
import { docker, imagePresent, requireDocker } from './docker.js';

/**
 * The quick start (compose.yaml) brought up as a newcomer would, `docker compose up`, with the local
 * stand-ins of the public images where they are present (MVREFRESH_IMAGE_BASE as in sidecar.test.ts):
 * mvrefresh reports healthy, the writer's orders reach the view through a refresh, Prometheus scrapes
 * the daemon; then it is torn down, volumes included.
 */
const run = promisify(execFile);
const PROJECT = `mvrefresh-compose-test-${process.pid}`;
const IMAGE = `mvrefresh:compose-test-${process.pid}`;
const VIEW = 'public.monthly_product_sales';
/** The image's HEALTHCHECK probes every 15 s, after the one-off migrate and watch containers. */
const HEALTHY_TIMEOUT_MS = 180_000;
/** The promise: a view kept fresh within a minute of `docker compose up`. */
const FRESH_TIMEOUT_MS = 60_000;
const COMPOSE_TIMEOUT_MS = 900_000;
const OUTPUT_LIMIT = 64 * 1024 * 1024;
const POSTGRES_PASSWORD = 'quickstart';

/** `docker compose` (the CLI plugin) where present, else Debian's docker-compose (v1). */
async function composeCommand(): Promise<string[]> {
  if (
    await run('docker', ['compose', 'version']).then(
      () => true,
      () => false,
    )
  )
    return ['docker', 'compose'];
  if (
    await run('docker-compose', ['version']).then(
      () => true,
      () => false,
    )
  )
    return ['docker-compose'];
  throw new Error('this test needs docker compose: on Debian bookworm, apt-get install docker-compose');
}

async function standIns(): Promise<{ env: Record<string, string>; buildArgs: string[]; base: string }> {
  const script = join(packageRoot, 'scripts', 'base-images.sh');
  const wanted = process.env['MVREFRESH_IMAGE_BASE'];
  if (wanted && !['public', 'local'].includes(wanted))
    throw new Error(`MVREFRESH_IMAGE_BASE=${wanted}: use public or local`);
  const split = async (flag: string) => (await run(script, [flag])).stdout.trim().split(/\s+/);
  const buildArgs = await split('--print-build-args');
  const env = Object.fromEntries(
    (await split('--print-compose-env')).map((kv) => kv.split('=') as [string, string]),
  );
  const images = [
    ...buildArgs.filter((a) => a.includes('=')).map((a) => a.split('=')[1]!),
    ...Object.values(env),
  ];
  const present = (await Promise.all(images.map(imagePresent))).every(Boolean);
  if (wanted === 'public' || (!wanted && !present)) return { env: {}, buildArgs: [], base: 'public' };
  if (!present) await run(script, [], { timeout: COMPOSE_TIMEOUT_MS });
  return { env, buildArgs, base: `local stand-ins (${images.join(', ')})` };
}

describe('the docker compose quick start', () => {
  let compose: string[] = [];
  let env: NodeJS.ProcessEnv = {};
  const ports = { postgres: 0, metrics: 0, prometheus: 0 };
  let failed = false;

  const composeRun = async (args: string[]) => {
    try {
      const { stdout } = await run(
        compose[0]!,
        [...compose.slice(1), '-p', PROJECT, '-f', 'compose.yaml', ...args],
        {
          cwd: packageRoot,
          env,
          timeout: COMPOSE_TIMEOUT_MS,
          maxBuffer: OUTPUT_LIMIT,
        },
      );
      return stdout.trim();
    } catch (err) {
      const e = err as Error & { stderr?: string; stdout?: string };
      throw new Error(
        `${compose.join(' ')} ${args.join(' ')} failed: ${(e.stderr || e.message).trim()}\n${(e.stdout ?? '').trim().split('\n').slice(-20).join('\n')}`,
      );
    }
  };

  beforeAll(async () => {
    await requireDocker();
    compose = await composeCommand();
    const images = await standIns();
    ports.postgres = await freePort();
    ports.metrics = await freePort();
    ports.prometheus = await freePort();
    env = {
      ...process.env,
      ...images.env,
      MVREFRESH_IMAGE: IMAGE,
      MVREFRESH_POSTGRES_PORT: String(ports.postgres),
      MVREFRESH_METRICS_PORT: String(ports.metrics),
      MVREFRESH_PROMETHEUS_PORT: String(ports.prometheus),
    };
    const started = Date.now();
    // migrate, watch and mvrefresh share the image: built once, `up` finds it
    await composeRun(['build', ...images.buildArgs, 'mvrefresh']);
    await composeRun(['up', '-d']);
    process.stderr.write(
      `compose: ${compose.join(' ')} built and started in ${Math.round((Date.now() - started) / 1000)} s from ${images.base}\n`,
    );
  }, COMPOSE_TIMEOUT_MS);

  afterAll(async () => {
    if (compose.length === 0) return;
    if (failed)
      process.stderr.write(`${await composeRun(['logs', '--no-color', '--tail', '40']).catch(String)}\n`);
    await composeRun(['down', '--volumes', '--remove-orphans', '--timeout', '20']);
    if (!process.env['MVREFRESH_IMAGE_KEEP']) await docker(['image', 'rm', IMAGE]).catch(() => undefined);
  }, 120_000);

  it(
    'reports mvrefresh healthy, refreshes the view with the writer running and is scraped by Prometheus',
    { timeout: HEALTHY_TIMEOUT_MS + FRESH_TIMEOUT_MS },
    async () => {
      try {
        const container = await composeRun(['ps', '-q', 'mvrefresh']);
        expect(container).not.toBe('');
        await waitFor(
          'mvrefresh to report healthy',
          async () => {
            const state = await docker([
              'inspect',
              '--format',
              '{{if .State.Health}}{{.State.Health.Status}}{{end}}',
              container,
            ]);
            expect(state).not.toBe('unhealthy');
            return state === 'healthy';
          },
          { timeoutMs: HEALTHY_TIMEOUT_MS, intervalMs: 1000 },
        );
        const client = new pg.Client({
          connectionString: `postgres://postgres:${POSTGRES_PASSWORD}@127.0.0.1:${ports.postgres}/shop`,
        });
        await client.connect();
        try {
          await waitFor(
            "the writer's orders in the view, refreshed by mvrefresh",
            async () => {
              const { rows } = await client.query<{ last_outcome: string | null; orders: string }>(
                `SELECT (SELECT last_outcome FROM mvrefresh.status WHERE view = $1) AS last_outcome,
                        (SELECT count(*) FROM orders) AS orders`,
                [VIEW],
              );
              return (
                Number(rows[0]?.orders) > 0 &&
                rows[0]?.last_outcome === 'refreshed' &&
                (await viewMatches(client, VIEW, SHOP_QUERY))
              );
            },
            { timeoutMs: FRESH_TIMEOUT_MS, intervalMs: 500 },
          );
        } finally {
          await client.end();
        }
        const metrics = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
        expect(metrics).toMatch(/mvrefresh_refreshes_total\{[^}]*outcome="refreshed"[^}]*\} [1-9]/);
        await waitFor(
          'Prometheus to scrape mvrefresh',
          async () => {
            const res = await fetch(
              `http://127.0.0.1:${ports.prometheus}/api/v1/query?${new URLSearchParams({ query: 'up{job="mvrefresh"} == 1' })}`,
            );
            const body = (await res.json()) as { data: { result: unknown[] } };
            return body.data.result.length === 1;
          },
          { timeoutMs: FRESH_TIMEOUT_MS, intervalMs: 1000 },
        );
      } catch (err) {
        failed = true;
        throw err;
      }
    },
  );

  it('adds Grafana with deploy/compose/grafana.yaml, mounting the dashboard where its provisioning looks for it', async () => {
    // composeRun's `-f compose.yaml` comes first: the global options, then the subcommand
    const merged = parse(await composeRun(['-f', 'deploy/compose/grafana.yaml', 'config'])) as {
      services: Record<string, { volumes?: (string | { source: string; target: string })[] }>;
    };
    const volumes = (merged.services['grafana']?.volumes ?? []).map((v) =>
      typeof v === 'string' ? { source: v.split(':')[0]!, target: v.split(':')[1]! } : v,
    );
    expect(volumes.length).toBe(3);
    for (const v of volumes) expect(existsSync(v.source), v.source).toBe(true);
    const provider = parse(
      await readFile(
        join(packageRoot, 'deploy', 'grafana', 'provisioning', 'dashboards', 'mvrefresh.yaml'),
        'utf8',
      ),
    ) as { providers: { options: { path: string } }[] };
    const dashboardDir = provider.providers[0]!.options.path;
    expect(volumes.some((v) => v.target === `${dashboardDir}/mvrefresh.json`)).toBe(true);
  });
});
