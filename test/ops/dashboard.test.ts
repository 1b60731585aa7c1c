import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { runCli } from '../support/cli.js';
import { useTestDatabase } from '../support/db.js';
import { startDaemon, type TestDaemon } from '../support/daemon.js';
import { INSERT_ORDER, SHOP_SQL } from '../support/shop.js';
import { delay, waitFor } from '../support/wait.js';
import {
  alertRules,
  instantQuery,
  metricNames,
  prometheusBinary,
  startPrometheus,
  type PrometheusServer,
  type Sample,
} from './prometheus.js';

/**
 * Debian's Prometheus scrapes a real daemon every second while a writer runs, one view fails, one has a
 * target its budget cannot meet and one's sources drift; then every query of the Grafana dashboard
 * (deploy/grafana/mvrefresh.json) and every alert expression (deploy/prometheus/alerts.yaml) goes through
 * Prometheus's HTTP API. A panel must return series carrying the labels its legend shows, so that a
 * renamed metric or label cannot leave it silently empty; an alert expression that is empty while nothing
 * is wrong must still read metrics that exist in the scrape.
 */
const prometheus = prometheusBinary('prometheus', 'test/ops/dashboard.test.ts');
const db = useTestDatabase('ops_dashboard');

const DASHBOARD = join(packageRoot, 'deploy', 'grafana', 'mvrefresh.json');
/** What Grafana puts for $__rate_interval at a 1 s scrape interval, rounded up: several scrapes. */
const RATE_INTERVAL = '15s';
/** The `view` variable's "All" value (allValue in the dashboard). */
const ALL_VIEWS = '.*';
const WRITE_PAUSE_MS = 50;
const VIEWS = {
  shop: 'public.monthly_product_sales',
  failing: 'public.ops_dup',
  tight: 'public.ops_orders_per_customer',
  drifting: 'public.ops_sales_by_region',
  incremental: 'public.ops_customer_totals',
};
/** Alerts the scenario makes true: their expressions must return series (the others may be empty). */
const TRUE_IN_SCENARIO = new Set(['MvrefreshRefreshFailing', 'MvrefreshTargetUnmet']);

interface Panel {
  title: string;
  type: string;
  targets?: { expr: string; legendFormat?: string }[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; allValue?: string; query?: { query: string } | string }[] };
}

const expand = (expr: string, view: string) =>
  expr.replaceAll('$__rate_interval', RATE_INTERVAL).replaceAll('$view', view);
const legendLabels = (legend: string | undefined) =>
  [...(legend ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);

function startWriter(): { stop(): Promise<number> } {
  let stopping = false;
  const done = (async () => {
    const c = new pg.Client({ connectionString: db.url, application_name: 'mvrefresh:test-writer' });
    await c.connect();
    let n = 0;
    try {
      while (!stopping) {
        await c.query(INSERT_ORDER);
        await c.query("INSERT INTO ops_sales VALUES ('eu', 1)");
        n += 1;
        await delay(WRITE_PAUSE_MS);
      }
    } finally {
      await c.end();
    }
    return n;
  })();
  return {
    stop: async () => {
      stopping = true;
      return done;
    },
  };
}

describe.skipIf(!prometheus)('the dashboard and the alert rules against Prometheus scraping a daemon', () => {
  let d: TestDaemon | undefined;
  let prom: PrometheusServer | undefined;
  let writer: { stop(): Promise<number> } | undefined;
  let dashboard: Dashboard;

  beforeAll(async () => {
    dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard;
    await db.sql.query(SHOP_SQL);
    await db.sql.query(`
      CREATE TABLE ops_src (k int, v int);
      INSERT INTO ops_src VALUES (1, 1);
      CREATE MATERIALIZED VIEW ops_dup AS SELECT k, v FROM ops_src;
      CREATE UNIQUE INDEX ON ops_dup (k);
      CREATE MATERIALIZED VIEW ops_orders_per_customer AS
        SELECT customer_id, count(*) AS orders FROM orders GROUP BY customer_id;
      CREATE UNIQUE INDEX ON ops_orders_per_customer (customer_id);
      CREATE TABLE ops_sales (region text NOT NULL, amount int NOT NULL) PARTITION BY LIST (region);
      CREATE TABLE ops_sales_eu PARTITION OF ops_sales FOR VALUES IN ('eu');
      CREATE MATERIALIZED VIEW ops_sales_by_region AS
        SELECT region, sum(amount) AS total FROM ops_sales GROUP BY region;
      CREATE UNIQUE INDEX ON ops_sales_by_region (region);
      SELECT mvrefresh.watch('monthly_product_sales');
      SELECT mvrefresh.watch('ops_dup');
      -- a 1 ms target that no refresh can meet, at a 5% budget: misses, and an unmet target
      SELECT mvrefresh.watch('ops_orders_per_customer', p_max_staleness_ms => 1, p_refresh_budget => 0.05);
      SELECT mvrefresh.watch('ops_sales_by_region');
      CREATE MATERIALIZED VIEW ops_customer_totals AS
        SELECT customer_id, count(*) AS orders FROM orders GROUP BY customer_id;
      CREATE UNIQUE INDEX ON ops_customer_totals (customer_id);`);
    const watched = runCli(['watch', VIEWS.incremental, '--incremental'], { DATABASE_URL: db.url });
    expect((await watched.exit).code, watched.text()).toBe(0);
    d = await startDaemon(db.url, { vacuumCheckIntervalMs: 2000, driftCheckIntervalMs: 2000 });
    prom = await startPrometheus(prometheus!, [`127.0.0.1:${d.running.port}`]);
    writer = startWriter();
    // duplicate rows: every refresh of ops_dup fails with 23505 from here on
    await db.exec('INSERT INTO ops_src VALUES (1, 2)');
    // a partition created under a watched view: drift, repaired by the daemon
    await db.exec("CREATE TABLE ops_sales_us PARTITION OF ops_sales FOR VALUES IN ('us')");
    await db.exec("INSERT INTO ops_sales VALUES ('us', 5)");
    const url = prom.url;
    const has = async (query: string) => (await instantQuery(url, query)).result.length > 0;
    await waitFor('Prometheus to have scraped the daemon', () => has('up{job="mvrefresh"} == 1'));
    await waitFor('3 failures in a row of the failing view', () =>
      has(`mvrefresh_view_consecutive_failures{view="${VIEWS.failing}"} >= 3`),
    );
    // (its series start at 0 when the view is loaded: a repair is an increment)
    await waitFor('the drift repair in the scrape', () =>
      has(`mvrefresh_source_drift_total{view="${VIEWS.drifting}"} > 0`),
    );
    await waitFor('an apply of the incremental view in the scrape', () =>
      has(`mvrefresh_apply_keys_count{view="${VIEWS.incremental}"} > 0`),
    );
    await waitFor('target misses in the scrape', () =>
      has(`mvrefresh_view_target_misses_total{view="${VIEWS.tight}"}`),
    );
    for (const rule of (await alertRules()).filter((r) => TRUE_IN_SCENARIO.has(r.alert)))
      await waitFor(`the expression of ${rule.alert} to be true`, () => has(rule.expr));
    await waitFor('the dead rows of the catalogs in the scrape', () => has('mvrefresh_table_dead_rows'));
    await waitFor('refresh durations of every succeeding view over the rate interval', () =>
      has(`count(increase(mvrefresh_refresh_duration_seconds_count[${RATE_INTERVAL}]) > 0) >= 3`),
    );
  }, 120_000);

  afterAll(async () => {
    await writer?.stop();
    await prom?.stop();
    await d?.stop();
  });

  it('offers every watched view in the view variable', async () => {
    const variable = dashboard.templating.list.find((v) => v.name === 'view');
    expect(variable?.allValue).toBe(ALL_VIEWS);
    const query = typeof variable?.query === 'string' ? variable.query : variable?.query?.query;
    const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(query ?? '');
    expect(m, `unexpected variable query ${query}`).not.toBeNull();
    const res = await fetch(
      `${prom!.url}/api/v1/label/${m![2]}/values?${new URLSearchParams({ 'match[]': m![1]! })}`,
    );
    const body = (await res.json()) as { data: string[] };
    expect([...body.data].sort()).toEqual(Object.values(VIEWS).sort());
  });

  it("returns series with every label of its legend for each panel's query", async () => {
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThan(0);
    const empty: string[] = [];
    for (const panel of panels) {
      expect(panel.targets?.length, `${panel.title} has no query`).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) {
        const data = await instantQuery(prom!.url, expand(target.expr, ALL_VIEWS));
        expect(data.resultType, `${panel.title}: ${target.expr}`).toBe('vector');
        if (data.result.length === 0) {
          empty.push(`${panel.title}: ${target.expr}`);
          continue;
        }
        for (const series of data.result)
          for (const label of legendLabels(target.legendFormat))
            expect(series.metric[label], `${panel.title}: ${target.expr} lacks label ${label}`).toBeTruthy();
      }
    }
    expect(empty, 'panel queries without data').toEqual([]);
  });

  it('narrows every query with a view filter to the chosen view', async () => {
    for (const panel of dashboard.panels)
      for (const target of panel.targets ?? []) {
        if (!target.expr.includes('$view')) continue;
        const all = await instantQuery(prom!.url, expand(target.expr, ALL_VIEWS));
        // a view the panel shows when all are chosen, as the variable would offer it (a regex, escaped)
        // (a panel that sums over views, by outcome say, is narrowed to the shop's view)
        const view = all.result.map((s) => s.metric['view']).find(Boolean) ?? VIEWS.shop;
        const data = await instantQuery(prom!.url, expand(target.expr, view.replaceAll('.', '\\\\.')));
        expect(data.result.length, `${panel.title}: ${target.expr}`).toBeGreaterThan(0);
        for (const series of data.result as Sample[])
          if (series.metric['view'] !== undefined) expect(series.metric['view']).toBe(view);
      }
  });

  it("counts the failing view's cycles under its SQLSTATE (23505, duplicate rows for the unique index)", async () => {
    const { result } = await instantQuery(
      prom!.url,
      `mvrefresh_refresh_failures_total{view="${VIEWS.failing}", outcome="failed"}`,
    );
    expect(result.map((s) => s.metric['sqlstate'])).toEqual(['23505']);
    expect(Number(result[0]!.value[1])).toBeGreaterThanOrEqual(3);
  });

  it('evaluates every alert expression: series with the labels its annotations use when true, metrics present in the scrape when empty', async () => {
    const rules = await alertRules();
    const text = await readFile(join(packageRoot, 'deploy', 'prometheus', 'alerts.yaml'), 'utf8');
    for (const rule of rules) {
      const data = await instantQuery(prom!.url, rule.expr);
      if (TRUE_IN_SCENARIO.has(rule.alert)) expect(data.result.length, rule.alert).toBeGreaterThan(0);
      // the labels its annotations print ($labels.x), from the rule's own block of alerts.yaml
      const block = text.slice(text.indexOf(`alert: ${rule.alert}`)).split(/\n\s*- alert:/)[0]!;
      const used = [...block.matchAll(/\$labels\.(\w+)/g)].map((m) => m[1]!);
      for (const series of data.result)
        for (const label of used) expect(series.metric[label], `${rule.alert} lacks ${label}`).toBeTruthy();
      const names = metricNames(rule.expr);
      expect(names.length, `${rule.alert}: no metric found in ${rule.expr}`).toBeGreaterThan(0);
      for (const name of names)
        expect(
          (await instantQuery(prom!.url, `count({__name__="${name}"})`)).result.length,
          `${rule.alert} reads ${name}, which the scrape lacks`,
        ).toBeGreaterThan(0);
    }
  });

  it('loads every rule into Prometheus, which evaluates each without error', async () => {
    const names = (await alertRules()).map((r) => r.alert);
    await waitFor('every rule evaluated', async () => {
      const res = await fetch(`${prom!.url}/api/v1/rules?type=alert`);
      const body = (await res.json()) as {
        data: { groups: { rules: { name: string; health: string; lastError?: string; state: string }[] }[] };
      };
      const rules = body.data.groups.flatMap((g) => g.rules);
      expect(rules.map((r) => r.name).sort()).toEqual([...names].sort());
      for (const r of rules) expect(r.lastError ?? '', r.name).toBe('');
      // the ones true here wait out their `for` duration as pending
      return (
        rules.every((r) => r.health === 'ok') &&
        rules.filter((r) => TRUE_IN_SCENARIO.has(r.name)).every((r) => r.state === 'pending')
      );
    });
  });
});
