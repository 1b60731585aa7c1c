/**
 * A task that runs one at a time and then re-arms itself: a request while a run is in progress is kept (the
 * latest reason wins) and runs right after it; otherwise `next` names the reason and delay of the following
 * run. Requests before start() or after stop() are ignored. The task must not throw.
 */
export class SerialTask<Reason, Result> {
  private running: Promise<void> | undefined;
  private again: Reason | undefined;
  private timer: NodeJS.Timeout | undefined;
  private off = true;

  constructor(
    private readonly task: (reason: Reason) => Promise<Result>,
    private readonly next: (result: Result) => { reason: Reason; afterMs: number },
  ) {}

  /** Accepts requests from now on; false when it already did. */
  start(): boolean {
    if (!this.off) return false;
    this.off = false;
    return true;
  }

  /** Runs now, or right after the run in progress. */
  request(reason: Reason): void {
    if (this.off) return;
    if (this.running) {
      this.again = reason;
      return;
    }
    clearTimeout(this.timer);
    this.running = this.task(reason).then((result) => {
      this.running = undefined;
      if (this.off) return;
      const again = this.again;
      this.again = undefined;
      if (again !== undefined) return this.request(again);
      const { reason: nextReason, afterMs } = this.next(result);
      this.requestAfter(nextReason, afterMs);
    });
  }

  /** Runs after afterMs, unless a request runs it first (which re-arms the timer by `next`). */
  requestAfter(reason: Reason, afterMs: number): void {
    if (this.off || this.running) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.request(reason), afterMs);
  }

  /** True before start() and from stop() on: a run in progress may check it to end early. */
  get stopped(): boolean {
    return this.off;
  }

  /** The run in progress, if any. */
  get current(): Promise<void> | undefined {
    return this.running;
  }

  /** Idempotent; waits for the run in progress. */
  async stop(): Promise<void> {
    this.off = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
