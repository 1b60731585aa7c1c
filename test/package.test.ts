import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/paths.js';

const run = promisify(execFile);

describe('the published package', () => {
  it('holds what production runs: no demo, no embedded PostgreSQL, no shop, no schema dump', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: packageRoot,
      timeout: 60_000,
    });
    const [pack] = JSON.parse(stdout) as { files: { path: string }[] }[];
    const paths = pack!.files.map((f) => f.path);
    expect(paths).toContain('dist/src/bin.js');
    expect(paths).toContain('migrations/0001_schema.sql');
    expect(paths.filter((p) => /demo|embedded|shop|schema-dump/.test(p))).toEqual([]);
  });
});
