import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';

/** The CLI of this tree, as `npm run build` leaves it. */
export const BIN = join(packageRoot, 'dist', 'src', 'bin.js');

export interface Proc {
  child: ChildProcess;
  out: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  text(): string;
  /** The JSON log lines so far. */
  events(): Record<string, unknown>[];
}

/** Spawns a built CLI (this tree's by default), as an operator would, with HTTP on a free local port. */
export function runCli(
  args: string[],
  env: Record<string, string>,
  bin: string = BIN,
  opts: { fdLimit?: number } = {},
): Proc {
  // a file descriptor limit needs a shell: Node cannot set its child's
  const [file, argv] =
    opts.fdLimit === undefined
      ? [process.execPath, [bin, ...args]]
      : ['/bin/sh', ['-c', `ulimit -n ${opts.fdLimit} && exec "$0" "$@"`, process.execPath, bin, ...args]];
  const child = spawn(file, argv, {
    env: {
      PATH: process.env['PATH'] ?? '',
      MVREFRESH_HTTP_PORT: '0',
      MVREFRESH_HTTP_HOST: '127.0.0.1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: string[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b.toString()));
  child.stderr!.on('data', (b: Buffer) => out.push(b.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const text = () => out.join('');
  const events = () =>
    text()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { child, out, exit, text, events };
}
