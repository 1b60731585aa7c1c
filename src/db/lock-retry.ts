import { SqlState, isPgError } from './errors.js';

/** How long watch / unwatch keep retrying a trigger change that cannot get its table lock. */
export const DDL_RETRY_DEADLINE_MS = 60_000;
const DDL_RETRY_BASE_MS = 100;
const DDL_RETRY_MAX_MS = 2000;

/**
 * Runs a statement that creates or drops triggers, again and again while it fails on its lock_timeout
 * (55P03): CREATE TRIGGER waits for a SHARE ROW EXCLUSIVE lock, and the application's writers queue
 * behind a waiting lock, so the routines give up after a short lock_timeout and the caller retries with
 * jittered backoff rather than hold writers up behind a long transaction.
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
      if (!isPgError(err) || err.code !== SqlState.lockNotAvailable || Date.now() >= deadline) throw err;
      const cap = Math.min(DDL_RETRY_MAX_MS, DDL_RETRY_BASE_MS * 2 ** Math.min(attempt, 10));
      await new Promise((resolve) => setTimeout(resolve, cap / 2 + Math.random() * (cap / 2)));
    }
  }
}
