/**
 * One result shared by every caller for ttlMs after it settled, with at most one load in flight however
 * many callers ask: a flood of requests costs one query per ttlMs. A failure is shared the same way, so
 * that an unreachable database is not asked once per request either.
 */
export class SharedResult<T> {
  private inFlight: Promise<T> | undefined;
  private settled: { at: number; value: Promise<T> } | undefined;
  private lastSuccessAt: number | undefined;
  private failure: { error: unknown } | undefined;

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

  /** The error of the last settled load when it failed; undefined before the first and after a success. */
  get lastFailure(): { error: unknown } | undefined {
    return this.failure;
  }

  /** When a load last succeeded (epoch ms), whatever failed since. */
  get lastSucceededAt(): number | undefined {
    return this.everSucceededAt;
  }

  private everSucceededAt: number | undefined;

  private start(): Promise<T> {
    const value = this.load();
    const settle = (ok: boolean, error?: unknown) => {
      this.settled = { at: this.now(), value };
      this.inFlight = undefined;
      this.lastSuccessAt = ok ? this.now() : undefined;
      if (ok) this.everSucceededAt = this.now();
      this.failure = ok ? undefined : { error };
    };
    value.then(
      () => settle(true),
      (err: unknown) => settle(false, err),
    );
    return value;
  }
}
