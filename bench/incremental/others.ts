/**
 * Other work on the machine during bench:incremental's measured phases (bench/support/disturbance.ts):
 * each phase waits a while for the machine to be quiet, and reports the share of the CPU others used
 * during it, so that a phase disturbed by someone else can be told from a slow mode.
 */
import type pg from 'pg';
import { DisturbanceMeter, startMonitor, waitForQuiet } from '../support/disturbance.js';

/** Before a phase, wait this long at most for other processes to use less than QUIET_SHARE of the CPU. */
const QUIET_WAIT_S = 15;
const QUIET_SHARE = 0.05;

export class OtherWork {
  private constructor(private readonly meter: DisturbanceMeter) {}

  /** @param admin a superuser connection to the benchmarked server; @param ours the bench's databases */
  static async start(admin: pg.Client, ours: readonly string[]): Promise<OtherWork> {
    const meter = new DisturbanceMeter(admin, ours);
    await meter.start();
    return new OtherWork(meter);
  }

  async waitQuiet(): Promise<void> {
    await waitForQuiet(this.meter, {
      maxSeconds: QUIET_WAIT_S,
      isQuiet: (a, seconds) => DisturbanceMeter.share(a.ticks, seconds) < QUIET_SHARE,
    });
  }

  /** Starts measuring; stop() gives the share of the machine's CPU other processes used meanwhile. */
  watch(): { stop: () => Promise<number> } {
    const monitor = startMonitor(this.meter);
    return {
      stop: async () => {
        const { activity, seconds } = await monitor.stop();
        return DisturbanceMeter.share(activity.ticks, seconds);
      },
    };
  }
}
