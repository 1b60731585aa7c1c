import type pg from 'pg';
import { AppName, callerSearchPath, connectClient, prepareAdminSession } from '../db/connect.js';
import { PAUSE_ENV, execute, type Outcome, type Step } from './executor.js';
import { ReplaceRefused } from './plan.js';
import { replaceSql } from './sql.js';
import { claim, cleanupOrphans, recordCliRequest } from './requests.js';

export interface ReplaceCliOptions {
  view: string;
  definition: string;
  lockTimeoutMs?: number | undefined;
  swapTimeoutMs?: number | undefined;
  env: NodeJS.ProcessEnv;
  /** Progress lines (stderr). */
  progress: (line: string) => void;
}

/** Cancels the statement running on `pid` from a connection of its own (Ctrl-C during a long build). */
async function cancelBackend(url: string, pid: number): Promise<void> {
  const c = await connectClient(url, AppName.admin);
  try {
    await c.query('SELECT pg_catalog.pg_cancel_backend($1)', [pid]);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * `mvrefresh replace`: records a request and carries it out on this connection, claiming it as a daemon
 * would (so that no daemon takes it). Ctrl-C cancels the running statement: the build stops, the new
 * version is dropped, the request is marked failed, and the live view is unchanged.
 */
export async function replaceFromCli(
  url: string,
  opts: ReplaceCliOptions,
): Promise<Outcome & { id: string }> {
  const client: pg.Client = await connectClient(url, AppName.admin);
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    opts.progress('interrupted: canceling the build (the live view is not changed)');
    const pid = (client as pg.Client & { processID?: number }).processID;
    if (pid !== undefined) void cancelBackend(url, pid).catch(() => undefined);
  };
  process.on('SIGINT', onSigint);
  try {
    await prepareAdminSession(client);
    await client.query(replaceSql.executorSession);
    await cleanupOrphans(client);
    const searchPath = callerSearchPath(client) ?? 'public';
    const id = await recordCliRequest(client, opts.view, opts.definition, searchPath, opts.lockTimeoutMs);
    const request = await claim(client, { id }, `cli:${process.pid}`);
    if (!request) throw new Error(`request ${id} was claimed by another executor`);
    const pauseAt = opts.env[PAUSE_ENV];
    const outcome = await execute(client, request, {
      lockTimeoutMs: opts.lockTimeoutMs,
      swapTimeoutMs: opts.swapTimeoutMs,
      stopping: () => false,
      atStep: async (step: Step) => {
        if (interrupted)
          throw new ReplaceRefused(`interrupted before step ${step}; the live view is unchanged`);
        opts.progress(`replace ${id}: ${step}`);
        if (step === pauseAt) {
          opts.progress(`replace ${id}: paused at ${step}`);
          while (!interrupted) await new Promise((resolve) => setTimeout(resolve, 100));
          throw new ReplaceRefused(`interrupted at step ${step}; the live view is unchanged`);
        }
      },
    });
    return { ...outcome, id };
  } finally {
    process.off('SIGINT', onSigint);
    await client.end().catch(() => undefined);
  }
}
