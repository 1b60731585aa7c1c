/**
 * A task that runs one at a time and then re-arms itself: a request while a run is in progress is kept (the
 * latest reason wins) and runs right after it; otherwise `next` names the reason and delay of the following
 * run. Requests before start() or after stop() are ignored. The task must not throw.
 */
export class SerialTask<Reason, Result> {
  private running: Promise<void> | undefined;
  private again: Reason | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;

  constructor(
    private readonly task: (reason: Reason) => Promise<Result>,
    private readonly next: (result: Result) => { reason: Reason; afterMs: number },
  ) {}

  /** Accepts requests from now on; false when it already did. */
  start(): boolean {
    if (!this.stopped) return false;
    this.stopped = false;
    return true;
  }

  /** Runs now, or right after the run in progress. */
  request(reason: Reason): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = reason;
      return;
    }
    clearTimeout(this.timer);
    this.running = this.task(reason).then((result) => {
      this.running = undefined;
      if (this.stopped) return;
      const again = this.again;
      this.again = undefined;
      if (again !== undefined) return this.request(again);
      const { reason: nextReason, afterMs } = this.next(result);
      this.timer = setTimeout(() => this.request(nextReason), afterMs);
    });
  }

  /** The run in progress, if any. */
  get current(): Promise<void> | undefined {
    return this.running;
  }

  /** Idempotent; waits for the run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
