/**
 * The arithmetic of a refresh budget that the daemon's plan (src/daemon/refresh/plan.ts) and `mvrefresh
 * status` share: the shortest interval between two refreshes that the budget allows, and the conflict
 * with a staleness target in words.
 */
import { formatMs } from './duration.js';

export function minInterval(expectedMs: number, budget: number): number {
  return expectedMs / budget;
}

/**
 * The conflict in words: "refresh takes 0.8 s; within a 20% budget it can run every 4 s; target 2 s not met:
 * a write can wait 4.8 s (that interval plus the refresh)". What misses the target is the achievable
 * staleness, interval plus refresh, not the interval alone (costMs: the mean cost of a refresh; expectedMs:
 * what the next one is expected to take, the cost when not given).
 */
export function describeConflict(
  costMs: number,
  budget: number,
  targetMs: number,
  expectedMs: number = costMs,
): string {
  const interval = minInterval(costMs, budget);
  return (
    `refresh takes ${formatMs(costMs)}; within a ${Math.round(budget * 100)}% budget it can run every ` +
    `${formatMs(interval)}; target ${formatMs(targetMs)} not met: a write can wait ` +
    `${formatMs(interval + expectedMs)} (that interval plus the refresh)`
  );
}
