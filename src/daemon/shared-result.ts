/**
 * One result shared by every caller for ttlMs after it settled, with at most one load in flight however
 * many callers ask: a flood of requests costs one query per ttlMs. A failure is shared the same way, so
 * that an unreachable database is not asked once per request either.
 */
export class SharedResult<T> {
  private inFlight: Promise<T> | undefined;
  private settled: { at: number; value: Promise<T> } | undefined;
  private lastSuccessAt: number | undefined;

  constructor(
    private readonly load: () => Promise<T>,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(): Promise<T> {
    if (this.settled && this.now() - this.settled.at < this.ttlMs) return this.settled.value;
    this.inFlight ??= this.start();
    return this.inFlight;
  }

  /**
   * True when a load succeeded within maxAgeMs and no later load failed; starts a new load when the shared
   * one expired, without waiting for it (a probe answers from the last result while the next is on its way).
   */
  succeededWithin(maxAgeMs: number): boolean {
    this.get().catch(() => undefined);
    return this.lastSuccessAt !== undefined && this.now() - this.lastSuccessAt < maxAgeMs;
  }

  private start(): Promise<T> {
    const value = this.load();
    const settle = (ok: boolean) => {
      this.settled = { at: this.now(), value };
      this.inFlight = undefined;
      this.lastSuccessAt = ok ? this.now() : undefined;
    };
    value.then(
      () => settle(true),
      () => settle(false),
    );
    return value;
  }
}
