/**
 * At most one log line per key and interval: a flood of identical failures (every request of an HTTP flood
 * failing the same way) logs one line, and the next one says how many were left out.
 */
export class LogThrottle {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Undefined when this occurrence is left out; otherwise how many were left out since the last line. */
  admit(key: string): number | undefined {
    const t = this.now();
    const entry = this.last.get(key);
    if (entry && t - entry.at < this.intervalMs) {
      entry.suppressed += 1;
      return undefined;
    }
    const suppressed = entry?.suppressed ?? 0;
    // keys are few (an event and an error text); forget old ones so that varied texts cannot grow the map
    if (this.last.size > 100) this.last.clear();
    this.last.set(key, { at: t, suppressed: 0 });
    return suppressed;
  }
}
