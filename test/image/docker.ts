import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);
/** A docker command that takes longer (a build, a pull) is killed and reported. */
const DOCKER_TIMEOUT_MS = 900_000;
const OUTPUT_LIMIT = 64 * 1024 * 1024;

/** Runs the docker CLI; rejects with its stderr when it fails. */
export async function docker(args: string[]): Promise<string> {
  try {
    const { stdout } = await exec('docker', args, { timeout: DOCKER_TIMEOUT_MS, maxBuffer: OUTPUT_LIMIT });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    // a build reports the failing step's output on stdout
    const tail = (e.stdout ?? '').trim().split('\n').slice(-20).join('\n');
    throw new Error(`docker ${args.join(' ')} failed: ${(e.stderr || e.message).trim()}\n${tail}`);
  }
}

/** Throws one sentence that says what to do when no Docker engine answers. */
export async function requireDocker(): Promise<void> {
  try {
    await exec('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 30_000 });
  } catch (err) {
    throw new Error(
      `this test needs a running Docker engine (docker info failed: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}); on Debian: apt-get install docker.io, then start dockerd as root`,
    );
  }
}

/** docker image inspect: whether the image is present locally. */
export async function imagePresent(image: string): Promise<boolean> {
  return docker(['image', 'inspect', '--format', '{{.Id}}', image]).then(
    () => true,
    () => false,
  );
}
