import { SqlState, isPgError } from './errors.js';

/** How long watch, unwatch and migrate keep retrying a change that cannot get its locks. */
export const DDL_RETRY_DEADLINE_MS = 60_000;
const DDL_RETRY_BASE_MS = 100;
const DDL_RETRY_MAX_MS = 2000;
const RETRIED: ReadonlySet<string> = new Set([SqlState.lockNotAvailable, SqlState.deadlockDetected]);

/**
 * Runs a transaction that creates or drops triggers, again and again while it fails on its lock_timeout
 * (55P03) or as a deadlock victim (40P01): CREATE TRIGGER waits for a SHARE ROW EXCLUSIVE lock (DROP
 * TRIGGER for ACCESS EXCLUSIVE), and the application's writers queue behind a waiting lock, so the change
 * gives up after a lock_timeout shorter than deadlock_timeout and the caller retries with jittered
 * backoff: it never holds writers up behind a long transaction, and a deadlock with a writer that takes
 * the same tables in another order always ends with mvrefresh's side giving way, never the application's.
 */
export async function retryOnLockTimeout<T>(
  fn: () => Promise<T>,
  deadlineMs: number = DDL_RETRY_DEADLINE_MS,
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn();
    } catch (err) {
      if (!isPgError(err) || !RETRIED.has(err.code ?? '') || Date.now() >= deadline) throw err;
      const cap = Math.min(DDL_RETRY_MAX_MS, DDL_RETRY_BASE_MS * 2 ** Math.min(attempt, 10));
      await new Promise((resolve) => setTimeout(resolve, cap / 2 + Math.random() * (cap / 2)));
    }
  }
}
