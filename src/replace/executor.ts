import type pg from 'pg';
import { settleClears } from '../db/clears.js';
import { SqlState, describeError, isPgError } from '../db/errors.js';
import { retryOnLockTimeout } from '../db/lock-retry.js';
import { inTransaction } from '../db/transaction.js';
import { copyIndexes, createNewVersion, populate, tempName } from './build.js';
import { ReplaceRefused, captureRelation, shownName } from './plan.js';
import { dropHalfBuilt, fail, release, setStep, type Request } from './requests.js';
import { replaceSql } from './sql.js';
import { swapOnce, type SwapResult } from './swap.js';

/** The steps of a replacement, in order; a test can pause the executor at the start of any of them. */
export const STEPS = ['plan', 'create', 'populate', 'indexes', 'catchup', 'swap'] as const;
export type Step = (typeof STEPS)[number];

/** Test hook: the executor stops at this step (MVREFRESH_TEST_REPLACE_PAUSE) so that a test can kill it. */
export const PAUSE_ENV = 'MVREFRESH_TEST_REPLACE_PAUSE';

export const DEFAULT_LOCK_TIMEOUT_MS = 500;
export const DEFAULT_SWAP_TIMEOUT_MS = 600_000;

export interface ExecuteOptions {
  /** The longest one swap attempt waits for a lock (readers queue behind a waiting swap that long). */
  lockTimeoutMs?: number | undefined;
  /** How long the swap is tried again while it cannot get its locks. */
  swapTimeoutMs?: number | undefined;
  /** Called at the start of each step; a test hook may never return. */
  atStep?: (step: Step) => Promise<void>;
  /** True when the executor is being stopped (daemon shutdown): the request goes back to pending. */
  stopping?: () => boolean;
}

export type Outcome =
  | ({ status: 'done'; durationMs: number } & SwapResult)
  | { status: 'failed'; error: string; durationMs: number }
  | { status: 'requeued'; durationMs: number };

/** A statement canceled (Ctrl-C of the CLI, a daemon stopping): pg_cancel_backend() */
const QUERY_CANCELED = '57014';
const RETRIED: ReadonlySet<string> = new Set([SqlState.lockNotAvailable, SqlState.deadlockDetected]);

/**
 * The swap, tried again with jittered backoff (retryOnLockTimeout) while an attempt fails on its
 * lock_timeout or as a deadlock victim, until timeoutMs; then refused.
 */
async function swapWithRetry(
  client: pg.ClientBase,
  input: Parameters<typeof swapOnce>[1],
  timeoutMs: number,
  atStep: (step: Step) => Promise<void>,
): Promise<SwapResult> {
  let attempts = 0;
  try {
    return await retryOnLockTimeout(async () => {
      attempts += 1;
      const t0 = Date.now();
      const result = await inTransaction(client, () =>
        swapOnce(client, { ...input, beforeCommit: () => atStep('swap') }),
      );
      return { ...result, swapAttempts: attempts, swapMs: Date.now() - t0 };
    }, timeoutMs);
  } catch (err) {
    if (isPgError(err) && RETRIED.has(err.code ?? ''))
      throw new ReplaceRefused(
        `could not take the locks of ${shownName(input.live.schema, input.live.name)} for the swap within ` +
          `${timeoutMs} ms (${attempts} attempts of at most ${input.lockTimeoutMs} ms each); the new version was dropped`,
      );
    throw err;
  }
}

/**
 * Carries out a claimed request on `client` (whose session holds the request's advisory lock): build the
 * new version beside the live view, then swap. On any failure the live view is as it was, the new version
 * is dropped, and the request is marked failed (or back to pending, when the executor is stopping).
 * Releases the request's advisory lock in every case.
 */
export async function execute(
  client: pg.ClientBase,
  request: Request,
  opts: ExecuteOptions = {},
): Promise<Outcome> {
  const t0 = Date.now();
  const atStep = async (step: Step) => {
    if (step !== 'swap') await setStep(client, request.id, step, step === 'create' ? temp : undefined);
    await opts.atStep?.(step);
  };
  const temp = tempName(request.view_name, request.id);
  try {
    await atStep('plan');
    const { rows } = await client.query<{ oid: string; kind: string }>(replaceSql.relation, [
      request.view_schema,
      request.view_name,
    ]);
    const found = rows[0];
    const name = shownName(request.view_schema, request.view_name);
    if (!found) throw new ReplaceRefused(`materialized view ${name} does not exist`);
    if (found.kind !== 'm') throw new ReplaceRefused(`${name} is not a materialized view`);
    const live = await captureRelation(client, found.oid);
    await atStep('create');
    await createNewVersion(client, live, temp, request.definition, request.search_path);
    await atStep('populate');
    await populate(client, live.schema, temp);
    await atStep('indexes');
    const indexNames = await copyIndexes(client, live, request.id, temp);
    // The build took as long as a refresh of the view: fill the new version once more, so that at the swap
    // its contents are as old as one refresh, as the live view's are (writes during this catch-up are
    // marked and refreshed after the swap). Nobody reads it yet: a plain REFRESH, no reader waits.
    await atStep('catchup');
    await populate(client, live.schema, temp);
    await setStep(client, request.id, 'swap');
    const result = await swapWithRetry(
      client,
      {
        requestId: request.id,
        live,
        temp,
        indexNames,
        lockTimeoutMs: opts.lockTimeoutMs ?? request.lock_timeout_ms ?? DEFAULT_LOCK_TIMEOUT_MS,
      },
      opts.swapTimeoutMs ?? DEFAULT_SWAP_TIMEOUT_MS,
      atStep,
    );
    // watching the new version again ran sync_table_triggers(), which may have drawn a clear
    if (result.rewatched.length > 0) await settleClears(client);
    return { status: 'done', durationMs: Date.now() - t0, ...result };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    await dropHalfBuilt(client, { view_schema: request.view_schema, temp_name: temp });
    if (opts.stopping?.()) {
      await client.query(replaceSql.requeue, [request.id]);
      return { status: 'requeued', durationMs: Date.now() - t0 };
    }
    const error =
      err instanceof ReplaceRefused
        ? err.message
        : isPgError(err) && err.code === QUERY_CANCELED
          ? 'interrupted: canceled before the swap; the live view is unchanged'
          : describeError(err);
    await fail(client, request.id, error);
    return { status: 'failed', error, durationMs: Date.now() - t0 };
  } finally {
    await release(client, request.id).catch(() => undefined);
  }
}
