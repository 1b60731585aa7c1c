import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ALERT_TESTS_DIR, alertRules, prometheusBinary } from './prometheus.js';

/**
 * Every alert of deploy/prometheus/alerts.yaml has its own promtool unit test file,
 * deploy/prometheus/tests/<alert>.test.yaml, with at least one evaluation where it fires and one where it
 * does not; `promtool test rules` runs them all. A new alert needs only its new file.
 */
const promtool = prometheusBinary('promtool', 'test/ops/alert-rules.test.ts');
const run = promisify(execFile);

interface RuleTestFile {
  rule_files: string[];
  tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
}

async function testFiles(): Promise<string[]> {
  return (await readdir(ALERT_TESTS_DIR)).filter((f) => f.endsWith('.test.yaml')).sort();
}

describe.skipIf(!promtool)('the alert rules, unit-tested with promtool', () => {
  it('has a test file for every alert, loading alerts.yaml, with an evaluation where the alert fires and one where it does not', async () => {
    const files = await testFiles();
    for (const { alert } of await alertRules()) {
      const file = `${alert}.test.yaml`;
      expect(files, `deploy/prometheus/tests/${file} is missing`).toContain(file);
      const doc = parse(await readFile(join(ALERT_TESTS_DIR, file), 'utf8')) as RuleTestFile;
      expect(doc.rule_files).toEqual(['../alerts.yaml']);
      const evaluations = doc.tests
        .flatMap((t) => t.alert_rule_test ?? [])
        .filter((e) => e.alertname === alert);
      expect(
        evaluations.some((e) => (e.exp_alerts ?? []).length > 0),
        `${file}: no evaluation where ${alert} fires`,
      ).toBe(true);
      expect(
        evaluations.some((e) => (e.exp_alerts ?? []).length === 0),
        `${file}: no evaluation where ${alert} does not fire`,
      ).toBe(true);
    }
  });

  it('passes promtool test rules for every test file', async () => {
    const files = await testFiles();
    expect(files.length).toBeGreaterThan(0);
    const result = await run(promtool!, ['test', 'rules', ...files], { cwd: ALERT_TESTS_DIR }).then(
      (r) => ({ ok: true, out: r.stdout + r.stderr }),
      (err: { stdout?: string; stderr?: string }) => ({
        ok: false,
        out: `${err.stdout ?? ''}${err.stderr ?? ''}`,
      }),
    );
    expect(result.ok, result.out).toBe(true);
  });

  it('passes promtool check rules for alerts.yaml', async () => {
    await run(promtool!, ['check', 'rules', '../alerts.yaml'], { cwd: ALERT_TESTS_DIR });
  });
});
