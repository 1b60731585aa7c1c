import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, describeSchema, loadConfig } from '../src/config.js';
import { packageRoot } from '../src/paths.js';

const URL_ENV = { DATABASE_URL: 'postgres://u:pw@localhost:5432/db' };

describe('configuration', () => {
  it('validates once into a frozen object with the defaults', () => {
    const config = loadConfig({ env: URL_ENV });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.listener)).toBe(true);
    expect(config.maxStalenessMs).toBe(1000);
    expect(config.refreshBudget).toBe(0.2);
    expect(config.http.port).toBe(9187);
  });

  it('takes the environment over the file', () => {
    const file = join(packageRoot, 'config', 'mvrefresh.example.json');
    const config = loadConfig({ env: { ...URL_ENV, MVREFRESH_CONFIG: file, MVREFRESH_CONCURRENCY: '5' } });
    expect(config.concurrency).toBe(5);
    expect(config.databaseUrl).toBe(URL_ENV.DATABASE_URL);
  });

  it.each([
    [{ MVREFRESH_CONCURRENCY: '0' }, /concurrency.*integer from 1 to 1000/s],
    [{ MVREFRESH_HTTP_PORT: 'http' }, /http\.port/],
    [{ MVREFRESH_LOG_LEVEL: 'loud' }, /logLevel/],
    [{ MVREFRESH_MAX_STALENESS: 'soon' }, /maxStalenessMs.*duration/],
    [{ MVREFRESH_REFRESH_BUDGET: '0' }, /refreshBudget.*share/],
    [{ DATABASE_URL: 'mysql://root:topsecret@h/db' }, /databaseUrl/],
    [{ MVREFRESH_LISTEN_URL: 'mysql://root:topsecret@h/db' }, /listenUrl/],
    [{ MVREFRESH_LISTEN_URL: 'postgres://root:topsecret@h/db?sslmode=bogus' }, /listenUrl.*sslmode/],
    [{ MVREFRESH_CONFIG: '/nonexistent.json' }, /does not exist/],
  ])('refuses %j with a message naming the key', (env, message) => {
    expect(() => loadConfig({ env: { ...URL_ENV, ...env } })).toThrow(ConfigError);
    try {
      loadConfig({ env: { ...URL_ENV, ...env } });
    } catch (err) {
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain('topsecret');
    }
  });

  it('gives the LISTEN connection the database URL unless MVREFRESH_LISTEN_URL names another', () => {
    expect(loadConfig({ env: URL_ENV }).listenUrl).toBe(URL_ENV.DATABASE_URL);
    const direct = 'postgres://u:pw@db-direct:5432/db';
    expect(loadConfig({ env: { ...URL_ENV, MVREFRESH_LISTEN_URL: direct } }).listenUrl).toBe(direct);
  });

  it('accepts durations and shares in words', () => {
    const config = loadConfig({
      env: { ...URL_ENV, MVREFRESH_MAX_STALENESS: '2.5s', MVREFRESH_REFRESH_BUDGET: '25%' },
    });
    expect(config.maxStalenessMs).toBe(2500);
    expect(config.refreshBudget).toBe(0.25);
  });

  it('keeps the retired debounce and max wait variables working, with a deprecation warning each', () => {
    const warnings: string[] = [];
    const config = loadConfig({
      env: { ...URL_ENV, MVREFRESH_DEBOUNCE_MS: '500', MVREFRESH_MAX_WAIT_MS: '5000' },
      onDeprecation: (m) => warnings.push(m),
    });
    expect(config.maxStalenessMs).toBe(5000);
    expect(warnings).toEqual([
      expect.stringMatching(/MVREFRESH_DEBOUNCE_MS is deprecated and ignored/),
      expect.stringMatching(/MVREFRESH_MAX_WAIT_MS is deprecated: it is used as maxStalenessMs/),
    ]);
    // a target given explicitly wins
    const explicit = loadConfig({
      env: { ...URL_ENV, MVREFRESH_MAX_WAIT_MS: '5000', MVREFRESH_MAX_STALENESS: '3s' },
    });
    expect(explicit.maxStalenessMs).toBe(3000);
  });

  it('keeps MVREFRESH_MAX_WAIT_MS=0 (no wait) meaning the smallest target, 1 ms, not a refusal about maxStalenessMs', () => {
    const warnings: string[] = [];
    const config = loadConfig({
      env: { ...URL_ENV, MVREFRESH_MAX_WAIT_MS: '0' },
      onDeprecation: (m) => warnings.push(m),
    });
    expect(config.maxStalenessMs).toBe(1);
    expect(warnings).toEqual([expect.stringMatching(/MVREFRESH_MAX_WAIT_MS is deprecated/)]);
  });

  it('refuses a bad MVREFRESH_MAX_WAIT_MS naming itself and what replaces it', () => {
    for (const value of ['-1', 'soon', '86400001'])
      expect(() => loadConfig({ env: { ...URL_ENV, MVREFRESH_MAX_WAIT_MS: value } }), value).toThrow(
        /MVREFRESH_MAX_WAIT_MS \(deprecated\) must be a whole number of milliseconds from 0 to 86400000, got .*; set maxStalenessMs \(MVREFRESH_MAX_STALENESS\), which replaces it/,
      );
  });

  it('keeps the file key maxWaitMs meaning a target (0: the smallest), and refuses a bad one naming the key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mvrefresh-config-'));
    const file = join(dir, 'retired.json');
    writeFileSync(file, '{"maxWaitMs": 0, "debounceMs": 0}');
    expect(loadConfig({ env: { ...URL_ENV, MVREFRESH_CONFIG: file } }).maxStalenessMs).toBe(1);
    writeFileSync(file, '{"maxWaitMs": -5}');
    expect(() => loadConfig({ env: { ...URL_ENV, MVREFRESH_CONFIG: file } })).toThrow(
      /key maxWaitMs in .*retired\.json \(deprecated\) must be .*; set maxStalenessMs/,
    );
  });

  it('ignores MVREFRESH_DEBOUNCE_MS whatever its value (0, or one it never accepted), with a deprecation warning', () => {
    for (const value of ['0', '250', 'soon']) {
      const warnings: string[] = [];
      const config = loadConfig({
        env: { ...URL_ENV, MVREFRESH_DEBOUNCE_MS: value },
        onDeprecation: (m) => warnings.push(m),
      });
      expect(config.maxStalenessMs, value).toBe(1000);
      expect(warnings, value).toEqual([
        expect.stringMatching(/MVREFRESH_DEBOUNCE_MS is deprecated and ignored/),
      ]);
    }
  });

  it('refuses a configuration file that is not a regular file, too large, or not JSON, naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mvrefresh-config-'));
    const fifo = join(dir, 'fifo.json');
    execFileSync('mkfifo', [fifo]);
    const big = join(dir, 'big.json');
    writeFileSync(big, `{"logLevel":"info","pad":"${'x'.repeat(2 * 1024 * 1024)}"}`);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{"logLevel": "info",\n  "concurrency": }');
    for (const [file, message] of [
      ['/dev/zero', /\/dev\/zero \(MVREFRESH_CONFIG\) is not a regular file/],
      [fifo, /fifo\.json \(MVREFRESH_CONFIG\) is not a regular file/],
      [dir, /is not a regular file/],
      [big, /big\.json \(MVREFRESH_CONFIG\) is \d+ bytes; the limit is 1048576/],
      [broken, /broken\.json \(MVREFRESH_CONFIG\) is not valid JSON at line 2, column 18 \(position 38\)/],
    ] as const)
      expect(() => loadConfig({ env: { ...URL_ENV, MVREFRESH_CONFIG: file } }), file).toThrow(message);
  });

  it('trims the admin token (a mounted secret ends with a newline) and refuses one of only whitespace', () => {
    expect(loadConfig({ env: { ...URL_ENV, MVREFRESH_ADMIN_TOKEN: 's3cret\n' } }).http.adminToken).toBe(
      's3cret',
    );
    expect(() => loadConfig({ env: { ...URL_ENV, MVREFRESH_ADMIN_TOKEN: ' \n\t' } })).toThrow(
      /http\.adminToken.*only whitespace/s,
    );
  });

  it('refuses an empty HTTP host instead of listening on every interface', () => {
    expect(() => loadConfig({ env: { ...URL_ENV, MVREFRESH_HTTP_HOST: '' } })).toThrow(/http\.host.*empty/s);
  });

  it('refuses an unknown sslmode and a missing certificate file in the database URL', () => {
    expect(() => loadConfig({ env: { DATABASE_URL: `${URL_ENV.DATABASE_URL}?sslmode=bogus` } })).toThrow(
      /sslmode="bogus" is not one of/,
    );
    expect(() =>
      loadConfig({
        env: { DATABASE_URL: `${URL_ENV.DATABASE_URL}?sslmode=verify-full&sslrootcert=/nope/ca.pem` },
      }),
    ).toThrow(/sslrootcert=\/nope\/ca\.pem is not a readable regular file/);
  });

  it('does not modify the environment object it is given', () => {
    const env = { ...URL_ENV, MVREFRESH_CONCURRENCY: '3' };
    const before = JSON.stringify(env);
    loadConfig({ env });
    expect(JSON.stringify(env)).toBe(before);
  });

  it('config/README.md documents exactly the schema: every key with its variable, default and meaning', async () => {
    const readme = await readFile(join(packageRoot, 'config', 'README.md'), 'utf8');
    const table = readme
      .split('\n')
      .filter((l) => l.startsWith('| ') && !l.startsWith('| key') && !l.startsWith('| ---'))
      .map((l) =>
        l
          .slice(1, -1)
          .split('|')
          .map((c) => c.trim()),
      );
    const expected = describeSchema().map((r) => [
      r.key,
      r.env,
      // secrets have no default to show: the table says whether one is needed
      r.default === '(secret)' ? (r.key === 'databaseUrl' ? '(required)' : '(empty)') : String(r.default),
      r.doc,
    ]);
    expect(table).toEqual(expected);
  });

  it('documents every key in config/README.md and the example file', async () => {
    const readme = await readFile(join(packageRoot, 'config', 'README.md'), 'utf8');
    const example = JSON.parse(
      await readFile(join(packageRoot, 'config', 'mvrefresh.example.json'), 'utf8'),
    ) as Record<string, unknown>;
    for (const { key, env } of describeSchema()) {
      expect(readme).toMatch(new RegExp(`\\|\\s*${key.replace('.', '\\.')}\\s*\\|\\s*${env}\\s*\\|`));
      const value = key
        .split('.')
        .reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], example);
      expect(value, key).not.toBeUndefined();
    }
  });
});
