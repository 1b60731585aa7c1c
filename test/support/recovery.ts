/**
 * Prints how long the daemon took from a fault's end (or start) to every view fresh again, one line per
 * case, so that a run of the fault suite reports its worst recovery times (grep `recovery:`).
 */
export function reportRecovery(fault: string, sinceMs: number): number {
  const ms = Date.now() - sinceMs;
  process.stderr.write(`recovery: ${fault}: ${ms} ms\n`);
  return ms;
}
