import { BACKOFF_JITTER } from '../../db/protocol.js';

/**
 * Exponential backoff, capped, with equal jitter: attempt n waits min(max, base * 2^(n-1)) times a factor
 * in [1 - BACKOFF_JITTER, 1], the formula routines/record_failure.sql uses (src/db/protocol.ts).
 */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.round(ceiling * (1 - BACKOFF_JITTER * random()));
}
