import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { stopChild } from '../../dev/child-stop.js';
import { freePort } from '../../dev/embedded.js';
import { packageRoot } from '../../src/paths.js';
import { waitFor } from '../support/wait.js';

/** Where Debian's prometheus package puts its binaries; PATH is searched first. */
const DEBIAN_BIN = '/usr/bin';
export const ALERTS_FILE = join(packageRoot, 'deploy', 'prometheus', 'alerts.yaml');
export const ALERT_TESTS_DIR = join(packageRoot, 'deploy', 'prometheus', 'tests');
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

function findBinary(name: string): string | undefined {
  for (const dir of [...(process.env['PATH'] ?? '').split(':').filter(Boolean), DEBIAN_BIN]) {
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/**
 * The binary, or undefined with a line on stderr saying the file is skipped; CI installs Debian's
 * prometheus package and sets MVREFRESH_TEST_REQUIRE_PROMETHEUS, which turns a missing binary into a failure.
 */
export function prometheusBinary(name: 'prometheus' | 'promtool', file: string): string | undefined {
  const binary = findBinary(name);
  if (!binary && process.env['MVREFRESH_TEST_REQUIRE_PROMETHEUS'])
    throw new Error(`MVREFRESH_TEST_REQUIRE_PROMETHEUS is set, but no ${name} binary was found`);
  if (!binary)
    process.stderr.write(`${file} skipped: no ${name} binary (Debian: apt-get install prometheus)\n`);
  return binary;
}

export interface AlertRule {
  alert: string;
  expr: string;
}

/** Every alerting rule of deploy/prometheus/alerts.yaml, in file order. */
export async function alertRules(): Promise<AlertRule[]> {
  const doc = parse(await readFile(ALERTS_FILE, 'utf8')) as {
    groups: { rules: { alert?: string; expr: string }[] }[];
  };
  return doc.groups.flatMap((g) =>
    g.rules.flatMap((r) => (r.alert ? [{ alert: r.alert, expr: String(r.expr) }] : [])),
  );
}

export interface PrometheusServer {
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:PORT. */
  url: string;
  /** Output of the server so far, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * A private Prometheus on a free port of 127.0.0.1 with a temporary data directory, scraping the given
 * targets every second under the job name `mvrefresh` (the name MvrefreshAbsent matches), with the alert
 * rules loaded. Stopped (SIGTERM, then SIGKILL) and its directory removed by stop().
 */
export async function startPrometheus(binary: string, targets: string[]): Promise<PrometheusServer> {
  const dir = await mkdtemp(join(tmpdir(), 'mvrefresh-prometheus-'));
  const port = await freePort();
  const config = {
    global: { scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '900ms' },
    rule_files: [ALERTS_FILE],
    scrape_configs: [{ job_name: 'mvrefresh', static_configs: [{ targets }] }],
  };
  await writeFile(join(dir, 'prometheus.yml'), JSON.stringify(config));
  let out = '';
  const child: ChildProcess = spawn(
    binary,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr?.on('data', (b: Buffer) => (out += b.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    await stopChild(child, exited, STOP_TIMEOUT_MS);
    await rm(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      'Prometheus to answer /-/ready',
      async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}: ${out}`);
        return (await fetch(`${url}/-/ready`)).ok;
      },
      { timeoutMs: READY_TIMEOUT_MS, intervalMs: 200 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, output: () => out, stop };
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query through the HTTP API; rejects with Prometheus's error (a parse error, an unknown function). */
export async function instantQuery(
  url: string,
  query: string,
): Promise<{ resultType: string; result: Sample[] }> {
  const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query })}`);
  const body = (await res.json()) as {
    status: string;
    error?: string;
    data?: { resultType: string; result: Sample[] };
  };
  if (body.status !== 'success' || !body.data) throw new Error(`${query}: ${body.error ?? res.status}`);
  return body.data;
}

/** Names of the metrics an expression reads: mvrefresh's own and `up` (the only others the rules use). */
export function metricNames(expr: string): string[] {
  return [...new Set(expr.match(/\b(?:mvrefresh_[a-z_]+|up)\b(?=\s*[{[)\s]|$)/g) ?? [])];
}
