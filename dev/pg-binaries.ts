import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, cp, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { realpathSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';

/**
 * `binDir` when `user` can run the binaries there, else a copy of the installation (bin, lib, share) that
 * it can run. As root, PostgreSQL runs as an unprivileged user, and a checkout inside a private directory
 * (/root is 0700) hides node_modules from that user: initdb would fail with EACCES. The copy lives in the
 * temporary directory, owned by root and not writable by others, keyed by the source and its binary, so
 * that every later start reuses it.
 */
export async function reachableBinDir(
  binDir: string,
  user: { uid: number; gid: number } | undefined,
): Promise<string> {
  if (!user || runs(binDir, user)) return binDir;
  const install = dirname(realpathSync(binDir));
  const postgres = statSync(join(binDir, 'postgres'));
  const key = createHash('sha256')
    .update(`${install}\0${postgres.size}\0${postgres.mtimeMs}`)
    .digest('hex')
    .slice(0, 16);
  const target = join(tmpdir(), `mvrefresh-postgres-${key}`);
  const copyBin = join(target, basename(binDir));
  if (await trusted(target)) {
    if (runs(copyBin, user)) return copyBin;
    await rm(target, { recursive: true, force: true });
  }
  const staging = await mkdtemp(`${target}.tmp-`);
  await cp(install, staging, { recursive: true, verbatimSymlinks: true });
  await chmod(staging, 0o755);
  try {
    await rename(staging, target);
  } catch {
    // another process made it meanwhile: use theirs
    await rm(staging, { recursive: true, force: true });
  }
  if (!(await trusted(target)) || !runs(copyBin, user))
    throw new Error(
      `PostgreSQL runs as an unprivileged OS user (uid ${user.uid}), who cannot run the binaries in ${binDir} ` +
        `nor a copy in ${target}: make the checkout's directories traversable (chmod o+x on each parent) ` +
        'or set TEST_DATABASE_URL to a server of your own',
    );
  return copyBin;
}

/** `postgres --version` runs as `user`. */
function runs(binDir: string, user: { uid: number; gid: number }): boolean {
  const r = spawnSync(join(binDir, 'postgres'), ['--version'], {
    uid: user.uid,
    gid: user.gid,
    cwd: '/',
    stdio: 'ignore',
  });
  return r.status === 0;
}

/** The directory exists, belongs to root and nobody else can write to it. */
async function trusted(dir: string): Promise<boolean> {
  try {
    const s = await stat(dir);
    return s.isDirectory() && s.uid === 0 && (s.mode & 0o022) === 0;
  } catch {
    return false;
  }
}
