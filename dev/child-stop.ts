import type { ChildProcess } from 'node:child_process';

/**
 * Ends a server process started by the dev tools: SIGTERM, then SIGKILL if it has not exited within
 * timeoutMs. `exited` must have been created right after spawn (an exit before the call is not missed).
 */
export async function stopChild(
  child: ChildProcess,
  exited: Promise<void>,
  timeoutMs: number,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}
