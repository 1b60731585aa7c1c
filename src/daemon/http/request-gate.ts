/**
 * Paces the endpoints that clients may call in bulk (/views, /metrics): at most `perSecond` are answered
 * per second, in arrival order, after a burst of `burst`; the rest wait (an idle socket costs nothing) or,
 * beyond `maxWaiting`, are refused at once. A flood then costs the event loop a fixed rate of requests, so
 * that probes, which never pass the gate, are answered in time however many clients flood.
 */
export class RequestGate {
  private tokens: number;
  private readonly waiting: ((admitted: boolean) => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastRefill: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly maxWaiting: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.lastRefill = now();
  }

  /** Resolves true when the request may be answered, false when it must be refused (too many waiting). */
  admit(): Promise<boolean> {
    this.refill();
    if (this.waiting.length === 0 && this.tokens >= 1) {
      this.tokens -= 1;
      return Promise.resolve(true);
    }
    if (this.waiting.length >= this.maxWaiting) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.schedule();
    });
  }

  /** Lets every waiting request through (shutdown: the server closes their connections anyway). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const go of this.waiting.splice(0)) go(true);
  }

  /** Refuses the request that waited longest, to free its connection for another; false when none waits. */
  shedOldest(): boolean {
    const oldest = this.waiting.shift();
    oldest?.(false);
    return oldest !== undefined;
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.lastRefill) * this.perSecond) / 1000);
    this.lastRefill = t;
  }

  private schedule(): void {
    if (this.timer) return;
    const tick = Math.max(1, Math.ceil(1000 / this.perSecond));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refill();
      while (this.waiting.length > 0 && this.tokens >= 1) {
        this.tokens -= 1;
        this.waiting.shift()?.(true);
      }
      if (this.waiting.length > 0) this.schedule();
    }, tick);
    this.timer.unref();
  }
}
