/**
 * The previous release (0.1.0: one trigger per view and table), installed from the packed release kept
 * with the tests, for benches that measure the current write path next to it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/paths.js';

const run = promisify(execFile);
const PREVIOUS = join(packageRoot, 'test', 'fixtures', 'releases', 'mvrefresh-0.1.0.tgz');

/** Unpacks the release, runs fn with the path of its CLI, and removes it again. */
export async function withPreviousRelease<T>(fn: (bin: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'mvrefresh-release-'));
  try {
    await run('tar', ['-xzf', PREVIOUS, '-C', dir]);
    await symlink(join(packageRoot, 'node_modules'), join(dir, 'package', 'node_modules'));
    return await fn(join(dir, 'package', 'dist', 'src', 'bin.js'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
