/**
 * Runs an action at most once per intervalMs however often it is requested: at once when the last run is
 * older than that, else once when the interval has passed, for every request that came meanwhile. For
 * what any role that can connect may request through a NOTIFY (a drift check, a reload of the views):
 * a flood of requests costs one run per interval.
 */
export class RateLimit {
  private last = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private pending = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly action: (coalesced: number) => void,
    private readonly now: () => number = Date.now,
  ) {}

  request(): void {
    this.pending += 1;
    if (this.timer) return;
    const wait = this.last + this.intervalMs - this.now();
    if (wait <= 0) return this.run();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.run();
    }, wait);
  }

  /** Drops a run that waits for its interval. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = 0;
  }

  private run(): void {
    const coalesced = this.pending;
    this.pending = 0;
    this.last = this.now();
    this.action(coalesced);
  }
}
